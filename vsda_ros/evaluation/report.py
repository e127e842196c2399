"""``vsda eval``: strategies on a clip → ``report.json``, ``report.md`` and PNG plots.

Report keys (stable, documented in README):
    ``model``, ``source``, ``frames``, ``label_map``, ``temporal_modules``,
    ``runs``: one object per strategy with ``strategy``, ``weather`` (``null`` = clean),
    ``miou``, ``per_class_iou``, ``pixel_accuracy`` (with labels), ``tc``, ``latency_ms``
    {``p50``, ``p95``, ``p99``}, ``fps``, ``frames``, ``dropped`` (0 offline), ``keyframe_ratio``,
    ``stage_ms``;
    the first run's ``miou``, ``per_class_iou``, ``tc``, ``latency_ms``, ``fps`` repeated at the
    top level;
    with keyframe PDA: ``pda`` {``keyframe``|``warp``|``per_frame``: {d: mIoU}},
    ``pda_distortion`` {d: mean D}, ``cost`` {``key_ms_p50``, ``nonkey_ms_p50``,
    ``key_gflops``, ``nonkey_gflops``, ``time_ratio``, ``flops_ratio``, ``warp_nonkey_ms_p50``}.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vsda_ros.evaluation.temporal import (evaluate_strategy, load_clip, pda_curve,
                                          per_frame_at_distance)
from vsda_ros.temporal.modules import load_temporal_modules


@dataclass
class EvalConfig:
    """Options of ``vsda eval`` (see its ``--help``)."""

    model: str
    source: str
    out: Path
    labels: str | None = None
    label_map: str | None = None
    strategies: list[str] = field(default_factory=lambda: ['per_frame', 'fusion', 'keyframe'])
    interval: str = '5'
    temporal_weights: str = ''
    size: str | None = None
    device: str = 'cpu'
    fps: float = 15.0
    max_frames: int | None = None
    pda: bool = False
    flow_preset: str = 'ultrafast'
    progress: bool = True

    def intervals(self) -> tuple[int, int | None]:
        """(keyframe interval of the strategy run, PDA max distance or ``None``)."""
        text = str(self.interval)
        if '..' in text:
            a, b = (int(v) for v in text.split('..'))
            if not 1 <= a <= b:
                raise ValueError(f'--interval range must be 1 ≤ A ≤ B, got {text}')
            return 5, b
        n = int(text)
        if n < 1:
            raise ValueError(f'--interval must be ≥ 1, got {n}')
        return n, (9 if self.pda else None)


def _gflops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def run_eval(cfg: EvalConfig) -> dict:
    """Evaluate and write the report; returns the report dict.

    Raises ``ValueError``/``FileNotFoundError`` for bad inputs (unknown strategy, missing
    folders, a label map that does not fit the model).
    """
    from vsda_ros.inference import Segmenter, SegmenterConfig, parse_size
    from vsda_ros.models.zoo import load_model
    from vsda_ros.temporal.strategy import STRATEGY_NAMES, StrategyConfig, build_strategy

    for s in cfg.strategies:
        if s not in STRATEGY_NAMES:
            raise ValueError(f'unknown strategy {s!r}; available: {", ".join(STRATEGY_NAMES)}')
    interval, max_d = cfg.intervals()
    model = load_model(cfg.model, progress=cfg.progress)
    seg = Segmenter(model, SegmenterConfig(input_size=parse_size(cfg.size), device=cfg.device))
    modules = load_temporal_modules(cfg.model, cfg.temporal_weights)
    clip = load_clip(cfg.source, cfg.labels, model.meta, cfg.label_map, cfg.fps, cfg.max_frames)
    cfg.out.mkdir(parents=True, exist_ok=True)

    def strategy(name: str, **kw):
        return build_strategy(name, seg, StrategyConfig(keyframe_interval=interval,
                                                        flow_preset=cfg.flow_preset, **kw),
                              modules)

    runs, predictions = [], {}
    for name in cfg.strategies:
        res = evaluate_strategy(strategy(name), clip, progress=cfg.progress)
        predictions[name] = res.pop('predictions')
        runs.append({'weather': None, 'dropped': 0, **res})
    report = {'model': model.meta.name, 'source': str(cfg.source), 'frames': len(clip.images),
              'label_map': cfg.label_map, 'temporal_modules': modules.loaded(),
              'keyframe_interval': interval, 'flow_preset': cfg.flow_preset, 'runs': runs}
    for key in ('miou', 'per_class_iou', 'tc', 'latency_ms', 'fps'):
        if key in runs[0]:
            report[key] = runs[0][key]

    if max_d is not None and 'keyframe' in cfg.strategies:
        corrected = strategy('keyframe')
        pda = pda_curve(corrected, clip, max_d, cfg.progress, 'pda keyframe')
        plain = pda_curve(strategy('keyframe', correction=False), clip, max_d, cfg.progress,
                          'pda warp')
        pf_preds = predictions.get('per_frame')
        if pf_preds is None:
            pf_preds = evaluate_strategy(strategy('per_frame'), clip, False)['predictions']
        report['pda'] = {'keyframe': pda['miou'], 'warp': plain['miou'],
                         'per_frame': per_frame_at_distance(pf_preds, clip, max_d)}
        report['pda_frames'] = pda['frames']
        report['pda_distortion'] = pda['distortion']
        # FLOPs of one keyframe and one propagated frame, counted by torch (DIS flow runs in
        # OpenCV and is not counted; nor are grid_sample and the final softmax/argmax).
        corrected.reset()
        key_gf = _gflops(lambda: corrected.step(clip.images[0], 0.0))
        nonkey_gf = _gflops(lambda: corrected.step(clip.images[1], 1 / clip.fps))
        key_ms = float(np.median(pda['key_ms']))
        nonkey_ms = float(np.median(pda['nonkey_ms']))
        report['cost'] = {'key_ms_p50': key_ms, 'nonkey_ms_p50': nonkey_ms,
                          'warp_nonkey_ms_p50': float(np.median(plain['nonkey_ms'])),
                          'key_gflops': key_gf, 'nonkey_gflops': nonkey_gf,
                          'time_ratio': nonkey_ms / key_ms,
                          'flops_ratio': nonkey_gf / key_gf if key_gf else None,
                          'corrected': corrected.corrects}
    (cfg.out / 'report.json').write_text(json.dumps(report, indent=2, default=_json) + '\n')
    (cfg.out / 'report.md').write_text(markdown(report))
    plot(report, cfg.out)
    return report


def _json(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, torch.Tensor):
        return v.tolist()
    raise TypeError(type(v))


def _f(v, nd=2) -> str:
    return 'n/a' if v is None or (isinstance(v, float) and np.isnan(v)) else f'{v:.{nd}f}'


def markdown(r: dict) -> str:
    """The report as Markdown tables."""
    lines = [f"# vsda eval: {r['model']} on {r['source']} ({r['frames']} frames)", '',
             f"Temporal modules: {', '.join(r['temporal_modules']) or 'none (untrained)'}; "
             f"keyframe interval {r['keyframe_interval']}.", '',
             '| strategy | mIoU | TC | latency p50 / p95 / p99 ms | fps | keyframes |',
             '|---|---|---|---|---|---|']
    for run in r['runs']:
        lat = run['latency_ms']
        lines.append(f"| {run['strategy']} | {_f(run.get('miou'))} | {_f(run['tc'])} | "
                     f"{_f(lat['p50'], 1)} / {_f(lat['p95'], 1)} / {_f(lat['p99'], 1)} | "
                     f"{_f(run['fps'], 1)} | {_f(run['keyframe_ratio'])} |")
    if 'pda' in r:
        ds = list(r['pda']['keyframe'])
        lines += ['', '## Propagation distance (mIoU at distance d from the keyframe)', '',
                  '| d | ' + ' | '.join(str(d) for d in ds) + ' |',
                  '|---|' + '---|' * len(ds)]
        for name, curve in r['pda'].items():
            lines.append(f'| {name} | ' + ' | '.join(_f(curve[d], 1) for d in ds) + ' |')
        c = r['cost']
        lines += ['', '## Cost', '', '| frame | median ms | GFLOPs (torch-counted) |',
                  '|---|---|---|',
                  f"| key | {_f(c['key_ms_p50'], 1)} | {_f(c['key_gflops'])} |",
                  f"| non-key | {_f(c['nonkey_ms_p50'], 1)} | {_f(c['nonkey_gflops'])} |",
                  f"| non-key, plain warp | {_f(c['warp_nonkey_ms_p50'], 1)} | |", '',
                  f"Non-key/key time ratio {_f(c['time_ratio'], 3)}, FLOPs ratio "
                  f"{_f(c['flops_ratio'], 3)}."]
    return '\n'.join(lines) + '\n'


def plot(r: dict, out: Path) -> None:
    """PDA curve, mIoU/TC per strategy, latency histogram."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = [run['strategy'] for run in r['runs']]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    x = np.arange(len(names))
    ax[0].bar(x, [run.get('miou') or 0 for run in r['runs']], color='tab:blue')
    ax[0].set_title('mIoU (%)')
    ax[1].bar(x, [run['tc'] for run in r['runs']], color='tab:green')
    ax[1].set_title('temporal consistency (%)')
    for a in ax:
        a.set_xticks(x, names)
        a.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / 'strategies.png', dpi=110)
    plt.close(fig)
    if 'pda' in r:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        styles = {'per_frame': ('--', 'k', 'per-frame'),
                  'warp': ('-o', 'tab:red', 'plain warping'),
                  'keyframe': ('-o', 'tab:blue', 'keyframe + DMNet/CFNet')}
        for name, curve in r['pda'].items():
            keys = [d for d in curve if int(d) > 0]
            ls, color, label = styles[name]
            ax.plot([int(d) for d in keys], [curve[d] for d in keys], ls, color=color,
                    label=label)
        ax.set_xlabel('propagation distance d (frames at 15 Hz)')
        ax.set_ylabel('mIoU (%)')
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / 'pda.png', dpi=110)
        plt.close(fig)
