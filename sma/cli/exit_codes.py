"""Exit codes of ``python -m sma``."""

EXIT_WRITE_ERROR = 1
EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130
