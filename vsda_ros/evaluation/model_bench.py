"""The network alone on each backend × precision, in one process: the engine of ``vsda bench
model`` (its command line is :mod:`vsda_ros.apps.bench`).

Rounds are interleaved (every round runs each configuration once, in a rotating order), so a
machine whose load changes during the run (a training job in the background) slows every
configuration alike and the ratios stay meaningful. Reports per configuration: latency p50/p95
of ``Segmenter.logits`` (1×3×H×W → 1×C×H×W, the fused graph), GFLOP/s (FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode`` on the torch model), speed-up over torch eager,
the fraction of the machine's fp32 peak (a 1024² fp32 matmul measured in the same run), and
with a labelled clip mIoU and argmax agreement with torch.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

if TYPE_CHECKING:
    from vsda_ros.evaluation.temporal import Clip
    from vsda_ros.pipeline import Pipeline


@dataclass
class BenchModelConfig:
    """Options of ``vsda bench model`` (see its ``--help``)."""

    model: str
    size: tuple[int, int] | None = None
    backends: tuple[str, ...] = ('torch', 'openvino', 'onnxruntime')
    precisions: tuple[str, ...] = ('fp32', 'bf16', 'int8')
    rounds: int = 20
    warmup: int = 3
    source: str | None = None
    labels: str | None = None
    label_map: str | None = None
    max_frames: int | None = None
    device: str = 'cpu'
    progress: bool = True
    allow_unknown_labels: bool = False


def measure_peak_gflops(n: int = 1024, repeats: int = 8) -> float:
    """fp32 GFLOP/s of an n×n matmul with torch's current threads (best of ``repeats``)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = float('inf')
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one ``model(x)`` by torch's FLOP counter (convs and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def run_bench_model(cfg: BenchModelConfig) -> dict:
    """Benchmark; returns ``{"model", "size", "peak_gflops", "flops", "rounds", "results":
    [{"backend", "precision", "ms_p50", "ms_p95", "gflops_per_s", "speedup_vs_torch",
    "peak_fraction", "miou", "argmax_agreement"}], "skipped": [...]}`` (miou/agreement
    ``None`` without a clip). Configurations that cannot run here are listed in ``skipped``
    with the reason. Raises ``ValueError`` for unknown names or ``rounds < 1``.
    """
    from vsda_ros.pipeline import PipelineConfig, build_pipeline

    _check(cfg)
    pipe = build_pipeline(
        PipelineConfig(
            model=cfg.model,
            input_size=cfg.size,
            device=cfg.device,
            temporal_weights='none',
            progress=cfg.progress,
        )
    )
    ref = pipe.segmenter
    w, h = ref.input_size
    size = (w, h)
    segs, skipped = _segmenters(pipe, size, cfg)
    clip = None
    if cfg.source:
        from vsda_ros.evaluation.temporal import load_clip

        clip = load_clip(
            cfg.source,
            cfg.labels,
            pipe.meta,
            cfg.label_map,
            max_frames=cfg.max_frames,
            allow_unknown_labels=cfg.allow_unknown_labels,
        )
        x = ref.preprocess(clip.images[0])
    else:
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(ref.device)
    flops = count_flops(ref.torch_model, x)
    peak = measure_peak_gflops()
    times = _interleaved_rounds(segs, x, cfg)
    peak = max(peak, measure_peak_gflops())  # again after the rounds: the best seen
    results = _results(segs, times, flops, peak, clip, cfg)
    return {
        'model': pipe.meta.name,
        'size': list(size),
        'peak_gflops': peak,
        'flops': flops,
        'rounds': cfg.rounds,
        'threads': torch.get_num_threads(),
        'results': results,
        'skipped': skipped,
        'unknown_label_pixels': clip.unknown_label_pixels if clip is not None else 0,
    }


def _check(cfg: BenchModelConfig) -> None:
    """``ValueError`` for ``rounds < 1`` or an unknown backend / precision."""
    from vsda_ros.inference.backends import BACKENDS, PRECISIONS

    if cfg.rounds < 1:
        raise ValueError(f'rounds must be ≥ 1, got {cfg.rounds}')
    for b in cfg.backends:
        if b not in BACKENDS:
            raise ValueError(f'unknown backend {b!r} (use {", ".join(BACKENDS)})')
    for p in cfg.precisions:
        if p not in PRECISIONS:
            raise ValueError(f'unknown precision {p!r} (use {", ".join(PRECISIONS)})')


