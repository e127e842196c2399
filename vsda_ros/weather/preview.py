"""PNG previews of the weather effects (``vsda weather preview``: :mod:`vsda_ros.apps.weather`).

:func:`render_grid` shows every kind at a few intensities on one frame; :func:`render_sequence`
shows consecutive frames of a clip degraded by a :class:`~vsda_ros.weather.WeatherSequence`
(temporal parameters, and the i.i.d. baseline below for comparison). Both draw with
matplotlib's Agg backend (no display needed).

Command line (:mod:`vsda_ros.apps.weather`; also ``python -m vsda_ros.apps.weather``)::

    vsda weather preview --image FRAME.png [--out docs/weather/weather_grid.png] [--seed 0]
    vsda weather preview --image FRAME.png --kinds wiper,exposure,jpeg --out transient_grid.png
    vsda weather preview --sequence DIR --spec fog:0.6 [--out docs/weather/temporal_fog.png]
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from vsda_ros.weather.effects import check_image
from vsda_ros.weather.sequence import WeatherSequence
from vsda_ros.weather.spec import WEATHER_KINDS, WeatherSpec
from vsda_ros.weather.transient import TransientSpec, apply_transient

DEFAULT_GRID = Path('docs/weather/weather_grid.png')


def _cell(image: np.ndarray, cell_width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w == cell_width:
        return image
    size = (cell_width, max(1, round(h * cell_width / w)))
    interp = cv2.INTER_AREA if cell_width < w else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


def _save_grid(
    cells: list[list[np.ndarray]],
    col_titles: list[list[str]],
    row_titles: list[str],
    out_path: str | Path,
    title: str | None,
) -> Path:
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
        y0 = top + r * (ch + head) + head  # pixels from the top
        for c in range(cols):
            x0 = left + c * (cw + gap)
            ax = fig.add_axes((x0 / width, 1 - (y0 + ch) / height, cw / width, ch / height))
            ax.imshow(cells[r][c], interpolation='none', aspect='auto')
            ax.set_axis_off()
            ax.text(
                0.5,
                1.0 + 3 / ch,
                col_titles[r][c],
                transform=ax.transAxes,
                ha='center',
                va='bottom',
                fontsize=9,
            )
        fig.text(
            (left - 8) / width,
            1 - (y0 + ch / 2) / height,
            row_titles[r],
            rotation=90,
            ha='center',
            va='center',
            fontsize=11,
            fontweight='bold',
        )
    if title:
        fig.text(0.5, 1 - 6 / height, title, ha='center', va='top', fontsize=11)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, pil_kwargs={'optimize': True})
    return out


def render_grid(
    image: np.ndarray,
    out_path: str | Path,
    intensities: Sequence[float] = (0.3, 0.6, 0.9),
    kinds: Sequence[str] = WEATHER_KINDS,
    seed: int = 0,
    cell_width: int = 240,
) -> Path:
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
        cells.append(
            [clean]
            + [_cell(apply_transient(image, s.kind, s.intensity, seed), cell_width) for s in row]
        )
        titles.append(['clean'] + [f'intensity {s.intensity:g}' for s in row])
    return _save_grid(cells, titles, list(kinds), out_path, None)


def render_sequence(
    images: list[np.ndarray],
    spec: WeatherSpec,
    out_path: str | Path,
    seed: int = 0,
    compare_iid: bool = True,
    cell_width: int = 240,
) -> Path:
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
