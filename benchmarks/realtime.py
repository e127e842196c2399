#!/usr/bin/env python3
"""Real time, measured as a user would (issue 26 item 6): ``vsda bench node`` per configuration,
interleaved, each twice, with the mIoU of the same configuration on the dense CamVid clip.

Configurations, per model (``espnetv2-cityscapes``: 1024×512 camera at 15 Hz; ``espnet-camvid``:
480×360 at 30 Hz; the network input equals the camera frame):

- ``default`` — the node's default when issue 26 was filed (the baseline its targets name):
  torch fp32, ``per_frame``;
- ``auto`` — the node's default since 2026-12-07: ``backend: auto``, ``precision: auto``
  (the fastest backend whose recorded accuracy check passed), ``per_frame``;
- ``recommended`` — the README's real-time configuration: openvino bf16, ``keyframe`` with
  ``async_keyframes`` (the key network in a background thread), ``target_rate`` = the camera
  rate, ``num_threads`` 1 (key and foreground one core each), flow at the feature
  resolution / 2 (1024×512) or / 1 (480×360);
- frontier variants: ``ov-per-frame`` (openvino bf16, ``per_frame``: the backend alone) and
  ``ov-keyframe-inline`` (openvino bf16, ``keyframe`` in line with ``target_rate``: the rate
  controller without background keys).

Every run is :func:`vsda_ros.ros.tools.bench_node.run_bench` (the node as a process over real
DDS, the publisher in this process on the same cores), rounds interleaved in a rotating order,
so a machine whose load changes slows every configuration alike. Reported per configuration
(mean of the rounds, and each round): output Hz / input Hz, end-to-end p50/p95, node overhead
p95 (end-to-end outside the mailbox wait and the strategy: decode, publish, DDS), the keyframe
interval the node reported, and the mIoU of the same configuration offline on
``$VSDA_DATA_DIR/camvid/val`` + ``valannot`` (61 frames at 15 Hz; espnetv2-cityscapes through
the ``cityscapes-camvid`` label map) through the same strategy objects
(:func:`vsda_ros.evaluation.temporal.evaluate_strategy`). Offline the keyframe interval is the
median the node reported, and background keys run in ``AsyncKeyframe``'s deterministic
simulated-delay mode with ``key_delay_frames`` = ⌈key ms / frame period⌉ from the key cost the
node's rate controller measured (the ``rate_control`` reason): the accuracy the live run had.

Writes ``--out`` (JSON) and the frontier plot next to it (PNG: output/input rate vs mIoU,
marker area ∝ end-to-end p95)::

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=77 \\
        .venv/bin/python benchmarks/realtime.py --out runs/realtime.json   # ~15 min on 2 cores

``--quick`` (3 s per run, one round, 8 clip frames) checks that it works end to end.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vsda_ros.paths import data_dir


@dataclass(frozen=True)
class Setup:
    """One model's camera: frame size (= network input), rate, label map for the clip."""

    model: str
    size: tuple[int, int]
    rate: float
    label_map: str | None
    flow_downscale: int


SETUPS = (
    Setup('espnetv2-cityscapes', (1024, 512), 15.0, 'cityscapes-camvid', 2),
    Setup('espnet-camvid', (480, 360), 30.0, None, 1),
)


@dataclass
class Config:
    """One node configuration: its name and the node parameters it sets."""

    name: str
    params: dict
    rounds: list[dict] = field(default_factory=list)  # run_bench reports
    miou: float | None = None
    offline: dict = field(default_factory=dict)  # what the offline run used


def configs(setup: Setup) -> list[Config]:
    """The configurations benchmarked for ``setup`` (see the module docstring)."""
    ov = {'backend': 'openvino', 'precision': 'bf16'}
    rt = {'target_rate': setup.rate, 'max_keyframe_interval': 10, 'keyframe_interval': 5}
    return [
        Config('default', {'backend': 'torch', 'precision': 'fp32', 'strategy': 'per_frame'}),
        Config('auto', {'backend': 'auto', 'precision': 'auto', 'strategy': 'per_frame'}),
        Config(
            'recommended',
            {
                **ov,
                **rt,
                'strategy': 'keyframe',
                'async_keyframes': True,
                'num_threads': 1,
                'flow_downscale': setup.flow_downscale,
            },
        ),
        Config('ov-per-frame', {**ov, 'strategy': 'per_frame'}),
        Config(
            'ov-keyframe-inline',
            {**ov, **rt, 'strategy': 'keyframe', 'flow_downscale': setup.flow_downscale},
        ),
    ]


