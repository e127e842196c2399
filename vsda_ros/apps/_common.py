"""What the ``vsda`` command modules share: the epilog, argument groups, the generic step from
parsed arguments to a config dataclass, and the error handling of every entry point."""
from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields
from types import ModuleType
from typing import Any, Callable, TypeVar

EPILOG = ('Real data and weights are looked up in VSDA_DATA_DIR (default ../shared/data), '
          'downloads go to VSDA_CACHE_DIR (default ~/.cache/vsda_ros).')

#: the exceptions an entry point reports as one line ``vsda CMD: error: …`` and exit status 2.
USER_ERRORS = (FileNotFoundError, FileExistsError, ValueError, RuntimeError)

T = TypeVar('T')


def zoo_names() -> list[str]:
    """The published model names (``vsda fetch`` choices, ``--model`` help)."""
    from vsda_ros.models.zoo import ZOO
    return list(ZOO)


def label_map_choices() -> list[str]:
    """The ``--map`` choices: the label maps, sorted."""
    from vsda_ros.models.zoo import LABEL_MAPS
    return sorted(LABEL_MAPS)


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """``--backend`` / ``--precision`` (see :class:`vsda_ros.inference.SegmenterConfig`)."""
    p.add_argument('--backend', default='torch',
                   choices=['auto', 'torch', 'openvino', 'onnxruntime'],
                   help='inference backend: torch (reference), openvino, onnxruntime, or auto '
                        '(the fastest installed for the device) (default: %(default)s)')
    p.add_argument('--precision', default='fp32', choices=['auto', 'fp32', 'bf16', 'int8'],
                   help='fp32; bf16 (openvino); int8 (a --model folder made by vsda export '
                        '--precision int8 --calibrate); auto = fp32 unless the export records '
                        'a lower precision within the accuracy limits (default: %(default)s)')


def add_quiet(p: argparse.ArgumentParser, help: str = 'no progress bar') -> None:
    """``--quiet``, stored as ``progress`` (``False`` with the flag): the config field name."""
    p.add_argument('--quiet', dest='progress', action='store_false', help=help)


def config_from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """``cls`` (a dataclass) with every field whose name is an argparse dest of ``args``
    taken from it; ``values`` win over both, fields in neither keep their defaults.

    This is the one step from the command line to a config: an option whose dest is a field
    name needs nothing else. Raises ``TypeError`` when a field without a default is in
    neither ``args`` nor ``values``.
    """
    parsed = vars(args)
    kwargs = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        if f.name in values:
            kwargs[f.name] = values[f.name]
        elif f.name in parsed:
            kwargs[f.name] = parsed[f.name]
        elif f.default is MISSING and f.default_factory is MISSING:
            raise TypeError(f'{cls.__name__}.{f.name}: no option and no value given')
    return cls(**kwargs)


def execute(make_parser: Callable[[], argparse.ArgumentParser],
            argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command it names (``args.func``); returns the exit status.

    A user error (:data:`USER_ERRORS`) prints one line ``vsda CMD: error: …`` and returns 2;
    a Ctrl-C that the command itself does not handle (e.g. one during start-up imports)
    prints ``vsda: interrupted`` and returns 130.
    """
    try:
        args = make_parser().parse_args(argv)
        from vsda_ros.runtime import tune_allocator
        tune_allocator()
        try:
            return args.func(args)
        except USER_ERRORS as e:
            print(f'vsda {args.command}: error: {e}', file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print('vsda: interrupted', file=sys.stderr)
        return 130


def standalone(app: ModuleType, name: str, argv: list[str] | None = None) -> int:
    """``python -m vsda_ros.apps.<app> …``: exactly ``vsda <name> …``, with a parser that
    holds only this command (no detour through :mod:`vsda_ros.cli`)."""
    def make_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog='vsda')
        app.add_parser(parser.add_subparsers(dest='command', required=True, metavar='COMMAND'))
        return parser

    return execute(make_parser, [name, *(sys.argv[1:] if argv is None else argv)])
