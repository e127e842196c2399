"""``vsda bench``: ``node`` — segmentation_node over real DDS (the ROS tool
:mod:`vsda_ros.ros.tools.bench_node`, imported only when it runs); ``model`` — the network alone
on each backend × precision, in one process (the engine:
:mod:`vsda_ros.evaluation.model_bench`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vsda_ros.apps._common import (
    EPILOG,
    add_allow_unknown_labels,
    int_range,
    label_map_choices,
    non_negative_float,
    positive_float,
    positive_int,
)
from vsda_ros.evaluation.model_bench import (
    BenchModelConfig,
    format_table,
    run_bench_model,
    write_json,
)

# ------------------------------------------------------------------------------ command line
BENCH_DESCRIPTION = (
    'node: start segmentation_node, publish real frames at --rate for --duration s '
    '(or exactly --frames N: a soak test) and report end-to-end and inference '
    'latency p50/p95, node overhead, drops, RSS (start, end, peak), open file '
    "descriptors, threads, and whether the node's totals add up (received = "
    'processed + dropped + bad_frames; exit 1 if not). Runs with '
    'ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a domain of its own. '
    'model: the network alone in this process on each --backend x '
    '--precision, in interleaved rounds: latency p50/p95, GFLOP/s, speed-up '
    'over torch eager, fraction of the fp32 peak (a matmul measured in the '
    'same run); with --source (and --labels) argmax agreement (and mIoU). '
    'JSON: {"model", "size", "peak_gflops", "results": [{"backend", '
    '"precision", "ms_p50", "ms_p95", "gflops_per_s", "speedup_vs_torch", '
    '"miou", "argmax_agreement"}]}. int8 needs --model DIR from vsda export '
    '--precision int8 --calibrate.'
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsda bench node|model``."""
    p = subparsers.add_parser(
        'bench',
        help='benchmark segmentation_node over real DDS, or the network per backend',
        description=BENCH_DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument('target', choices=['node', 'model'], help='what to benchmark')
    p.add_argument(
        '--backend',
        default=None,
        help="node: the node's backend (default auto, the node's default); model: comma-separated "
        '(default torch,openvino,onnxruntime)',
    )
    p.add_argument(
        '--precision',
        default=None,
        help="node: the node's precision (default auto); model: comma-separated "
        '(default fp32,bf16,int8; what cannot run here is listed as skipped)',
    )
    _add_model_args(p)
    p.add_argument('--model', default='espnet-camvid', help='(default: %(default)s)')
    _add_publish_args(p)
    add_node_realtime_args(p)
    p.add_argument(
        '--json',
        nargs='?',
        const='-',
        default=None,
        metavar='PATH',
        help='write the JSON report to PATH; --json alone prints it on stdout (the '
        'summary then goes to stderr)',
    )
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
        BenchModelConfig,
        args,
        size=parse_size(args.size or None),
        backends=tuple((args.backend or 'torch,openvino,onnxruntime').split(',')),
        precisions=tuple((args.precision or 'fp32,bf16,int8').split(',')),
        warmup=max(1, int(args.warmup)),
    )
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
    from vsda_ros.ros.tools.bench_node import run_bench  # imports rclpy
    from vsda_ros.ros.tools.bench_report import print_report

    source = Path(args.source) if args.source else (data_dir() or Path('.')) / 'camvid' / 'val'
    if not source.is_dir():
        raise FileNotFoundError(f'frame folder {source} not found (give --source DIR)')
    frame_size = parse_frame_size(args.frame_size) if args.frame_size else None
    parse_size(args.size or None)  # a bad --size fails here, not inside the node
    r = run_bench(
        args.model,
        source,
        args.rate,
        args.duration,
        args.size or '',
        args.warmup,
        args.max_queue_wait_ms,
        frames=args.frames,
        frame_size=frame_size,
        progress=True,
        node_params=node_params(args),
        cameras=args.cameras,
    )
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


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """``vsda bench model``'s rounds and accuracy options (labels, class map, frames)."""
    p.add_argument(
        '--rounds',
        type=positive_int,
        default=20,
        help='model: interleaved rounds (default: %(default)s)',
    )
    p.add_argument('--labels', default=None, help='model: labels of --source (adds mIoU)')
    p.add_argument(
        '--map',
        dest='label_map',
        default=None,
        choices=label_map_choices(),
        help='model: map the model classes to the labels',
    )
    add_allow_unknown_labels(p)
    p.add_argument(
        '--max-frames',
        type=positive_int,
        default=None,
        help='model: at most N frames of --source for the accuracy columns',
    )