def _segmenters(pipe: Pipeline, size: tuple[int, int], cfg: BenchModelConfig) -> tuple[dict, list]:
    """``{(backend, precision): Segmenter}`` (torch fp32 first: the pipeline's own) for every
    configuration that can run here, and the ``skipped`` rows of those that cannot."""
    from vsda_ros.inference import Segmenter, SegmenterConfig

    segs = {('torch', 'fp32'): pipe.segmenter}
    skipped = []
    for b in cfg.backends:
        for p in cfg.precisions:
            if (b, p) in segs:
                continue
            try:
                segs[(b, p)] = Segmenter(
                    pipe.model,
                    SegmenterConfig(
                        input_size=size,
                        device=cfg.device,
                        backend=b,
                        precision=p,
                        export_dir=pipe.export_dir,
                    ),
                )
            except (RuntimeError, FileNotFoundError, ValueError) as e:
                if not (b == 'torch' and p != 'fp32'):
                    skipped.append({'backend': b, 'precision': p, 'reason': str(e)})
    return segs, skipped


def _interleaved_rounds(segs: dict, x: torch.Tensor, cfg: BenchModelConfig) -> dict:
    """``{key: [ms, …]}``: warm-up calls, then ``rounds`` rounds that run every configuration
    once each, in an order that rotates from round to round."""
    keys = list(segs)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    with torch.inference_mode():
        for k in keys:  # warm-up: first calls compile / allocate
            for _ in range(cfg.warmup):
                segs[k].logits(x)
        bar = tqdm(
            total=cfg.rounds * len(keys), desc='bench model', unit='run', disable=not cfg.progress
        )
        for r in range(cfg.rounds):
            for i in range(len(keys)):
                k = keys[(i + r) % len(keys)]
                t = time.perf_counter()
                segs[k].logits(x)
                if segs[k].device.type == 'cuda':
                    torch.cuda.synchronize(segs[k].device)
                times[k].append((time.perf_counter() - t) * 1e3)
                bar.update(1)
        bar.close()
    return times


def _results(
    segs: dict, times: dict, flops: int, peak: float, clip: Clip | None, cfg: BenchModelConfig
) -> list[dict]:
    """The report's ``results`` rows (with a clip: accuracy against torch fp32)."""
    from vsda_ros.evaluation.accuracy import Reference, measure

    ref = segs[('torch', 'fp32')]
    torch_p50 = float(np.percentile(times[('torch', 'fp32')], 50))
    results = []
    reference = Reference(ref, clip.images) if clip is not None else None
    for k in segs:
        p50, p95 = (float(np.percentile(times[k], q)) for q in (50, 95))
        row = {
            'backend': k[0],
            'precision': k[1],
            'ms_p50': p50,
            'ms_p95': p95,
            'gflops_per_s': flops / (p50 / 1e3) / 1e9,
            'speedup_vs_torch': torch_p50 / p50,
            'peak_fraction': flops / (p50 / 1e3) / 1e9 / peak,
            'miou': None,
            'argmax_agreement': None,
        }
        if clip is not None:
            labs = clip.labels if cfg.labels else None
            acc = measure(segs[k], ref, clip.images, labs, clip if labs else None, reference)
            row['argmax_agreement'] = acc['argmax_agreement']
            row['miou'] = acc.get('miou')
        results.append(row)
    return results


def format_table(report: dict) -> str:
    """The human summary of :func:`run_bench_model`'s report."""
    w, h = report['size']
    lines = [
        f'{report["model"]} at {w}x{h}: {report["flops"] / 1e9:.2f} GFLOP per frame; '
        f'fp32 peak {report["peak_gflops"]:.1f} GFLOP/s (1024² matmul, '
        f'{report["threads"]} threads); {report["rounds"]} interleaved rounds',
        f'{"backend":>12s} {"prec":>5s} {"p50 ms":>8s} {"p95 ms":>8s} {"GFLOP/s":>8s} '
        f'{"x torch":>8s} {"% peak":>7s} {"mIoU":>6s} {"agree %":>8s}',
    ]
    for r in report['results']:
        miou = '   n/a' if r['miou'] is None else f'{r["miou"]:6.2f}'
        agree = '     n/a' if r['argmax_agreement'] is None else f'{r["argmax_agreement"]:8.3f}'
        lines.append(
            f'{r["backend"]:>12s} {r["precision"]:>5s} {r["ms_p50"]:8.1f} '
            f'{r["ms_p95"]:8.1f} {r["gflops_per_s"]:8.1f} '
            f'{r["speedup_vs_torch"]:7.2f}x {100 * r["peak_fraction"]:6.1f}% '
            f'{miou} {agree}'
        )
    for s in report['skipped']:
        lines.append(f'  skipped {s["backend"]} {s["precision"]}: {s["reason"]}')
    return '\n'.join(lines)


def write_json(report: dict, path: str | Path) -> None:
    """``report`` as JSON at ``path`` (``-`` = stdout)."""
    text = json.dumps(report, indent=2) + '\n'
    if str(path) == '-':
        print(text, end='')
    else:
        Path(path).write_text(text)
