"""``python -m sma``: the command line (demo, train, inspect).

Parsers live in :mod:`sma.cli.arguments`; each sub-command's work in its own module with
``run(args) -> int``, imported only when that command runs (so ``--help`` stays quick). Bad input
or a diverged run (:class:`~sma.errors.SMAError`) prints ``error: <message>`` and exits with 2, a failed write
exits with 1, Ctrl-C with 130; none of them prints a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import SMAError
from .arguments import add_demo_parser, add_inspect_parser, add_train_parser
from .exit_codes import EXIT_INPUT_ERROR, EXIT_INTERRUPTED, EXIT_WRITE_ERROR
COMMAND_MODULES = {"demo": "demo", "train": "train", "inspect": "inspect_lora"}


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m sma`` parser with its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="python -m sma",
        description="Spectral Motion Alignment (SMA) motion LoRAs for AnimateDiff: try the demo, train, inspect.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (add_demo_parser, add_train_parser, add_inspect_parser):
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the sub-command, return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        module = importlib.import_module(f".{COMMAND_MODULES[args.command]}", __name__)
        return module.run(args)
    except SMAError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_WRITE_ERROR
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C).", file=sys.stderr)
        return EXIT_INTERRUPTED
