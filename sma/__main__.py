"""``python -m sma``: see :mod:`sma.cli`."""

from .cli import main

raise SystemExit(main())
