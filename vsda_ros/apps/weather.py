"""``vsda weather preview``: PNG grids of the synthetic weather (one row per kind, columns clean
+ each intensity) and temporal strips (consecutive frames under a
:class:`~vsda_ros.weather.WeatherSequence`), drawn by :mod:`vsda_ros.weather.preview`::

    vsda weather preview --image FRAME.png [--out docs/weather/weather_grid.png] [--seed 0]
    vsda weather preview --image FRAME.png --kinds wiper,exposure,jpeg --out transient_grid.png
    vsda weather preview --sequence DIR --spec fog:0.6 [--out docs/weather/temporal_fog.png]

Also ``python -m vsda_ros.apps.weather preview …``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from vsda_ros.apps._common import non_negative_int, positive_int, standalone
from vsda_ros.weather.preview import DEFAULT_GRID, render_grid, render_sequence
from vsda_ros.weather.spec import WEATHER_KINDS, parse_weather
from vsda_ros.weather.transient import TRANSIENT_ONLY_KINDS, TransientSpec


def _parse_size(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise ValueError(f'--size {text!r}: expected WIDTHxHEIGHT, e.g. 480x360') from None
    if w <= 0 or h <= 0:
        raise ValueError(f'--size {text!r}: width and height must be positive')
    return w, h


def _resize(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise ValueError(f'{what} {text!r}: expected comma-separated numbers') from None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``weather`` subcommand (``weather preview …``) on ``subparsers``.

    The parser's default ``func`` is :func:`run`; returns the ``weather`` parser.
    """
    p = subparsers.add_parser(
        'weather',
        help='preview the synthetic adverse weather (fog, rain, snow, night, …)',
        description='Synthetic adverse weather: physically motivated fog, rain, snow, night, '
        'glare and sensor noise with temporally correlated parameters for video. '
        'The same effects are used by "vsda eval --weather KIND:INTENSITY" and by '
        'training.',
    )
    wsub = p.add_subparsers(dest='weather_command', required=True, metavar='ACTION')
    q = wsub.add_parser(
        'preview',
        help='write a PNG grid (--image) or a temporal strip (--sequence)',
        description='--image FRAME: a grid with one row per weather kind and columns clean +\n'
        'each intensity.\n'
        '--sequence DIR --spec KIND:INTENSITY: consecutive frames of a clip (a\n'
        'folder of images or a video) degraded with temporally smooth parameters,\n'
        'above the same frames with independent per-frame parameters.',
        epilog='examples:\n'
        '  vsda weather preview --image frame.png --out docs/weather/weather_grid.png\n'
        '  vsda weather preview --image frame.png --kinds wiper,exposure,jpeg '
        '--out docs/weather/transient_grid.png\n'
        '  vsda weather preview --sequence camvid/val --spec fog:0.6 --frames 6',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument('--image', metavar='PATH', help='one frame for the grid of all effects')
    src.add_argument(
        '--sequence',
        metavar='DIR',
        help='a folder of frames (time order by file name) or a video file',
    )
    _add_preview_args(q)
    p.set_defaults(func=run)
    return p


def _add_preview_args(p: argparse.ArgumentParser) -> None:
    """``vsda weather preview``'s options after the input: the strip's weather, the output, the
    grid's rows and columns, the strip's frames and the picture size."""
    p.add_argument(
        '--spec',
        default='fog:0.6',
        help='weather of the --sequence strip, KIND[:INTENSITY] with KIND one of '
        f'{", ".join(WEATHER_KINDS)} (default: %(default)s)',
    )
    p.add_argument(
        '--out',
        default=None,
        help=f'PNG to write (default: {DEFAULT_GRID} for --image, '
        'docs/weather/temporal_KIND.png for --sequence)',
    )
    p.add_argument(
        '--seed', type=non_negative_int, default=0, help='random seed (default: %(default)s)'
    )
    p.add_argument(
        '--size',
        default='480x360',
        help="resize frames to WIDTHxHEIGHT before degrading, the pipeline's working "
        "size ('' = keep; default: %(default)s)",
    )
    p.add_argument(
        '--intensities', default='0.3,0.6,0.9', help='grid columns (default: %(default)s)'
    )
    p.add_argument(
        '--kinds',
        default=','.join(WEATHER_KINDS),
        help='grid rows: weather kinds, or the transient-only '
        f'{", ".join(TRANSIENT_ONLY_KINDS)} of "vsda eval --transient" '
        '(default: the six weather kinds)',
    )
    p.add_argument(
        '--frames',
        type=positive_int,
        default=6,
        help='strip length in frames (default: %(default)s)',
    )
    p.add_argument(
        '--start', type=non_negative_int, default=0, help='first frame of the strip (default: 0)'
    )
    p.add_argument(
        '--no-iid',
        action='store_true',
        help='strip: omit the row with independent per-frame parameters',
    )
    p.add_argument(
        '--cell-width',
        type=positive_int,
        default=208,
        help='width of each picture in the PNG, pixel-exact (default: %(default)s; '
        'the default grid stays under 1.5 MB)',
    )


def run(args: argparse.Namespace) -> int:
    """Run ``vsda weather …`` from parsed arguments; returns the exit status (0).

    Raises:
        FileNotFoundError: a missing --image / --sequence.
        ValueError: a bad --spec, --size, --kinds, --intensities, or an unreadable frame.
    """
    from vsda_ros.data.sources import FrameSource, read_rgb

    if getattr(args, 'weather_command', 'preview') != 'preview':
        raise ValueError(f'unknown weather action {args.weather_command!r}')
    size = _parse_size(args.size)
    if args.cell_width <= 0:
        raise ValueError('--cell-width must be positive')
    if args.image:
        path = Path(args.image)
        if not path.is_file():
            raise FileNotFoundError(f'--image {path} does not exist')
        kinds = [k.strip() for k in args.kinds.split(',') if k.strip()]
        for k in kinds:
            TransientSpec(k, 0.0, 1.0)  # validates the kind
        out = render_grid(
            _resize(read_rgb(path), size),
            args.out or DEFAULT_GRID,
            _floats(args.intensities, '--intensities'),
            kinds,
            args.seed,
            args.cell_width,
        )
    else:
        spec = parse_weather(args.spec)
        if spec is None:
            raise ValueError('--spec clean shows nothing; give a kind, e.g. fog:0.6')
        if args.frames < 1 or args.start < 0:
            raise ValueError('--frames must be ≥ 1 and --start ≥ 0')
        frames = []
        for i, frame in enumerate(FrameSource(Path(args.sequence))):
            if i >= args.start:
                frames.append(_resize(frame.image, size))
            if len(frames) == args.frames:
                break
        if not frames:
            raise ValueError(f'--sequence {args.sequence} has no frames from --start {args.start}')
        out = render_sequence(
            frames,
            spec,
            args.out or f'docs/weather/temporal_{spec.kind}.png',
            args.seed,
            not args.no_iid,
            args.cell_width,
        )
    print(f'wrote {out}')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m vsda_ros.apps.weather preview …``): exactly ``vsda
    weather …``."""
    return standalone(sys.modules[__name__], 'weather', argv)


if __name__ == '__main__':
    sys.exit(main())
