"""``vsda bench``: ``node`` — segmentation_node over real DDS (the ROS tool
:mod:`vsda_ros.ros.tools.bench_node`, imported only when it runs); ``model`` — the network alone
on each backend × precision, in one process (here).

Rounds are interleaved (every round runs each configuration once, in a rotating order), so a
machine whose load changes during the run (a training job in the background) slows every
configuration alike and the ratios stay meaningful. Reports per configuration: latency p50/p95
of ``Segmenter.logits`` (1×3×H×W → 1×C×H×W, the fused graph), GFLOP/s (FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode`` on the torch model), speed-up over torch eager,
the fraction of the machine's fp32 peak (a 1024² fp32 matmul measured in the same run), and
with a labelled clip mIoU and argmax agreement with torch.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vsda_ros.apps._common import (
    EPILOG,
    add_allow_unknown_labels,
    int_range,
    label_map_choices,
    non_negative_float,
    positive_float,
    positive_int,
)


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
    return 2 * n ** 3 / best / 1e9


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
    pipe = build_pipeline(PipelineConfig(model=cfg.model, input_size=cfg.size, device=cfg.device,
                                         temporal_weights='none', progress=cfg.progress))
    ref, size = pipe.segmenter, tuple(pipe.segmenter.input_size)
    segs, skipped = _segmenters(pipe, size, cfg)
    clip = None
    if cfg.source:
        from vsda_ros.evaluation.temporal import load_clip
        clip = load_clip(cfg.source, cfg.labels, pipe.meta, cfg.label_map,
                         max_frames=cfg.max_frames,
                         allow_unknown_labels=cfg.allow_unknown_labels)
        x = ref.preprocess(clip.images[0])
    else:
        w, h = size
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(ref.device)
    flops = count_flops(ref.torch_model, x)
    peak = measure_peak_gflops()
    times = _interleaved_rounds(segs, x, cfg)
    peak = max(peak, measure_peak_gflops())  # again after the rounds: the best seen
    results = _results(segs, times, flops, peak, clip, cfg)
    return {'model': pipe.meta.name, 'size': list(size), 'peak_gflops': peak,
            'flops': flops, 'rounds': cfg.rounds, 'threads': torch.get_num_threads(),
            'results': results, 'skipped': skipped,
            'unknown_label_pixels': clip.unknown_label_pixels if clip is not None else 0}


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


def _segmenters(pipe, size: tuple[int, int], cfg: BenchModelConfig) -> tuple[dict, list]:
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
                segs[(b, p)] = Segmenter(pipe.model, SegmenterConfig(
                    input_size=size, device=cfg.device, backend=b, precision=p,
                    export_dir=pipe.export_dir))
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
        bar = tqdm(total=cfg.rounds * len(keys), desc='bench model', unit='run',
                   disable=not cfg.progress)
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


def _results(segs: dict, times: dict, flops: int, peak: float, clip,
             cfg: BenchModelConfig) -> list[dict]:
    """The report's ``results`` rows (with a clip: accuracy against torch fp32)."""
    from vsda_ros.evaluation.accuracy import Reference, measure

    ref = segs[('torch', 'fp32')]
    torch_p50 = float(np.percentile(times[('torch', 'fp32')], 50))
    results = []
    reference = Reference(ref, clip.images) if clip is not None else None
    for k in segs:
        p50, p95 = (float(np.percentile(times[k], q)) for q in (50, 95))
        row = {'backend': k[0], 'precision': k[1], 'ms_p50': p50, 'ms_p95': p95,
               'gflops_per_s': flops / (p50 / 1e3) / 1e9, 'speedup_vs_torch': torch_p50 / p50,
               'peak_fraction': flops / (p50 / 1e3) / 1e9 / peak,
               'miou': None, 'argmax_agreement': None}
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
    lines = [f"{report['model']} at {w}x{h}: {report['flops'] / 1e9:.2f} GFLOP per frame; "
             f"fp32 peak {report['peak_gflops']:.1f} GFLOP/s (1024² matmul, "
             f"{report['threads']} threads); {report['rounds']} interleaved rounds",
             f"{'backend':>12s} {'prec':>5s} {'p50 ms':>8s} {'p95 ms':>8s} {'GFLOP/s':>8s} "
             f"{'x torch':>8s} {'% peak':>7s} {'mIoU':>6s} {'agree %':>8s}"]
    for r in report['results']:
        miou = '   n/a' if r['miou'] is None else f"{r['miou']:6.2f}"
        agree = '     n/a' if r['argmax_agreement'] is None else f"{r['argmax_agreement']:8.3f}"
        lines.append(f"{r['backend']:>12s} {r['precision']:>5s} {r['ms_p50']:8.1f} "
                     f"{r['ms_p95']:8.1f} {r['gflops_per_s']:8.1f} "
                     f"{r['speedup_vs_torch']:7.2f}x {100 * r['peak_fraction']:6.1f}% "
                     f"{miou} {agree}")
    for s in report['skipped']:
        lines.append(f"  skipped {s['backend']} {s['precision']}: {s['reason']}")
    return '\n'.join(lines)


