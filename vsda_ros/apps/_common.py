"""What the ``vsda`` command modules share: the epilog, argument groups, the generic step from
parsed arguments to a config dataclass, and the error handling of every entry point."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from dataclasses import MISSING, fields
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, TypeVar

EPILOG = (
    'Real data and weights are looked up in VSDA_DATA_DIR (default ../shared/data), '
    'downloads go to VSDA_CACHE_DIR (default ~/.cache/vsda_ros).'
)

#: the exceptions an entry point reports as one line ``vsda CMD: error: …`` and exit status 2
#: (``OSError`` covers the file system's: a missing file, a folder that cannot be written, a
#: full disk).
USER_ERRORS = (OSError, ValueError, RuntimeError)

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
    p.add_argument(
        '--backend',
        default='auto',
        choices=['auto', 'torch', 'openvino', 'onnxruntime'],
        help='inference backend: auto = the fastest installed one whose accuracy '
        'check against torch passed on real frames (recorded when its graphs '
        'are built: once per model and size, 30 s to 5 min; vsda prepare does '
        'it ahead), else torch; torch = the reference (default: %(default)s)',
    )
    p.add_argument(
        '--precision',
        default='auto',
        choices=['auto', 'fp32', 'bf16', 'int8'],
        help='fp32; bf16 (openvino); int8 (a --model folder made by vsda export '
        '--precision int8 --calibrate); auto = chosen with the backend: the '
        'fastest whose recorded accuracy check passed, else fp32 '
        '(default: %(default)s)',
    )


def add_allow_unknown_labels(p: argparse.ArgumentParser) -> None:
    """``--allow-unknown-labels`` (dest ``allow_unknown_labels``): label ids that are neither a
    class nor an ignore value are scored as ignored and counted (``unknown_label_pixels``)
    instead of failing the run."""
    p.add_argument(
        '--allow-unknown-labels',
        action='store_true',
        help='score label ids that are neither a class nor an ignore value as '
        'ignored, and count them (unknown_label_pixels) (default: such ids '
        'are an error naming the label file and the values, exit 2)',
    )


def add_quiet(p: argparse.ArgumentParser, help: str = 'no progress bar') -> None:
    """``--quiet``, stored as ``progress`` (``False`` with the flag): the config field name."""
    p.add_argument('--quiet', dest='progress', action='store_false', help=help)


# ------------------------------------------------------------------ argument types (validators)
def _number(text: str) -> float:
    """``text`` as a finite float; ``ArgumentTypeError`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be a number, got {text!r}') from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f'must be a finite number, got {text!r}')
    return value


def finite_float(text: str) -> float:
    """A finite number (no ``nan``/``inf``): e.g. a start time."""
    return _number(text)


def positive_float(text: str) -> float:
    """A finite number > 0: rates, frame rates, durations, timeouts."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f'must be a number > 0, got {text!r}')
    return value


def non_negative_float(text: str) -> float:
    """A finite number ≥ 0: delays, thresholds, warm-up seconds."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be a number ≥ 0, got {text!r}')
    return value


def fraction(text: str) -> float:
    """A number in [0, 1]: a blend factor."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f'must be a number in 0..1, got {text!r}')
    return value


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """The argparse type of an integer in ``low``..``high`` (no upper bound: ``None``)."""
    bound = f'in {low}..{high}' if high is not None else f'≥ {low}'

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f'must be an integer {bound}, got {text!r}')
        return value

    parse.__name__ = f'int_{low}_{high}'
    return parse


#: an integer ≥ 1: frame counts, iterations, sizes, depths.
positive_int = int_range(1)
#: an integer ≥ 0: seeds, first-frame indices, counts where 0 means none.
non_negative_int = int_range(0)


# ------------------------------------------------------------------------------ output paths
def _nearest_existing(path: Path) -> Path:
    """``path`` itself when it exists, else its nearest existing ancestor."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(path.anchor or '.')


def _probe(folder: Path, path: Path, what: str) -> None:
    """Create and remove a probe file in ``folder``: the only test that holds for root too
    (``os.access`` says yes to root on a read-only mount or under /proc)."""
    try:
        fd, name = tempfile.mkstemp(prefix='.vsda_probe_', dir=folder)
    except OSError as e:
        raise OSError(e.errno, f'cannot write {what} {path}: {e.strerror} ({folder})') from None
    os.close(fd)
    os.unlink(name)


def check_output_dir(path: str | Path, what: str = '--out') -> None:
    """Make sure the folder ``path`` can be created (or exists) and written, before any work,
    without creating anything.

    Raises ``NotADirectoryError`` when ``path`` or one of its parents is a regular file, or
    ``OSError`` (message ``cannot write WHAT PATH: …``) when nothing can be created in its
    nearest existing folder (a read-only file system, /proc, no permission).
    """
    path = Path(path).absolute()
    base = _nearest_existing(path)
    if not base.is_dir():
        raise NotADirectoryError(f'{what} {path}: {base} is a file, not a folder')
    if base != path:
        # a folder that does not exist yet: can its nearest existing parent hold new entries?
        _probe(base, path, what)
        return
    _probe(path, path, what)


def check_output_file(path: str | Path, what: str = '--json') -> None:
    """Make sure the file ``path`` can be written (its folder created), before any work.

    Raises ``IsADirectoryError`` when ``path`` is a folder, and what :func:`check_output_dir`
    raises for its folder.
    """
    path = Path(path).absolute()
    if path.is_dir():
        raise IsADirectoryError(f'{what} {path} is a folder, not a file')
    check_output_dir(path.parent, what)


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


def execute(
    make_parser: Callable[[], argparse.ArgumentParser], argv: list[str] | None = None
) -> int:
    """Parse ``argv`` and run the command it names (``args.func``); returns the exit status.

    A user error (:data:`USER_ERRORS`, file system errors included) prints one line
    ``vsda CMD: error: …`` and returns 2;
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
            print(f'vsda {_command(args)}: error: {error_text(e)}', file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print('vsda: interrupted', file=sys.stderr)
        return 130


def _command(args: argparse.Namespace) -> str:
    """The command words of ``args`` for an error line: ``bag make``, ``segment``."""
    sub = getattr(args, 'bag_command', None) or getattr(args, 'weather_command', None)
    return f'{args.command} {sub}' if sub else str(args.command)


def error_text(e: BaseException) -> str:
    """One line for an error: an ``OSError`` from the file system as ``PATH: REASON`` (not
    ``[Errno 13] Permission denied: 'PATH'``), anything else as its message."""
    if isinstance(e, OSError) and e.strerror:
        where = ' → '.join(str(f) for f in (e.filename, e.filename2) if f is not None)
        return f'{where}: {e.strerror}' if where else e.strerror
    return ' '.join(str(e).split('\n')) if str(e) else type(e).__name__


def standalone(app: ModuleType, name: str, argv: list[str] | None = None) -> int:
    """``python -m vsda_ros.apps.<app> …``: exactly ``vsda <name> …``, with a parser that
    holds only this command (no detour through :mod:`vsda_ros.cli`)."""

    def make_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog='vsda')
        app.add_parser(parser.add_subparsers(dest='command', required=True, metavar='COMMAND'))
        return parser

    return execute(make_parser, [name, *(sys.argv[1:] if argv is None else argv)])
