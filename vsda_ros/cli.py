"""The ``vsda`` command (also ``python -m vsda_ros``): assembles the commands of
:mod:`vsda_ros.apps` (one module each) into one parser and runs the one named."""

from __future__ import annotations

import argparse
import importlib
import sys

from vsda_ros.apps import COMMANDS
from vsda_ros.apps._common import EPILOG, execute

__all__ = ['EPILOG', 'build_parser', 'main']


def build_parser() -> argparse.ArgumentParser:
    """The ``vsda`` parser with every command of :data:`vsda_ros.apps.COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog='vsda', description='Domain-adaptive video semantic segmentation tools.', epilog=EPILOG
    )
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for name in COMMANDS:
        importlib.import_module(f'vsda_ros.apps.{name}').add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 with a one-line error on bad input, 130 on a
    Ctrl-C that the command itself does not handle, e.g. one during start-up imports)."""
    return execute(build_parser, argv)


if __name__ == '__main__':
    sys.exit(main())