def write_json(report: dict, path: str | Path) -> None:
    """``report`` as JSON at ``path`` (``-`` = stdout)."""
    text = json.dumps(report, indent=2) + '\n'
    if str(path) == '-':
        print(text, end='')
    else:
        Path(path).write_text(text)


# ------------------------------------------------------------------------------ command line
BENCH_DESCRIPTION = (
    'node: start segmentation_node, publish real frames at --rate for --duration s '
    '(or exactly --frames N: a soak test) and report end-to-end and inference '
    'latency p50/p95, node overhead, drops, RSS (start, end, peak), open file '
    'descriptors, threads, and whether the node\'s totals add up (received = '
    'processed + dropped + bad_frames; exit 1 if not). Runs with '
    'ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a domain of its own. '
    'model: the network alone in this process on each --backend x '
    '--precision, in interleaved rounds: latency p50/p95, GFLOP/s, speed-up '
    'over torch eager, fraction of the fp32 peak (a matmul measured in the '
    'same run); with --source (and --labels) argmax agreement (and mIoU). '
    'JSON: {"model", "size", "peak_gflops", "results": [{"backend", '
    '"precision", "ms_p50", "ms_p95", "gflops_per_s", "speedup_vs_torch", '
    '"miou", "argmax_agreement"}]}. int8 needs --model DIR from vsda export '
    '--precision int8 --calibrate.')


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsda bench node|model``."""
    p = subparsers.add_parser(
        'bench', help='benchmark segmentation_node over real DDS, or the network per backend',
        description=BENCH_DESCRIPTION, epilog=EPILOG)
    p.add_argument('target', choices=['node', 'model'], help='what to benchmark')
    p.add_argument('--backend', default=None,
                   help='node: the node\'s backend (default torch); model: comma-separated '
                        '(default torch,openvino,onnxruntime)')
    p.add_argument('--precision', default=None,
                   help='node: the node\'s precision (default fp32); model: comma-separated '
                        '(default fp32,bf16,int8; what cannot run here is listed as skipped)')
    p.add_argument('--rounds', type=positive_int, default=20,
                   help='model: interleaved rounds (default: %(default)s)')
    p.add_argument('--labels', default=None, help='model: labels of --source (adds mIoU)')
    p.add_argument('--map', dest='label_map', default=None, choices=label_map_choices(),
                   help='model: map the model classes to the labels')
    add_allow_unknown_labels(p)
    p.add_argument('--max-frames', type=positive_int, default=None,
                   help='model: at most N frames of --source for the accuracy columns')
    p.add_argument('--model', default='espnet-camvid', help='(default: %(default)s)')
    p.add_argument('--source', default=None,
                   help='folder of frames to publish (default: VSDA_DATA_DIR/camvid/val)')
    p.add_argument('--frames', type=positive_int, default=None,
                   help='publish exactly N frames after the warm-up (overrides --duration), '
                        'e.g. --frames 10000 --rate 30 for a soak test')
    p.add_argument('--frame-size', default=None,
                   help='resize the published frames to WIDTHxHEIGHT (e.g. 3840x2160 for a '
                        '4K camera; default: as read)')
    p.add_argument('--size', default='', help="network input WIDTHxHEIGHT ('' = native)")
    p.add_argument('--rate', type=positive_float, default=30.0,
                   help='publish rate in Hz (default: 30)')
    p.add_argument('--duration', type=positive_float, default=60.0,
                   help='measured seconds (default: 60)')
    p.add_argument('--warmup', type=non_negative_float, default=5.0,
                   help='node: unmeasured seconds first; model: warm-up calls per '
                        'configuration (default: 5)')
    p.add_argument('--max-queue-wait-ms', type=non_negative_float, default=0.0,
                   help="the node's latency mode (max_queue_wait_ms parameter; 0 = off)")
    add_node_realtime_args(p)
    p.add_argument('--json', nargs='?', const='-', default=None, metavar='PATH',
                   help='write the JSON report to PATH; --json alone prints it on stdout (the '
                        'summary then goes to stderr)')
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``vsda bench node|model``: the exit status (node: 1 when its totals do not add up)."""
    return run_model(args) if args.target == 'model' else run_node(args)