# ---- live: the node over DDS -------------------------------------------------------------------
def run_rounds(
    setup: Setup, cfgs: list[Config], frames: Path, rounds: int, duration: float, warmup: float
) -> None:
    """``rounds`` interleaved rounds (rotating order) of every config; reports into
    ``cfg.rounds``."""
    from vsda_ros.ros.tools.bench_node import run_bench

    size = f'{setup.size[0]}x{setup.size[1]}'
    for r in range(rounds):
        order = cfgs[r % len(cfgs) :] + cfgs[: r % len(cfgs)]
        for cfg in order:
            print(
                f'[{setup.model}] round {r + 1}/{rounds}: {cfg.name} ...',
                file=sys.stderr,
                flush=True,
            )
            report = run_bench(
                setup.model,
                frames,
                setup.rate,
                duration,
                size,
                warmup,
                frame_size=setup.size,
                node_params=cfg.params,
            )
            cfg.rounds.append(report)


def key_ms(report: dict) -> float | None:
    """The key cost (ms) the node's rate controller measured, from its reason line."""
    m = re.search(r'key ([0-9.]+) ms', report.get('rate_control') or '')
    return float(m.group(1)) if m else None


def summary(cfg: Config, rate: float) -> dict:
    """Mean over the rounds of the table's figures (and each round's output ratio)."""
    rs = cfg.rounds
    mean = lambda xs: statistics.fmean(xs) if xs else float('nan')  # noqa: E731
    intervals = [
        r['keyframe_interval_median'] for r in rs if r.get('keyframe_interval_median') is not None
    ]
    keys = [k for k in (key_ms(r) for r in rs) if k is not None]
    return {
        'output_hz': mean([r['output_hz_per_camera'] for r in rs]),
        'input_hz': mean([r['input_hz'] for r in rs]),
        'camera_hz': rate,
        'output_over_input': mean([r['output_over_input'] for r in rs]),
        'output_over_input_rounds': [r['output_over_input'] for r in rs],
        'e2e_p50_ms': mean([r['end_to_end_ms']['p50'] for r in rs]),
        'e2e_p95_ms': mean([r['end_to_end_ms']['p95'] for r in rs]),
        'node_overhead_p95_ms': mean([r['node_overhead_ms']['p95'] for r in rs]),
        'keyframe_interval': statistics.median(intervals) if intervals else None,
        'key_ms': mean(keys) if keys else None,
        'kinds': {k: v['end_to_end_ms'] for k, v in rs[-1]['kinds'].items()} if rs else {},
    }


# ---- offline: the same configuration's mIoU on the dense clip -------------------------------
def offline_strategy(pipe, cfg: Config, s: dict, rate: float):
    """The strategy object ``cfg`` runs, for the clip: per_frame as is; keyframe at the
    interval the node chose; background keys as ``AsyncKeyframe`` with the simulated delay
    ⌈key ms / frame period⌉ (at least 1). Returns (strategy, what was used)."""
    from vsda_ros.temporal.strategy import StrategyConfig

    p = cfg.params
    if p['strategy'] != 'keyframe':
        return pipe.strategy(p['strategy']), {'strategy': p['strategy']}
    interval = max(1, round(s['keyframe_interval'] or p.get('keyframe_interval', 5)))
    used = {
        'strategy': 'keyframe',
        'keyframe_interval': interval,
        'flow_downscale': p.get('flow_downscale', 1),
    }
    conf = StrategyConfig(
        keyframe_interval=interval, correction=False, flow_downscale=used['flow_downscale']
    )
    if p.get('async_keyframes'):
        delay = max(1, math.ceil((s['key_ms'] or 0.0) / (1000.0 / rate)))
        used['key_delay_frames'] = delay
        conf.async_keyframes, conf.key_delay_frames = True, delay
    return pipe.strategy('keyframe', conf), used


def score_offline(
    setup: Setup,
    cfgs: list[Config],
    clip_dir: Path,
    max_frames: int | None,
    summaries: dict[str, dict],
) -> None:
    """Each config's clip mIoU (offline, deterministic), one pipeline per backend."""
    from vsda_ros.evaluation.temporal import evaluate_strategy, load_clip
    from vsda_ros.pipeline import PipelineConfig, build_pipeline

    pipes: dict[tuple, object] = {}
    clip = None
    for cfg in cfgs:
        key = (cfg.params['backend'], cfg.params['precision'])
        if key not in pipes:
            pipes[key] = build_pipeline(
                PipelineConfig(
                    model=setup.model,
                    input_size=setup.size,
                    backend=key[0],
                    precision=key[1],
                    temporal_weights='none',
                    download=False,
                    progress=False,
                )
            )
        pipe = pipes[key]
        if clip is None:
            clip = load_clip(
                str(clip_dir / 'val'),
                str(clip_dir / 'valannot'),
                pipe.meta,
                setup.label_map,
                max_frames=max_frames,
            )
        strategy, cfg.offline = offline_strategy(pipe, cfg, summaries[cfg.name], setup.rate)
        res = evaluate_strategy(strategy, clip, progress=False, desc=cfg.name)
        cfg.miou = res.get('miou')
        cfg.offline['tc'] = res.get('tc')
        print(
            f'[{setup.model}] {cfg.name}: clip mIoU {cfg.miou:.2f} ({cfg.offline})',
            file=sys.stderr,
            flush=True,
        )