def _add_publish_args(p: argparse.ArgumentParser) -> None:
    """What ``vsda bench node`` publishes (frames, size, rate, duration) and the warm-up."""
    p.add_argument(
        '--source',
        default=None,
        help='folder of frames to publish (default: VSDA_DATA_DIR/camvid/val)',
    )
    p.add_argument(
        '--frames',
        type=positive_int,
        default=None,
        help='publish exactly N frames after the warm-up (overrides --duration), '
        'e.g. --frames 10000 --rate 30 for a soak test',
    )
    p.add_argument(
        '--frame-size',
        default=None,
        help='resize the published frames to WIDTHxHEIGHT (e.g. 3840x2160 for a '
        '4K camera; default: as read)',
    )
    p.add_argument('--size', default='', help="network input WIDTHxHEIGHT ('' = native)")
    p.add_argument(
        '--rate', type=positive_float, default=30.0, help='publish rate in Hz (default: 30)'
    )
    p.add_argument(
        '--duration', type=positive_float, default=60.0, help='measured seconds (default: 60)'
    )
    p.add_argument(
        '--warmup',
        type=non_negative_float,
        default=5.0,
        help='node: unmeasured seconds first; model: warm-up calls per configuration (default: 5)',
    )
    p.add_argument(
        '--max-queue-wait-ms',
        type=non_negative_float,
        default=0.0,
        help="the node's latency mode (max_queue_wait_ms parameter; 0 = off)",
    )


def add_node_realtime_args(p: argparse.ArgumentParser) -> None:
    """``vsda bench node``'s strategy and real-time options (node parameters of the same
    names; see README, the node's parameters)."""
    p.add_argument(
        '--strategy',
        default='per_frame',
        choices=['per_frame', 'fusion', 'keyframe'],
        help='node: temporal strategy (default: %(default)s)',
    )
    p.add_argument(
        '--keyframe-interval',
        type=int_range(1, 100),
        default=5,
        help='node: keyframe interval (the start value with --target-rate; default: %(default)s)',
    )
    p.add_argument(
        '--target-rate',
        type=non_negative_float,
        default=0.0,
        help='node: target_rate, the rate (Hz) the keyframe interval is chosen to '
        'keep up with (0 = off; default: %(default)s)',
    )
    p.add_argument(
        '--max-keyframe-interval',
        type=int_range(1, 100),
        default=10,
        help='node: largest interval --target-rate may choose (default: %(default)s)',
    )
    p.add_argument(
        '--async-keyframes',
        action='store_true',
        help='node: key network in a background thread (async_keyframes)',
    )
    p.add_argument(
        '--flow-downscale',
        type=int_range(1, 8),
        default=1,
        help='node: keyframe flow at the feature resolution / N (default: %(default)s)',
    )
    _add_node_resource_args(p)


def _add_node_resource_args(p: argparse.ArgumentParser) -> None:
    """``vsda bench node``'s threads, cameras and temporal weights (node parameters)."""
    p.add_argument(
        '--num-threads',
        type=int_range(0, 256),
        default=0,
        help="node: torch intra-op threads (0 = torch's default; 1 with "
        '--async-keyframes on 2 cores)',
    )
    p.add_argument(
        '--cameras',
        type=int_range(1, 64),
        default=1,
        help='node: that many cameras (/cam0/image ...), each at --rate; per-camera '
        'rates in the report (default: %(default)s)',
    )
    p.add_argument(
        '--temporal-weights',
        default='',
        help="node: temporal_weights ('' = the model's own, none = none)",
    )


def node_params(args: argparse.Namespace) -> dict:
    """The node parameters ``vsda bench node`` sets from its options."""
    return {
        'backend': args.backend or 'auto',
        'precision': args.precision or 'auto',
        'strategy': args.strategy,
        'keyframe_interval': int(args.keyframe_interval),
        'target_rate': float(args.target_rate),
        'max_keyframe_interval': int(args.max_keyframe_interval),
        'async_keyframes': bool(args.async_keyframes),
        'flow_downscale': int(args.flow_downscale),
        'num_threads': int(args.num_threads),
        'temporal_weights': args.temporal_weights,
    }


def parse_frame_size(text: str) -> tuple[int, int]:
    """``'3840x2160'`` → (3840, 2160) for the published frames; ``ValueError`` otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise ValueError(f'--frame-size must look like WIDTHxHEIGHT, got {text!r}') from None
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise ValueError(f'--frame-size {text!r}: each side must be 16..16384')
    return w, h
