"""``vsda prepare``: build the compiled graphs and the accuracy evidence that ``backend: auto``
decides on, ahead of the first start (on a vehicle: at install time, not at the first drive).

With ``backend: auto`` (the default of the node and the commands) the first start for a model
and input size exports the network, checks every installed candidate backend against torch on
real frames and compiles the one chosen: 30 s to 5 min on a 2-core CPU, once. This command does
exactly that, for every size named, and prints what ``auto`` will choose and why; the node and
the commands then load the cache entry (``VSDA_CACHE_DIR/compiled``) in seconds.
"""

from __future__ import annotations

import argparse
import time

from vsda_ros.apps._common import EPILOG


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsda prepare``."""
    p = subparsers.add_parser(
        'prepare',
        help='build the compiled graphs and accuracy evidence backend auto uses',
        description='Export MODEL at each input size into the compiled-model cache '
        '(VSDA_CACHE_DIR/compiled), check the installed backends against torch on '
        'real frames (VSDA_DATA_DIR/camvid/val when present), and print what '
        'backend auto will run and why. Later starts of the node and of vsda '
        'segment / eval / bench with the default backend load it in seconds.',
        epilog=EPILOG,
    )
    p.add_argument(
        '--model',
        default='espnet-camvid',
        help='zoo name (vsda models), vsda checkpoint file or export folder (default: %(default)s)',
    )
    p.add_argument(
        '--size',
        action='append',
        default=None,
        metavar='WxH',
        help='network input size, e.g. 1024x512; repeat for several; default: the '
        "model's native size (the node's input_size parameter)",
    )
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto (default: cpu)')
    p.add_argument(
        '--precision',
        default='auto',
        choices=['auto', 'fp32', 'bf16', 'int8'],
        help='restrict the candidates to one precision (default: %(default)s)',
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build each size's cache entry and print the choice; returns 0 (2 on a bad size)."""
    from vsda_ros.inference import parse_size
    from vsda_ros.pipeline import PipelineConfig, build_pipeline

    sizes = [parse_size(s) for s in args.size] if args.size else [None]
    for size in sizes:
        t0 = time.perf_counter()
        pipe = build_pipeline(
            PipelineConfig(
                model=args.model,
                input_size=size,
                device=args.device,
                backend='auto',
                precision=args.precision,
                warmup=1,
            )
        )  # warm-up compiles and caches the graph
        seg = pipe.segmenter
        w, h = seg.input_size
        print(
            f'{args.model} {w}x{h}: backend {seg.backend}/{seg.precision} '
            f'({time.perf_counter() - t0:.1f} s)\n  {seg.backend_reason}',
            flush=True,
        )
    return 0
