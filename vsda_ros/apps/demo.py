"""``vsda demo``: segmentation_node on a real clip published over ROS 2 (the ROS tool
:mod:`vsda_ros.ros.tools.demo` does the work; it is imported only when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vsda_ros.apps._common import EPILOG


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsda demo``."""
    p = subparsers.add_parser(
        'demo',
        help='run segmentation_node on a real clip published over ROS 2',
        description='Start segmentation_node, publish a frame folder (default: the real CamVid '
        'val clip) over ROS 2 on loopback, and record what the node publishes: '
        'colour masks, overlays, label masks, diagnostics (and mIoU with labels).',
        epilog=EPILOG,
    )
    p.add_argument(
        '--model',
        default=None,
        help='run only this model (default: the three-run demo: '
        'espnetv2-cityscapes vs the adapted espnetv2-camvid-tsl side by side, '
        'then espnet-camvid with keyframe propagation and its trained modules)',
    )
    p.add_argument(
        '--strategy',
        default='per_frame',
        choices=['per_frame', 'fusion', 'keyframe'],
        help='with --model: the temporal strategy (default: %(default)s)',
    )
    p.add_argument('--size', default='480x360', help="network input WIDTHxHEIGHT ('' = native)")
    p.add_argument(
        '--map',
        default='cityscapes-camvid',
        help='with --model: label map for scoring (default: %(default)s; "" for none)',
    )
    p.add_argument('--frames', default=None, help='frame folder (default: CamVid val)')
    p.add_argument('--labels', default=None, help='label folder (default: CamVid valannot)')
    p.add_argument('--out', default='demo_out', help='output folder (default: demo_out)')
    p.add_argument(
        '--backend',
        default='torch',
        choices=['torch', 'auto', 'openvino', 'onnxruntime'],
        help="the node's backend (default: torch, the reference, so the figures are "
        "the published weights' and a first run exports nothing; auto = the "
        "node's own default)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``vsda demo``: the three-run demo, or one model with ``--model``; returns 0."""
    from vsda_ros.paths import data_dir
    from vsda_ros.ros.tools.demo import run_demo, run_demo_suite  # imports rclpy when it runs

    ddir = data_dir()
    frames = Path(args.frames) if args.frames else (ddir or Path('.')) / 'camvid' / 'val'
    labels = (
        Path(args.labels)
        if args.labels
        else (None if args.frames else (ddir or Path('.')) / 'camvid' / 'valannot')
    )
    labels = labels if labels and labels.is_dir() else None
    out = Path(args.out).resolve()
    if args.model is None:  # the default demo: source vs adapted, and trained keyframes
        suite = run_demo_suite(frames, labels, out, args.size, args.backend)
        for s in suite['runs'].values():
            print_run(s)
        print(
            f'source vs adapted, side by side: {suite["source_vs_adapted"]}\n'
            f"each run's colour masks, overlays, label masks, node log and summary: "
            f'{out}/<run>/\nsummary: {out / "summary.json"}'
        )
        return 0
    s = run_demo(args.model, frames, out, labels, args.map, args.size, args.strategy, args.backend)
    print_run(s)
    print(
        f'colour masks: {out / "color"}\noverlays: {out / "overlay"}\n'
        f'overlay strip: {out / "overlay_strip.png"}\nlabel masks: {out / "labels"}\n'
        f'summary + diagnostics: {out / "summary.json"}\nnode log: {out / "node.log"}'
    )
    return 0


def print_run(s: dict) -> None:
    """One line per demo run: model, strategy, frames, mIoU, inference time, output folder."""
    d = s['diagnostics'] or {}
    keys = ''
    if s.get('strategy') == 'keyframe' and d.get('processed') not in (None, '0'):
        keys = f', keyframes {d.get("keyframes")} of {d.get("processed")}'
    backend = d.get('backend') or s.get('backend', 'torch')
    print(
        f'segmentation_node ({s["model"]}, {s.get("strategy", "per_frame")}, {backend}): '
        f'{s["frames"]} '
        'frames over ROS 2'
        + (f'; mIoU {s["miou"]:.2f} %' if 'miou' in s else '')
        + (f'; inference p50 {d.get("inference_p50_ms")} ms' if d else '')
        + keys
        + f' -> {s["out"]}'
    )
