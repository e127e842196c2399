#!/usr/bin/env python3
"""How much synthetic adverse weather corrupts DIS optical flow (no network, no ROS).

The flow-free fusion block is justified by the claim that optical flow breaks in adverse
weather; this measures it. For every pair of consecutive frames (previous, current) the
project's DIS wrapper (:class:`vsda_ros.temporal.flow.DISFlow`, by default the preset the
keyframe strategy uses) computes the flow of the clean pair, the reference, and of the pair
degraded by each weather kind (:mod:`vsda_ros.weather`) at ``--intensity``, in two modes:

* ``temporal``  — both frames degraded by one :class:`~vsda_ros.weather.WeatherSequence`
  (smoothly evolving weather, applied to previous then current);
* ``transient`` — only the current frame degraded (:func:`~vsda_ros.weather.apply_weather`),
  the previous one clean: weather that arrives suddenly (a splash, a wiper, a flash).

The weather is applied to the frames at their own resolution (as ``vsda eval`` and a camera
see it); the flow is computed at ``--size`` (DISFlow resizes the gray frames, INTER_AREA).
Scores are the end-point error (EPE, the Euclidean distance between the degraded-pair and the
clean-pair flow vectors, in pixels of ``--size``) over all pixels of all pairs: the mean and
the fraction of pixels with EPE > 1 px and > 3 px. ``zero_flow`` is the EPE of no motion
estimate at all against the clean flow (the clean flow's magnitude): a degraded flow at or
above it is no better than assuming a static scene. ``clean`` recomputes the clean flow (0
when DIS is deterministic). The layout of each pair's weather is seeded by (``--seed``, pair).

Prints a table and writes JSON (``--out``) and a bar plot next to it (same name, ``.png``).
Default input: the six real 17 Hz clips in ``$VSDA_DATA_DIR/cityscapes_seq``, every pair.
Example (all six clips, every pair; about 1.5 min on one core)::

    OMP_NUM_THREADS=1 python benchmarks/flow_under_weather.py --out runs/flow_under_weather.json

JSON: ``source``, ``clips`` (folder names), ``pairs``, ``size`` [w, h], ``preset``,
``intensity``, ``seed``, ``kinds``, ``modes``, ``clean`` and ``zero_flow`` ({``epe_mean``,
``epe_gt1``, ``epe_gt3``}; fractions in [0, 1]), ``weather`` {mode: {kind: the same keys}}.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from vsda_ros.data.sources import IMAGE_SUFFIXES, FrameSource
from vsda_ros.inference import parse_size
from vsda_ros.paths import data_dir
from vsda_ros.temporal.flow import PRESETS, DISFlow
from vsda_ros.temporal.strategy import StrategyConfig
from vsda_ros.weather import WEATHER_KINDS, WeatherSequence, WeatherSpec, apply_weather

#: the degradation modes, in report order (see the module docstring).
MODES: tuple[str, ...] = ('temporal', 'transient')
#: the preset the keyframe strategy uses by default.
DEFAULT_PRESET: str = StrategyConfig().flow_preset
#: EPE thresholds (px) of the ``epe_gt1`` / ``epe_gt3`` fractions.
THRESHOLDS: tuple[float, ...] = (1.0, 3.0)

Pair = tuple[np.ndarray, np.ndarray]


@dataclass
class EPEStats:
    """End-point errors accumulated over the pixels of many flow fields."""

    total: float = 0.0
    pixels: int = 0
    over1: int = 0
    over3: int = 0

    def add(self, flow: np.ndarray, reference: np.ndarray) -> None:
        """Accumulate the per-pixel EPE of ``flow`` against ``reference`` (both h×w×2)."""
        epe = np.linalg.norm(flow.astype(np.float64) - reference, axis=-1)
        self.total += float(epe.sum())
        self.pixels += epe.size
        self.over1 += int((epe > THRESHOLDS[0]).sum())
        self.over3 += int((epe > THRESHOLDS[1]).sum())

    def as_dict(self) -> dict[str, float]:
        """``epe_mean`` (px), ``epe_gt1`` and ``epe_gt3`` (fractions of pixels)."""
        n = max(self.pixels, 1)
        return {'epe_mean': self.total / n, 'epe_gt1': self.over1 / n, 'epe_gt3': self.over3 / n}


def pair_seed(seed: int, index: int) -> int:
    """The weather seed of pair ``index``: distinct per pair, reproducible per ``seed``."""
    return int(np.random.SeedSequence((int(seed), int(index))).generate_state(1)[0])


def degrade_pair(
    prev: np.ndarray, cur: np.ndarray, spec: WeatherSpec, seed: int
) -> dict[str, Pair]:
    """The pair under ``spec`` in each of :data:`MODES`: ``temporal`` (one WeatherSequence over
    previous then current) and ``transient`` (the current frame alone degraded)."""
    seq = WeatherSequence(spec, seed=seed)
    return {
        'temporal': (seq(prev), seq(cur)),
        'transient': (prev, apply_weather(cur, spec, seed=seed)),
    }


def flow_epe_under_weather(
    pairs: Sequence[Pair],
    kinds: Iterable[str] = WEATHER_KINDS,
    intensity: float = 0.6,
    preset: str = DEFAULT_PRESET,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    progress: bool = False,
) -> dict:
    """EPE of DIS flow on weather-degraded pairs against the clean pairs' flow.

    Args:
        pairs: (previous, current) H×W×3 uint8 RGB frames; the two of a pair share a size.
        kinds: weather kinds of :data:`~vsda_ros.weather.WEATHER_KINDS`.
        intensity: the weather intensity in [0, 1].
        preset: a :data:`~vsda_ros.temporal.flow.PRESETS` name.
        seed: seeds each pair's weather layout (:func:`pair_seed`).
        size: ``(w, h)`` the flow is computed at; ``None`` = each pair's own size.
        progress: show a tqdm bar over the pairs.

    Returns:
        ``pairs``, ``size`` ([w, h] of the first pair's flow), ``preset``, ``intensity``,
        ``seed``, ``kinds``, ``modes``, ``clean`` and ``zero_flow`` (:meth:`EPEStats.as_dict`),
        ``weather`` {mode: {kind: :meth:`EPEStats.as_dict`}}.

    Raises:
        ValueError: no pairs, an unknown kind, preset or bad intensity, frames DIS refuses.
    """
    kinds = list(kinds)
    if not pairs:
        raise ValueError('need at least one frame pair')
    specs = {kind: WeatherSpec(kind, float(intensity)) for kind in kinds}
    flow = DISFlow(preset, size)
    clean, zero = EPEStats(), EPEStats()
    stats = {mode: {kind: EPEStats() for kind in kinds} for mode in MODES}
    flow_size = None
    for i, (prev, cur) in enumerate(tqdm(pairs, desc='pairs', unit='pair', disable=not progress)):
        reference = flow(prev, cur)
        flow_size = flow_size or [reference.shape[1], reference.shape[0]]
        clean.add(flow(prev, cur), reference)
        zero.add(np.zeros_like(reference), reference)
        for kind, spec in specs.items():
            for mode, (a, b) in degrade_pair(prev, cur, spec, pair_seed(seed, i)).items():
                stats[mode][kind].add(flow(a, b), reference)
    return {
        'pairs': len(pairs),
        'size': flow_size,
        'preset': preset,
        'intensity': float(intensity),
        'seed': int(seed),
        'kinds': kinds,
        'modes': list(MODES),
        'clean': clean.as_dict(),
        'zero_flow': zero.as_dict(),
        'weather': {
            mode: {kind: s.as_dict() for kind, s in by_kind.items()}
            for mode, by_kind in stats.items()
        },
    }


def _has_images(folder: Path) -> bool:
    """Whether ``folder`` directly holds image files."""
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def clip_folders(source: Path) -> list[Path]:
    """``source`` itself when it holds images, else its sub-folders that do, by name.

    Raises ``FileNotFoundError`` (no such folder) or ``ValueError`` (no images in it).
    """
    if not source.is_dir():
        raise FileNotFoundError(f'{source} is not a folder')
    if _has_images(source):
        return [source]
    folders = sorted(p for p in source.iterdir() if p.is_dir() and _has_images(p))
    if not folders:
        raise ValueError(f'{source} holds no images and no folders of images')
    return folders


def load_pairs(folders: Sequence[Path], max_pairs: int | None = None) -> list[Pair]:
    """Consecutive frame pairs of each folder (frames in name order), folder by folder; at most
    ``max_pairs`` in all. Pairs share their frame arrays (no copies)."""
    pairs: list[Pair] = []
    for folder in folders:
        frames = [frame.image for frame in FrameSource(folder)]
        pairs += list(zip(frames[:-1], frames[1:], strict=False))
        if max_pairs is not None and len(pairs) >= max_pairs:
            return pairs[:max_pairs]
    return pairs


def _pct(x: float) -> str:
    return f'{100 * x:6.2f}'


def table(result: dict) -> list[str]:
    """The result as text lines: one row per (kind, mode), then clean and zero-flow rows."""
    w, h = result['size']
    lines = [
        f"DIS '{result['preset']}' flow at {w}x{h} on {result['pairs']} pairs; weather "
        f'intensity {result["intensity"]}, seed {result["seed"]}',
        "EPE (px) against the clean pair's flow; % of pixels with EPE > 1 px / > 3 px",
        f'{"weather":<10} {"mode":<10} {"EPE mean":>9} {">1px %":>7} {">3px %":>7}',
    ]

    def row(name: str, mode: str, s: dict) -> str:
        return (
            f'{name:<10} {mode:<10} {s["epe_mean"]:9.3f} {_pct(s["epe_gt1"]):>7} '
            f'{_pct(s["epe_gt3"]):>7}'
        )

    for kind in result['kinds']:
        for mode in result['modes']:
            lines.append(row(kind, mode, result['weather'][mode][kind]))
    lines.append(row('clean', '-', result['clean']))
    lines.append(row('zero flow', '-', result['zero_flow']))
    return lines


def plot(result: dict, path: Path) -> None:
    """Bars per weather kind (one per mode) of mean EPE (log scale: one bad kind can be 10×
    the others) and of % pixels over 3 px, with the zero-flow reference as a dashed line;
    written to ``path`` (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    kinds, modes = result['kinds'], result['modes']
    x = np.arange(len(kinds))
    width = 0.8 / len(modes)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = (
        ('epe_mean', 1.0, 'mean EPE vs clean flow (px, log scale)', 'log'),
        ('epe_gt3', 100.0, 'pixels with EPE > 3 px (%)', 'linear'),
    )
    for ax, (key, scale, title, yscale) in zip(axes, panels, strict=False):
        ax.set_yscale(yscale)
        for j, mode in enumerate(modes):
            values = [result['weather'][mode][k][key] * scale for k in kinds]
            ax.bar(x + (j - (len(modes) - 1) / 2) * width, values, width, label=mode)
        ax.axhline(result['zero_flow'][key] * scale, color='k', ls='--', lw=1, label='zero flow')
        ax.set_xticks(x, kinds)
        ax.set_title(title)
        ax.legend(fontsize=8)
    w, h = result['size']
    fig.suptitle(
        f"DIS '{result['preset']}' at {w}x{h}, {result['pairs']} pairs, weather "
        f'intensity {result["intensity"]}'
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (see ``--help``)."""
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        '--source',
        default=None,
        help='a folder of frames in time order, or a folder of such folders '
        '(default: $VSDA_DATA_DIR/cityscapes_seq)',
    )
    ap.add_argument('--size', default='480x240', help='flow WIDTHxHEIGHT (default %(default)s)')
    ap.add_argument(
        '--preset',
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        help="DIS preset (default: %(default)s, the keyframe strategy's)",
    )
    ap.add_argument(
        '--kinds',
        default=','.join(WEATHER_KINDS),
        help='comma-separated weather kinds (default: all)',
    )
    ap.add_argument(
        '--intensity',
        type=float,
        default=0.6,
        help='weather intensity in [0, 1] (default %(default)s)',
    )
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--max-pairs', type=int, default=None, help='at most this many pairs')
    ap.add_argument(
        '--out',
        default='runs/flow_under_weather.json',
        help='JSON path; the plot goes next to it as .png (default %(default)s)',
    )
    ap.add_argument('--quiet', action='store_true', help='no progress bar')
    return ap


def _source(args: argparse.Namespace, ap: argparse.ArgumentParser) -> Path:
    if args.source:
        return Path(args.source)
    ddir = data_dir()
    if ddir is None:
        ap.error('no --source and no real data (set VSDA_DATA_DIR)')
    return ddir / 'cityscapes_seq'


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success (``ap.error``, exit 2, on bad arguments or inputs)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    source = _source(args, ap)
    try:
        size = parse_size(args.size)
        kinds = [k.strip() for k in args.kinds.split(',') if k.strip()]
        folders = clip_folders(source)
        pairs = load_pairs(folders, args.max_pairs)
        if not pairs:
            raise ValueError(f'{source}: no folder with at least two frames')
        result = flow_epe_under_weather(
            pairs, kinds, args.intensity, args.preset, args.seed, size, progress=not args.quiet
        )
    except (ValueError, FileNotFoundError) as exc:
        ap.error(str(exc))
    result = {'source': str(source), 'clips': [f.name for f in folders], **result}
    print('\n'.join(table(result)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + '\n')
    plot(result, out.with_suffix('.png'))
    print(f'wrote {out} and {out.with_suffix(".png")}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
