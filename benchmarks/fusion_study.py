#!/usr/bin/env python3
"""``per_frame`` against ``fusion`` (each fusion-block variant) on a labelled clip: clean, and
under smooth, i.i.d. and transient weather — the figures behind the fusion targets.

For each variant (``NAME=TEMPORAL_WEIGHTS``; ``shipped`` = the modules shipped for the model,
``''``) two ``vsda eval`` passes run through the Python API (:func:`run_eval`): one with every
weather kind at ``--intensity`` as smooth temporal weather plus ``--transient all:I:P`` (each kind
hitting a random, seeded subset of frames with probability P), one with the same kinds drawn
i.i.d. per frame. ``per_frame`` runs once (the first variant's passes); every variant's fusion
rows are compared with it under the same weather (same seeds, so the same degraded frames).

Cost is measured separately, ``per_frame`` and ``fusion`` stepping through the same 30 frames
alternately (:func:`interleaved_cost`): the passes' own times are not comparable.

Writes ``OUT.json`` (the rows and a summary per variant: clean ΔmIoU / ΔTC / cost ratio, ΔmIoU
per kind and mean for each mode, per-class ΔIoU) and ``OUT.png``, and prints the summary. The
report folders of the passes are kept under ``OUT_runs/``.

Example (docs/design/temporal.md)::

    python benchmarks/fusion_study.py --model espnet-camvid \\
        --variant scores= --variant guided=runs/fusion_guided_espnet-camvid.pt \\
        --source ../shared/data/camvid/val --labels ../shared/data/camvid/valannot \\
        --out runs/fusion_study_espnet-camvid
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vsda_ros.apps.eval import EvalConfig, run_eval
from vsda_ros.weather import WEATHER_KINDS

MODES = ('temporal', 'iid', 'transient')
CLASSES = ('car', 'pedestrian', 'bicyclist')


def passes(model: str, weights: str, args, strategies: list[str], out: Path) -> list[dict]:
    """The rows of the two eval passes of one variant (``weather_mode`` tells them apart)."""
    weathers = [f'{k}:{args.intensity:g}' for k in WEATHER_KINDS]
    base = dict(
        model=model,
        source=args.source,
        labels=args.labels,
        label_map=args.map,
        strategies=strategies,
        temporal_weights=weights,
        size=args.size,
        max_frames=args.max_frames,
        seed=args.seed,
        progress=not args.quiet,
    )
    rows = []
    first = run_eval(
        EvalConfig(
            out=out / 'temporal',
            weathers=weathers,
            transients=[f'all:{args.intensity:g}:{args.prob:g}'],
            **base,
        )
    )
    rows += first['runs']
    second = run_eval(
        EvalConfig(out=out / 'iid', weathers=weathers, weather_temporal=False, **base)
    )
    rows += [r for r in second['runs'] if r['weather_mode'] == 'iid']
    return rows


def interleaved_cost(
    model: str,
    weights: str,
    source: str,
    size: str,
    frames: int = 30,
    rounds: int = 3,
    label_map: str | None = None,  # noqa: ARG001
) -> dict:
    """Whole-step ms of ``per_frame`` and ``fusion`` measured side by side: both strategies
    step through the same ``frames`` frames, alternating frame by frame, ``rounds`` times (the
    first round is a warm-up); returns the means and their ratio."""
    import time

    from vsda_ros.data.sources import FrameSource
    from vsda_ros.inference import Segmenter, SegmenterConfig, parse_size
    from vsda_ros.models.zoo import load_model
    from vsda_ros.temporal.factory import build_strategy
    from vsda_ros.temporal.modules import load_temporal_modules

    net = load_model(model).eval()
    seg = Segmenter(net, SegmenterConfig(input_size=parse_size(size)))
    modules = load_temporal_modules(model, weights)
    images = [f.image for _, f in zip(range(frames), FrameSource(source), strict=False)]
    strategies = {
        name: build_strategy(name, seg, modules=modules) for name in ('per_frame', 'fusion')
    }
    times: dict[str, list[float]] = {name: [] for name in strategies}
    for r in range(rounds):
        for s in strategies.values():
            s.reset()
        for i, img in enumerate(images):
            for name, s in strategies.items():
                t0 = time.perf_counter()
                s.step(img, i / 15)
                if r:
                    times[name].append((time.perf_counter() - t0) * 1e3)
    pf, fu = float(np.mean(times['per_frame'])), float(np.mean(times['fusion']))
    return {
        'per_frame_ms': pf,
        'fusion_ms': fu,
        'ratio': fu / pf,
        'frames': len(images),
        'rounds': rounds - 1,
    }


def _key(row: dict) -> tuple:
    return row['weather_mode'], row['weather_kind']


def summarise(per_frame: dict, fusion: dict) -> dict:
    """Fusion against per_frame, both ``{(mode, kind): row}``."""
    clean = ('clean', None)
    pf, fu = per_frame[clean], fusion[clean]
    out = {
        'clean': {
            'miou_per_frame': pf['miou'],
            'miou_fusion': fu['miou'],
            'delta_miou': fu['miou'] - pf['miou'],
            'tc_per_frame': pf['tc'],
            'tc_fusion': fu['tc'],
            'delta_tc': fu['tc'] - pf['tc'],
            'cost_ratio': fu['mean_ms'] / pf['mean_ms'],
            'per_frame_ms': pf['mean_ms'],
            'fusion_ms': fu['mean_ms'],
            'delta_class_iou': {
                c: fu['per_class_iou'][c] - pf['per_class_iou'][c]
                for c in CLASSES
                if c in pf['per_class_iou']
            },
        }
    }
    for mode in MODES:
        deltas = {
            k: fusion[(mode, k)]['miou'] - per_frame[(mode, k)]['miou']
            for k in WEATHER_KINDS
            if (mode, k) in fusion and (mode, k) in per_frame
        }
        cls = {
            c: float(
                np.mean(
                    [
                        fusion[(mode, k)]['per_class_iou'][c]
                        - per_frame[(mode, k)]['per_class_iou'][c]
                        for k in deltas
                    ]
                )
            )
            for c in CLASSES
            if deltas and c in pf['per_class_iou']
        }
        out[mode] = {
            'delta_miou': deltas,
            'mean_delta_miou': float(np.mean(list(deltas.values()))) if deltas else None,
            'mean_delta_tc': float(
                np.mean([fusion[(mode, k)]['tc'] - per_frame[(mode, k)]['tc'] for k in deltas])
            )
            if deltas
            else None,
            'delta_class_iou': cls,
        }
        if mode == 'transient':
            hit = [fusion[(mode, k)].get('miou_hit') for k in deltas]
            hit_pf = [per_frame[(mode, k)].get('miou_hit') for k in deltas]
            if all(v is not None for v in hit + hit_pf):
                out[mode]['mean_delta_miou_hit'] = float(np.mean(np.subtract(hit, hit_pf)))
    return out


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    variants = list(summary)
    fig, axes = plt.subplots(1, len(MODES), figsize=(5 * len(MODES), 4), sharey=True)
    width = 0.8 / max(1, len(variants))
    x = np.arange(len(WEATHER_KINDS))
    for ax, mode in zip(axes, MODES, strict=False):
        for i, v in enumerate(variants):
            d = summary[v][mode]['delta_miou']
            ax.bar(
                x + i * width,
                [d.get(k, np.nan) for k in WEATHER_KINDS],
                width,
                label=f'{v} (clean ΔmIoU {summary[v]["clean"]["delta_miou"]:+.2f}, '
                f'ΔTC {summary[v]["clean"]["delta_tc"]:+.2f}, '
                f'{summary[v]["clean"]["cost_ratio"]:.2f}×)',
            )
        ax.axhline(0, color='k', lw=0.8)
        ax.set_xticks(x + width * (len(variants) - 1) / 2, WEATHER_KINDS, rotation=30)
        ax.set_title(f'{mode} weather' if mode != 'transient' else 'transient hits')
        ax.grid(axis='y', alpha=0.3)
    axes[0].set_ylabel('mIoU, fusion − per_frame')
    axes[-1].legend(fontsize=7, loc='best')
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--model', default='espnet-camvid')
    ap.add_argument(
        '--variant',
        action='append',
        required=True,
        metavar='NAME=WEIGHTS',
        help="a fusion block to study: NAME=checkpoint ('NAME=' = the modules "
        'shipped for the model); repeatable',
    )
    ap.add_argument('--source', required=True)
    ap.add_argument('--labels', required=True)
    ap.add_argument('--map', default=None, help='label map, e.g. cityscapes-camvid')
    ap.add_argument('--size', default='480x360')
    ap.add_argument('--max-frames', type=int, default=None)
    ap.add_argument('--intensity', type=float, default=0.6)
    ap.add_argument('--prob', type=float, default=0.3, help='transient hit probability')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--quiet', action='store_true')
    ap.add_argument('--out', required=True, help='OUT.json, OUT.png and OUT_runs/')
    args = ap.parse_args(argv)
    variants = []
    for text in args.variant:
        name, sep, weights = text.partition('=')
        if not sep or not name:
            ap.error(f'--variant wants NAME=WEIGHTS, got {text!r}')
        variants.append((name, weights))
    out = Path(args.out)
    runs_dir = out.parent / f'{out.name}_runs'
    per_frame, rows, summary = {}, {}, {}
    for i, (name, weights) in enumerate(variants):
        strategies = ['per_frame', 'fusion'] if i == 0 else ['fusion']
        got = passes(args.model, weights, args, strategies, runs_dir / name)
        rows[name] = [r for r in got if r['strategy'] == 'fusion']
        if i == 0:
            per_frame = {_key(r): r for r in got if r['strategy'] == 'per_frame'}
            rows['per_frame'] = [r for r in got if r['strategy'] == 'per_frame']
        summary[name] = summarise(per_frame, {_key(r): r for r in rows[name]})
        # the passes' times are not comparable (other work, warm-up): cost is measured here,
        # per_frame and fusion interleaved frame by frame
        summary[name]['clean'].update(
            cost=interleaved_cost(args.model, weights, args.source, args.size)
        )
        summary[name]['clean']['cost_ratio'] = summary[name]['clean']['cost']['ratio']
    result = {
        'model': args.model,
        'source': args.source,
        'intensity': args.intensity,
        'prob': args.prob,
        'seed': args.seed,
        'variants': dict(variants),
        'summary': summary,
        'rows': {
            k: [{kk: vv for kk, vv in r.items() if kk != 'stage_ms'} for r in v]
            for k, v in rows.items()
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.json').write_text(json.dumps(result, indent=1, default=float))
    title = (
        f'{args.model}: fusion vs per_frame (intensity {args.intensity:g}, '
        f'transient p {args.prob:g})'
    )
    plot(summary, out.with_suffix('.png'), title)
    print(
        f'{args.model}: fusion − per_frame (intensity {args.intensity:g}, '
        f'transient p {args.prob:g})'
    )
    for name, s in summary.items():
        c = s['clean']
        print(
            f'  {name}: clean mIoU {c["miou_fusion"]:.2f} ({c["delta_miou"]:+.2f}), TC '
            f'{c["tc_fusion"]:.2f} ({c["delta_tc"]:+.2f}), cost {c["cost_ratio"]:.2f}× '
            f'({c["cost"]["fusion_ms"]:.1f} / {c["cost"]["per_frame_ms"]:.1f} ms, '
            f'interleaved)'
        )
        for mode in MODES:
            m = s[mode]
            kinds = ' '.join(f'{k} {v:+.2f}' for k, v in m['delta_miou'].items())
            print(f'    {mode:>9}: mean ΔmIoU {m["mean_delta_miou"]:+.2f}  ({kinds})')
        if 'mean_delta_miou_hit' in s['transient']:
            print(
                f'    transient, hit frames only: mean ΔmIoU '
                f'{s["transient"]["mean_delta_miou_hit"]:+.2f}'
            )
    print(f'wrote {out.with_suffix(".json")} and {out.with_suffix(".png")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