def run_model(args: argparse.Namespace) -> int:
    """``vsda bench model``: benchmark, print the table (stderr when the JSON goes to
    stdout), write the JSON."""
    import contextlib
    import sys

    from vsda_ros.apps._common import config_from_args
    from vsda_ros.inference import parse_size

    cfg = config_from_args(
        BenchModelConfig, args, size=parse_size(args.size or None),
        backends=tuple((args.backend or 'torch,openvino,onnxruntime').split(',')),
        precisions=tuple((args.precision or 'fp32,bf16,int8').split(',')),
        warmup=max(1, int(args.warmup)))
    to_stdout = args.json == '-'
    with contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
        report = run_bench_model(cfg)
        print(format_table(report))
    if args.json:
        write_json(report, args.json)
        if not to_stdout:
            print(f'report: {args.json}')
    return 0


def run_node(args: argparse.Namespace) -> int:
    """``vsda bench node``: run, print the summary (stderr when the JSON goes to stdout)."""
    import contextlib
    import sys

    from vsda_ros.inference import parse_size
    from vsda_ros.paths import data_dir
    from vsda_ros.ros.tools.bench_node import print_report, run_bench  # imports rclpy

    source = Path(args.source) if args.source else (data_dir() or Path('.')) / 'camvid' / 'val'
    if not source.is_dir():
        raise FileNotFoundError(f'frame folder {source} not found (give --source DIR)')
    frame_size = parse_frame_size(args.frame_size) if args.frame_size else None
    parse_size(args.size or None)  # a bad --size fails here, not inside the node
    r = run_bench(args.model, source, args.rate, args.duration, args.size or '', args.warmup,
                  args.max_queue_wait_ms, frames=args.frames, frame_size=frame_size,
                  progress=True, node_params=node_params(args), cameras=args.cameras)
    to_stdout = args.json == '-'
    with contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
        print_report(r)
    if to_stdout:
        print(json.dumps(r, indent=2))
    elif args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(r, indent=2) + '\n')
        print(f'report: {args.json}')
    return 0 if r['accounting']['adds_up'] else 1


def add_node_realtime_args(p: argparse.ArgumentParser) -> None:
    """``vsda bench node``'s strategy and real-time options (node parameters of the same
    names; see README, the node's parameters)."""
    p.add_argument('--strategy', default='per_frame', choices=['per_frame', 'fusion', 'keyframe'],
                   help='node: temporal strategy (default: %(default)s)')
    p.add_argument('--keyframe-interval', type=int_range(1, 100), default=5,
                   help='node: keyframe interval (the start value with --target-rate; '
                        'default: %(default)s)')
    p.add_argument('--target-rate', type=non_negative_float, default=0.0,
                   help='node: target_rate, the rate (Hz) the keyframe interval is chosen to '
                        'keep up with (0 = off; default: %(default)s)')
    p.add_argument('--max-keyframe-interval', type=int_range(1, 100), default=10,
                   help='node: largest interval --target-rate may choose (default: %(default)s)')
    p.add_argument('--async-keyframes', action='store_true',
                   help='node: key network in a background thread (async_keyframes)')
    p.add_argument('--flow-downscale', type=int_range(1, 8), default=1,
                   help='node: keyframe flow at the feature resolution / N (default: %(default)s)')
    p.add_argument('--num-threads', type=int_range(0, 256), default=0,
                   help="node: torch intra-op threads (0 = torch's default; 1 with "
                        '--async-keyframes on 2 cores)')
    p.add_argument('--cameras', type=int_range(1, 64), default=1,
                   help='node: that many cameras (/cam0/image ...), each at --rate; per-camera '
                        'rates in the report (default: %(default)s)')
    p.add_argument('--temporal-weights', default='',
                   help="node: temporal_weights ('' = the model's own, none = none)")


def node_params(args: argparse.Namespace) -> dict:
    """The node parameters ``vsda bench node`` sets from its options."""
    return {'backend': args.backend or 'torch', 'precision': args.precision or 'fp32',
            'strategy': args.strategy, 'keyframe_interval': int(args.keyframe_interval),
            'target_rate': float(args.target_rate),
            'max_keyframe_interval': int(args.max_keyframe_interval),
            'async_keyframes': bool(args.async_keyframes),
            'flow_downscale': int(args.flow_downscale), 'num_threads': int(args.num_threads),
            'temporal_weights': args.temporal_weights}


def parse_frame_size(text: str) -> tuple[int, int]:
    """``'3840x2160'`` → (3840, 2160) for the published frames; ``ValueError`` otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise ValueError(f'--frame-size must look like WIDTHxHEIGHT, got {text!r}') from None
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise ValueError(f'--frame-size {text!r}: each side must be 16..16384')
    return w, h
