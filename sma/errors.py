"""The one exception type the library raises for bad user input."""


class SMAInputError(ValueError):
    """Bad input from the user (file, clip, setting).

    The message says what was wrong and what is allowed, so the CLI and the ComfyUI nodes can
    show it as it is, without a traceback.
    """
