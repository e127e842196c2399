"""PNG previews of the weather effects and the ``vsda weather preview`` command.

:func:`render_grid` shows every kind at a few intensities on one frame; :func:`render_sequence`
shows consecutive frames of a clip degraded by a :class:`~vsda_ros.weather.WeatherSequence`
(temporal parameters, and the i.i.d. baseline below for comparison). Both draw with
matplotlib's Agg backend (no display needed).

Command line (wired into ``vsda`` by :func:`add_parser`; also ``python -m
vsda_ros.weather.preview``)::

    vsda weather preview --image FRAME.png [--out docs/weather/weather_grid.png] [--seed 0]
    vsda weather preview --image FRAME.png --kinds wiper,exposure,jpeg --out transient_grid.png
    vsda weather preview --sequence DIR --spec fog:0.6 [--out docs/weather/temporal_fog.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from vsda_ros.weather.effects import check_image
from vsda_ros.weather.sequence import WeatherSequence
from vsda_ros.weather.spec import WEATHER_KINDS, WeatherSpec, parse_weather
from vsda_ros.weather.transient import TRANSIENT_ONLY_KINDS, TransientSpec, apply_transient

DEFAULT_GRID = Path('docs/weather/weather_grid.png')


def _cell(image: np.ndarray, cell_width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w == cell_width:
        return image
    size = (cell_width, max(1, round(h * cell_width / w)))
    interp = cv2.INTER_AREA if cell_width < w else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


def _save_grid(cells: list[list[np.ndarray]], col_titles: list[list[str]],
               row_titles: list[str], out_path: str | Path, title: str | None) -> Path:
    """Lay ``cells`` (equal-size RGB images) out pixel-exactly (1:1, no resampling) with a title
    above each cell and a label left of each row; write a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = len(cells), len(cells[0])
    ch, cw = cells[0][0].shape[:2]
    dpi = 100
    left, gap, head, top = 28, 4, 18, (30 if title else 4)
    width = left + cols * (cw + gap)
    height = top + rows * (ch + head) + gap
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor='white')
    FigureCanvasAgg(fig)
    for r in range(rows):
        y0 = top + r * (ch + head) + head                       # pixels from the top
        for c in range(cols):
            x0 = left + c * (cw + gap)
            ax = fig.add_axes((x0 / width, 1 - (y0 + ch) / height, cw / width, ch / height))
            ax.imshow(cells[r][c], interpolation='none', aspect='auto')
            ax.set_axis_off()
            ax.text(0.5, 1.0 + 3 / ch, col_titles[r][c], transform=ax.transAxes, ha='center',
                    va='bottom', fontsize=9)
        fig.text((left - 8) / width, 1 - (y0 + ch / 2) / height, row_titles[r], rotation=90,
                 ha='center', va='center', fontsize=11, fontweight='bold')
    if title:
        fig.text(0.5, 1 - 6 / height, title, ha='center', va='top', fontsize=11)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, pil_kwargs={'optimize': True})
    return out


def render_grid(image: np.ndarray, out_path: str | Path,
                intensities: Sequence[float] = (0.3, 0.6, 0.9),
                kinds: Sequence[str] = WEATHER_KINDS, seed: int = 0,
                cell_width: int = 240) -> Path:
    """Write a PNG grid: one row per kind, columns clean + each intensity; returns the path.

    ``kinds`` are any of :data:`~vsda_ros.weather.transient.TRANSIENT_KINDS` (the weather kinds
    and the transient-only ``wiper``, ``exposure``, ``jpeg``). ``image`` is H×W×3 uint8 RGB,
    degraded at its own resolution with :func:`~vsda_ros.weather.transient.apply_transient`
    (``seed``; for a weather kind the same as :func:`~vsda_ros.weather.apply.apply_weather`),
    then each cell is resized to ``cell_width`` pixels wide.

    Raises:
        ValueError: a bad image, kind or intensity.
    """
    check_image(image)
    specs = [[TransientSpec(k, float(x), 1.0) for x in intensities] for k in kinds]
    if not specs or not specs[0]:
        raise ValueError('render_grid needs at least one kind and one intensity')
    clean = _cell(image, cell_width)
    cells, titles = [], []
    for row in specs:
        cells.append([clean] + [_cell(apply_transient(image, s.kind, s.intensity, seed),
                                      cell_width) for s in row])
        titles.append(['clean'] + [f'intensity {s.intensity:g}' for s in row])
    return _save_grid(cells, titles, list(kinds), out_path, None)