# ---- report ----------------------------------------------------------------------------------
def table(results: list[dict]) -> str:
    """The human table: one line per (model, configuration)."""
    head = (
        f'{"model":<20s} {"config":<19s} {"out/in Hz":>13s} {"ratio":>5s} {"e2e p50":>8s} '
        f'{"e2e p95":>8s} {"ovh p95":>8s} {"interval":>8s} {"mIoU":>6s}'
    )
    lines = [head, '-' * len(head)]
    for res in results:
        for name, s in res['configs'].items():
            iv = s['keyframe_interval']
            lines.append(
                f'{res["model"]:<20s} {name:<19s} {s["output_hz"]:5.2f}/{s["input_hz"]:5.2f} Hz '
                f'{s["output_over_input"]:5.2f} {s["e2e_p50_ms"]:8.1f} {s["e2e_p95_ms"]:8.1f} '
                f'{s["node_overhead_p95_ms"]:8.1f} {"-" if iv is None else f"{iv:g}":>8s} '
                f'{s["miou"] if s["miou"] is not None else float("nan"):6.2f}'
            )
        lines.append(f'  targets: {res["targets"]}')
    return '\n'.join(lines)


def targets(s: dict[str, dict]) -> dict[str, bool]:
    """The issue's targets for the recommended configuration against the default (same run)."""
    rec, base = s['recommended'], s['default']
    miou_ok = (
        rec['miou'] is not None and base['miou'] is not None and rec['miou'] >= base['miou'] - 1.5
    )
    return {
        'output_ge_0.9x_input': rec['output_over_input'] >= 0.9,
        'e2e_p95_le_250ms': rec['e2e_p95_ms'] <= 250.0,
        'miou_within_1.5_of_per_frame_torch': miou_ok,
        'output_ge_4x_default': rec['output_hz'] >= 4.0 * base['output_hz'],
        'node_overhead_p95_le_5ms': rec['node_overhead_p95_ms'] <= 5.0,
    }


def plot(results: list[dict], path: Path) -> None:
    """Frontier: output/input rate (x) vs clip mIoU (y), marker area ∝ end-to-end p95."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        for name, s in res['configs'].items():
            if s['miou'] is None:
                continue
            ax.scatter(
                s['output_over_input'], s['miou'], s=max(20.0, s['e2e_p95_ms'] / 2), alpha=0.6
            )
            ax.annotate(
                f'{name}\n{s["e2e_p95_ms"]:.0f} ms p95',
                (s['output_over_input'], s['miou']),
                fontsize=8,
            )
        ax.axvline(0.9, ls='--', c='grey', lw=0.8)
        ax.set(
            title=f'{res["model"]} {res["size"][0]}x{res["size"][1]} @ {res["rate"]:g} Hz',
            xlabel='output / input rate',
            ylabel='clip mIoU (CamVid val, 61 frames)',
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default='runs/realtime.json', help='JSON report (PNG beside it)')
    ap.add_argument('--models', default=','.join(s.model for s in SETUPS))
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--duration', type=float, default=15.0, help='measured s per run')
    ap.add_argument('--warmup', type=float, default=4.0, help='unmeasured s per run')
    ap.add_argument('--configs', default='', help='only these configuration names')
    ap.add_argument('--quick', action='store_true', help='3 s runs, 1 round, 8 clip frames')
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3.0, 2.0
    ddir = data_dir()
    if ddir is None or not (ddir / 'camvid' / 'val').is_dir():
        ap.error('real data not found: set VSDA_DATA_DIR (needs camvid/val and valannot)')
    from vsda_ros.ros.tools.launcher import confine_to_loopback

    confine_to_loopback()  # network rule, before rclpy loads
    results = []
    for setup in (s for s in SETUPS if s.model in args.models.split(',')):
        cfgs = [c for c in configs(setup) if not args.configs or c.name in args.configs]
        run_rounds(setup, cfgs, ddir / 'camvid' / 'val', args.rounds, args.duration, args.warmup)
        sums = {c.name: summary(c, setup.rate) for c in cfgs}
        score_offline(setup, cfgs, ddir / 'camvid', 8 if args.quick else None, sums)
        for c in cfgs:
            sums[c.name].update(miou=c.miou, offline=c.offline, params=c.params)
        res = {
            'model': setup.model,
            'size': list(setup.size),
            'rate': setup.rate,
            'configs': sums,
            'rounds': {c.name: c.rounds for c in cfgs},
        }
        res['targets'] = targets(sums) if {'default', 'recommended'} <= set(sums) else {}
        results.append(res)
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({'results': results, 'args': vars(args)}, indent=2, default=str) + '\n'
    )
    plot(results, out.with_suffix('.png'))
    print(f'report: {out} (plot {out.with_suffix(".png")})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
