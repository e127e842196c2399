"""PNG plots of a ``vsda eval`` report (matplotlib, Agg backend; nothing is shown on screen).

- ``strategies.png``: mIoU and TC per strategy on the clean frames;
- ``pda.png``: the propagation-distance curve (keyframe runs with ``--pda``/``--interval A..B``);
- ``per_class_iou.png``: per-class IoU, clean vs each weather (first strategy; needs labels);
- ``miou_vs_intensity.png``: mIoU (or agreement without labels) against weather intensity, one
  panel per weather kind, one line per strategy (solid), and one dashed line per strategy and
  hit probability for ``--transient`` runs;
- ``latency_hist.png``: per-frame latency histogram per strategy (clean frames);
- ``samples.png``: one frame as input, under each weather, the prediction, and the label.

Runs are named by :func:`vsda_ros.evaluation.report.run_label` (``'rain:0.6 transient p0.3'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _plt() -> Any:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def plot_report(r: dict, out: Path) -> list[Path]:
    """Write the report's plots into ``out``; returns the files written."""
    plt = _plt()
    written = []
    clean = [run for run in r['runs'] if run['weather'] is None]
    names = [run['strategy'] for run in clean]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    x = np.arange(len(names))
    ax[0].bar(x, [run.get('miou') or 0 for run in clean], color='tab:blue')
    ax[0].set_title('mIoU (%), clean frames')
    ax[1].bar(x, [run['tc'] for run in clean], color='tab:green')
    ax[1].set_title('temporal consistency (%)')
    for a in ax:
        a.set_xticks(x, names)
        a.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    written.append(_save(fig, out / 'strategies.png'))
    if 'pda' in r:
        written.append(_plot_pda(r['pda'], out / 'pda.png'))
    weathers = [run for run in r['runs'] if run['weather'] is not None]
    if weathers and clean and clean[0].get('per_class_iou'):
        written.append(_plot_per_class(r, out / 'per_class_iou.png'))
    if weathers:
        written.append(_plot_intensity(r, out / 'miou_vs_intensity.png'))
    plt.close('all')
    return written


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _plot_pda(pda: dict, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    styles = {
        'per_frame': ('--', 'k', 'per-frame'),
        'warp': ('-o', 'tab:red', 'plain warping'),
        'keyframe': ('-o', 'tab:blue', 'keyframe + DMNet/CFNet'),
    }
    for name, curve in pda.items():
        keys = [d for d in curve if int(d) > 0]
        ls, color, label = styles[name]
        ax.plot([int(d) for d in keys], [curve[d] for d in keys], ls, color=color, label=label)
    ax.set_xlabel('propagation distance d (frames)')
    ax.set_ylabel('mIoU (%)')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def _plot_per_class(r: dict, path: Path) -> Path:
    """Grouped horizontal bars: classes × (clean, each weather) for the first strategy."""
    from vsda_ros.evaluation.report import run_label

    plt = _plt()
    first = r['runs'][0]['strategy']
    runs = [run for run in r['runs'] if run['strategy'] == first and run.get('per_class_iou')]
    classes = list(runs[0]['per_class_iou'])
    if len(runs) > 8:  # a sweep: keep clean and the middle intensity of each kind
        mids = [run for run in runs[1:] if abs(run['intensity'] - 0.6) < 1e-6]
        runs = runs[:1] + (mids or runs[1:8])
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(classes) * max(1.0, len(runs) / 3) + 1.2))
    h = 0.8 / len(runs)
    y = np.arange(len(classes))
    cmap = plt.get_cmap('tab10')
    for i, run in enumerate(runs):
        vals = [run['per_class_iou'][c] or 0.0 for c in classes]
        ax.barh(
            y + i * h,
            vals,
            height=h,
            color='0.25' if i == 0 else cmap(i % 10),
            label=run_label(run),
        )
    ax.set_yticks(y + 0.4 - h / 2, classes)
    ax.invert_yaxis()
    ax.set_xlabel(f'IoU (%), strategy {first}')
    ax.set_xlim(0, 100)
    ax.grid(axis='x', alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


TRANSIENT_STYLES = ('--s', ':^', '-.v')
"""Line styles of the transient lines of ``miou_vs_intensity.png``, one per hit probability."""


def _intensity_lines(
    runs: list[dict], kind: str, strategy: str, key: str
) -> list[tuple[str, list[tuple[float, float]]]]:
    """The lines of one panel for one strategy: (suffix, points), the weather line (clean,
    temporal and i.i.d. runs) first, then one per transient hit probability; each starts at
    the clean run (intensity 0). Lines with the clean point only are left out."""
    mine = [run for run in runs if run['strategy'] == strategy]
    clean = [(0.0, run[key]) for run in mine if run['weather'] is None]
    weather = [
        (run['intensity'], run[key])
        for run in mine
        if run['weather_kind'] == kind and run.get('weather_mode') != 'transient'
    ]
    lines = [('', clean + weather)] if weather else []
    probs = dict.fromkeys(
        run['transient_prob']
        for run in mine
        if run['weather_kind'] == kind and run.get('weather_mode') == 'transient'
    )
    for p in probs:
        pts = [
            (run['intensity'], run[key])
            for run in mine
            if run['weather_kind'] == kind
            and run.get('transient_prob') == p
            and run.get('weather_mode') == 'transient'
        ]
        lines.append((f' transient p{p:g}', clean + pts))
    return [(suffix, sorted(pts, key=lambda q: q[0])) for suffix, pts in lines]


def _plot_intensity(r: dict, path: Path) -> Path:
    """One panel per weather kind: metric vs intensity (0 = clean), a line per strategy
    (dashed: transient runs, one line per hit probability)."""
    plt = _plt()
    key = 'miou' if r['runs'][0].get('miou') is not None else 'agreement'
    kinds = list(dict.fromkeys(run['weather_kind'] for run in r['runs'] if run['weather_kind']))
    strategies = list(dict.fromkeys(run['strategy'] for run in r['runs']))
    colors = {s: plt.get_cmap('tab10')(i % 10) for i, s in enumerate(strategies)}
    styles = {'': '-o'}  # line suffix → style: weather solid, transient: TRANSIENT_STYLES
    cols = min(3, len(kinds))
    rows = -(-len(kinds) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False, sharey=True
    )
    for ax, kind in zip(axes.ravel(), kinds, strict=False):
        for s in strategies:
            for suffix, pts in _intensity_lines(r['runs'], kind, s, key):
                style = styles.setdefault(
                    suffix, TRANSIENT_STYLES[(len(styles) - 1) % len(TRANSIENT_STYLES)]
                )
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    style,
                    ms=3,
                    color=colors[s],
                    label=s + suffix,
                )
        ax.set_title(kind)
        ax.set_xlabel('intensity')
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(kinds) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel('mIoU (%)' if key == 'miou' else 'agreement with clean (%)')
    legend: dict = {}  # every line once, on the first panel
    for ax in axes.ravel()[: len(kinds)]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=False):
            legend.setdefault(label, handle)
    axes.ravel()[0].legend(list(legend.values()), list(legend), fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_latency(latencies: dict[tuple[str, str], list[float]], path: Path) -> Path:
    """Histogram of per-frame latency (ms) per strategy on the clean frames."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    clean = {s: v for (w, s), v in latencies.items() if w == 'clean' and v}
    hi = max((np.percentile(v, 99.5) for v in clean.values()), default=1.0)
    bins = np.linspace(0, hi * 1.05, 40)
    for s, v in clean.items():
        ax.hist(
            v,
            bins=bins,
            alpha=0.55,
            label=f'{s} (mean {np.mean(v):.1f}, p50 {np.median(v):.1f} ms)',
        )
    ax.set_xlabel('latency per frame (ms)')
    ax.set_ylabel('frames')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_samples(
    samples: dict,
    palette: list[tuple[int, int, int]] | None,
    path: Path,
    max_rows: int = 10,
) -> Path:
    """Rows = clean and each weather (sweeps: clean + intensity 0.6, and the transient runs);
    columns = clean input, input under the weather, prediction, label (both coloured with
    ``palette``). A row may carry its own ``clean`` input and ``label`` (a transient run shows
    a hit frame, not necessarily the sample frame)."""
    from vsda_ros.visualize import colorize, palette_array

    plt = _plt()
    lut = palette_array(palette or [])
    rows = samples['rows']
    if len(rows) > max_rows:
        mid = [
            row
            for row in rows[1:]
            if row['weather'].endswith(':0.6') or 'transient' in row['weather']
        ]
        rows = (rows[:1] + mid)[:max_rows]
    label = samples['label']
    fig, axes = plt.subplots(len(rows), 4, figsize=(12, 2.3 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows, strict=False):
        row_label = row['label'] if 'label' in row else label
        tiles = [
            row.get('clean', samples['clean']),
            row['image'],
            colorize(row['prediction'], lut),
            colorize(row_label, lut) if row_label is not None else None,
        ]
        titles = ['input', row['weather'], f'prediction ({row["strategy"]})', 'label']
        for ax, tile, title in zip(ax_row, tiles, titles, strict=False):
            ax.axis('off')
            if tile is not None:
                ax.imshow(tile)
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