def render_sequence(images: list[np.ndarray], spec: WeatherSpec, out_path: str | Path,
                    seed: int = 0, compare_iid: bool = True, cell_width: int = 240) -> Path:
    """Write a PNG strip of consecutive frames degraded by a :class:`WeatherSequence`.

    The first row uses temporal parameters (smooth in time); with ``compare_iid`` a second row
    shows the same frames with independent per-frame parameters. Each cell is titled with its
    frame index and effective intensity. ``images`` are H×W×3 uint8 RGB frames in time order.

    Raises:
        ValueError: no images, a bad image, or ``spec`` not a WeatherSpec.
    """
    if not images:
        raise ValueError('render_sequence needs at least one frame')
    if not isinstance(spec, WeatherSpec):
        raise ValueError(f'spec must be a WeatherSpec, got {spec!r}')
    modes = [('temporal', True)] + ([('i.i.d.', False)] if compare_iid else [])
    cells, titles = [], []
    for _, temporal in modes:
        seq = WeatherSequence(spec, seed=seed, temporal=temporal)
        row, row_titles = [], []
        for t, img in enumerate(images):
            row.append(_cell(seq(img), cell_width))
            row_titles.append(f't={t}  intensity {seq.params["intensity"]:.2f}')
        cells.append(row)
        titles.append(row_titles)
    title = f'{spec} on {len(images)} consecutive frames (seed {seed})'
    return _save_grid(cells, titles, [m for m, _ in modes], out_path, title)


# ----------------------------------------------------------------------------------------------
# command line

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

    The parser's default ``func`` is :func:`main_cli`; returns the ``weather`` parser.
    """
    p = subparsers.add_parser(
        'weather', help='preview the synthetic adverse weather (fog, rain, snow, night, …)',
        description='Synthetic adverse weather: physically motivated fog, rain, snow, night, '
                    'glare and sensor noise with temporally correlated parameters for video. '
                    'The same effects are used by "vsda eval --weather KIND:INTENSITY" and by '
                    'training.')
    wsub = p.add_subparsers(dest='weather_command', required=True, metavar='ACTION')
    q = wsub.add_parser(
        'preview', help='write a PNG grid (--image) or a temporal strip (--sequence)',
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
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument('--image', metavar='PATH', help='one frame for the grid of all effects')
    src.add_argument('--sequence', metavar='DIR',
                     help='a folder of frames (time order by file name) or a video file')
    q.add_argument('--spec', default='fog:0.6',
                   help='weather of the --sequence strip, KIND[:INTENSITY] with KIND one of '
                        f'{", ".join(WEATHER_KINDS)} (default: %(default)s)')
    q.add_argument('--out', default=None,
                   help=f'PNG to write (default: {DEFAULT_GRID} for --image, '
                        'docs/weather/temporal_KIND.png for --sequence)')
    q.add_argument('--seed', type=int, default=0, help='random seed (default: %(default)s)')
    q.add_argument('--size', default='480x360',
                   help="resize frames to WIDTHxHEIGHT before degrading, the pipeline's working "
                        "size ('' = keep; default: %(default)s)")
    q.add_argument('--intensities', default='0.3,0.6,0.9',
                   help='grid columns (default: %(default)s)')
    q.add_argument('--kinds', default=','.join(WEATHER_KINDS),
                   help='grid rows: weather kinds, or the transient-only '
                        f'{", ".join(TRANSIENT_ONLY_KINDS)} of "vsda eval --transient" '
                        '(default: the six weather kinds)')
    q.add_argument('--frames', type=int, default=6,
                   help='strip length in frames (default: %(default)s)')
    q.add_argument('--start', type=int, default=0, help='first frame of the strip (default: 0)')
    q.add_argument('--no-iid', action='store_true',
                   help='strip: omit the row with independent per-frame parameters')
    q.add_argument('--cell-width', type=int, default=208,
                   help='width of each picture in the PNG, pixel-exact (default: %(default)s; '
                        'the default grid stays under 1.5 MB)')
    p.set_defaults(func=main_cli)
    return p


def main_cli(args: argparse.Namespace) -> int:
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
            TransientSpec(k, 0.0, 1.0)                              # validates the kind
        out = render_grid(_resize(read_rgb(path), size), args.out or DEFAULT_GRID,
                          _floats(args.intensities, '--intensities'), kinds, args.seed,
                          args.cell_width)
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
            raise ValueError(f'--sequence {args.sequence} has no frames from --start '
                             f'{args.start}')
        out = render_sequence(frames, spec, args.out or f'docs/weather/temporal_{spec.kind}.png',
                              args.seed, not args.no_iid, args.cell_width)
    print(f'wrote {out}')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m vsda_ros.weather.preview preview …``)."""
    parser = argparse.ArgumentParser(prog='vsda')
    add_parser(parser.add_subparsers(dest='command', required=True))
    args = parser.parse_args(['weather', *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:
        print(f'vsda weather: error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
