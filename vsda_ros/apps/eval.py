"""``vsda eval``: strategies × weathers on a clip → ``report.json``, ``report.md``, PNG plots.

This module is the command line (options, the summary lines); the runner and the
:class:`ClipRunner` protocol are :mod:`vsda_ros.evaluation.runner`, its config
:mod:`vsda_ros.evaluation.config` (all re-exported here). The
report's keys are documented in :mod:`vsda_ros.evaluation.report`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vsda_ros.apps._common import (
    EPILOG,
    add_allow_unknown_labels,
    add_backend_args,
    check_output_dir,
    label_map_choices,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from vsda_ros.evaluation.config import DEFAULT_PDA_RANGE, SWEEP_INTENSITIES, EvalConfig
from vsda_ros.evaluation.report import run_label
from vsda_ros.evaluation.runner import ClipRunner, run_eval

__all__ = [
    'DEFAULT_PDA_RANGE',
    'SWEEP_INTENSITIES',
    'ClipRunner',
    'EvalConfig',
    'add_parser',
    'run',
    'run_eval',
]


# ------------------------------------------------------------------------------ command line
EVAL_DESCRIPTION = (
    'Run each --strategy over a frame source in time order (an image folder, '
    'a video, or a rosbag2 in mcap or sqlite3), on the clean frames and under '
    'each --weather and --transient, and report mIoU and per-class IoU (with '
    'labels; transient runs also on the hit and not-hit frames), agreement '
    'with the same model on the clean frames (always), temporal consistency, '
    'latency p50/p95/p99, throughput, keyframe ratio and frame accounting; with '
    'keyframe and --pda (or --interval A..B) also the propagation-distance curve '
    'and the key/non-key cost. Cost is compared by the mean time per frame '
    '(mean_ms; key frames included), not by p50. --live sends the frames '
    'through a segmentation_node process over ROS 2 (loopback) instead. Writes '
    'OUT/report.json, OUT/report.md and PNG plots.'
)
EVAL_EPILOG = (
    'Examples:\n'
    '  vsda eval --source drive.mcap --topic /cam/image_raw --weather fog:0.6 '
    '--weather night:0.9\n'
    '  vsda eval --source frames/ --labels labels/ --weather-sweep '
    '--strategy per_frame,keyframe\n'
    '  vsda eval --source frames/ --labels labels/ --transient all:0.6:0.3 '
    '--transient wiper:0.8:0.2\n\n' + EPILOG
)


def _comma_list(text: str) -> list[str]:
    """``'a,b'`` → ``['a', 'b']`` (``--strategy``)."""
    return text.split(',')


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsda eval``: every option's dest is the :class:`EvalConfig` field it sets."""
    p = subparsers.add_parser(
        'eval',
        help='evaluate models and strategies on a clip or bag, clean and in weather',
        description=EVAL_DESCRIPTION,
        epilog=EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument('--model', default='espnet-camvid', help='(default: %(default)s)')
    p.add_argument(
        '--source',
        required=True,
        help='frame folder (time order by file name), video file, or rosbag2',
    )
    p.add_argument(
        '--topic', default=None, help='image topic of a bag source (default: its only image topic)'
    )
    p.add_argument(
        '--labels',
        default=None,
        help='label folder (CamVid: same file names; Cityscapes: *_gtFine_labelIds'
        '.png), or a label topic of a bag source',
    )
    p.add_argument(
        '--map',
        dest='label_map',
        default=None,
        choices=label_map_choices(),
        help='map model classes to the label classes',
    )
    add_allow_unknown_labels(p)
    p.add_argument(
        '--strategy',
        dest='strategies',
        metavar='STRATEGY',
        type=_comma_list,
        default='per_frame,fusion,keyframe',
        help='comma-separated strategies (default: %(default)s)',
    )
    _add_weather_args(p)
    _add_strategy_args(p)
    p.add_argument('--size', default=None, help='network input WIDTHxHEIGHT')
    p.add_argument('--device', default='cpu')
    add_backend_args(p)
    _add_source_args(p)
    p.add_argument('--out', type=Path, default='eval_out', help='output folder (default: eval_out)')
    p.add_argument('--quiet', dest='progress', action='store_false', help='no progress bars')
    p.set_defaults(func=run)
    return p


def _add_weather_args(p: argparse.ArgumentParser) -> None:
    """``--weather``, ``--transient``, ``--weather-sweep``, ``--iid-weather``, ``--seed``."""
    p.add_argument(
        '--weather',
        dest='weathers',
        action='append',
        default=[],
        metavar='KIND:INTENSITY',
        help='also evaluate under this synthetic weather (fog, rain, snow, night, '
        'glare, noise; intensity 0..1, e.g. fog:0.6); repeatable',
    )
    p.add_argument(
        '--transient',
        dest='transients',
        action='append',
        default=[],
        metavar='KIND:INTENSITY:PROB',
        help='also evaluate with transient degradations: each frame is hit with '
        'probability PROB (seeded by --seed), its neighbours stay clean; KIND '
        'is a weather kind or wiper, exposure, jpeg; all:INTENSITY:PROB = the '
        'six weather kinds (e.g. rain:0.6:0.3); repeatable. Rows report the '
        'frames hit and the mIoU on hit / not-hit frames',
    )
    p.add_argument(
        '--weather-sweep',
        action='store_true',
        help='every weather kind at intensities 0.3, 0.6 and 0.9',
    )
    p.add_argument(
        '--iid-weather',
        dest='weather_temporal',
        action='store_false',
        help='draw the weather independently per frame instead of letting it '
        'evolve smoothly over the clip',
    )
    p.add_argument('--seed', type=non_negative_int, default=0, help='weather seed (default 0)')


def _add_strategy_args(p: argparse.ArgumentParser) -> None:
    """The keyframe / fusion options: interval, PDA, temporal weights, flow, correction."""
    p.add_argument(
        '--interval',
        default='5',
        metavar='N|A..B',
        help='keyframe interval N (with --pda the curve covers distances 1..9); or '
        'a range A..B: the PDA curve at distances A..B (and 0, the keyframe '
        'itself) and the keyframe strategy at interval B, so every frame it '
        'propagates is on the curve (default 5)',
    )
    p.add_argument(
        '--temporal-weights',
        default='',
        help='checkpoint(s) with trained temporal modules, comma-separated',
    )
    p.add_argument(
        '--pda',
        action='store_true',
        help='also compute the PDA curve (distances 1..9; --interval A..B for others)',
    )
    p.add_argument(
        '--flow-preset',
        default='balanced',
        choices=['ultrafast', 'balanced', 'fast', 'medium'],
        help='OpenCV DIS preset of the keyframe strategy (balanced = ultrafast down to '
        'pyramid scale 1; default: %(default)s)',
    )
    p.add_argument(
        '--keyframe-correction',
        action=argparse.BooleanOptionalAction,
        default=False,
        help='keyframe: correct warped features with DMNet/CFNet (default: plain flow '
        'warping, as the node; --pda always reports both curves)',
    )
    p.add_argument(
        '--distortion-threshold',
        type=non_negative_float,
        default=0.0,
        metavar='T',
        help='with keyframe: also run adaptive keyframes (a new keyframe when '
        "DMNet's mean distortion exceeds T; needs trained DMNet) and compare "
        'them with fixed intervals (report key "adaptive")',
    )


def _add_source_args(p: argparse.ArgumentParser) -> None:
    """Frame rate, frame limit, damaged input, and the live (ROS 2) mode."""
    p.add_argument(
        '--fps',
        type=positive_float,
        default=15.0,
        help='frame rate of a folder source (videos and bags carry their own)',
    )
    p.add_argument('--max-frames', type=positive_int, default=None)
    p.add_argument(
        '--allow-truncated',
        action='store_true',
        help='evaluate what can be read of a truncated video (fewer frames than its '
        'container announces) or a damaged bag, with a warning; the report '
        'records frames_expected / frames_read (default: such input is an '
        'error, exit 2)',
    )
    p.add_argument(
        '--live',
        action='store_true',
        help='evaluate through a segmentation_node process over ROS 2: frames are '
        'published at --rate and the masks it publishes are scored',
    )
    p.add_argument(
        '--attach',
        default=None,
        metavar='NAMESPACE',
        help='with --live: use the segmentation_node already running under this '
        "namespace ('/' for none; same ROS_DOMAIN_ID, loopback) instead of "
        'starting one; its own strategy is used, so give one --strategy',
    )
    p.add_argument(
        '--rate',
        type=positive_float,
        default=None,
        help='--live publishing rate in Hz (default: the source frame rate)',
    )


def run(args: argparse.Namespace) -> int:
    """``vsda eval``: evaluate, print one line per run and where the report is; returns 0."""
    from vsda_ros.apps._common import config_from_args

    cfg = config_from_args(EvalConfig, args, live=args.live or bool(args.attach))
    check_output_dir(cfg.out, '--out')  # before the model and the clip are loaded
    runner = None
    if cfg.live:  # the ROS layer is injected here: the evaluation core never imports it
        from vsda_ros.ros.tools.live_eval import LiveRunner  # imports rclpy when it runs

        runner = LiveRunner(cfg, cfg.intervals()[0], attach=cfg.attach)
    report = run_eval(cfg, runner)
    for row in report['runs']:
        print(_run_line(row))
    if report['unknown_label_pixels']:
        print(
            f'{report["unknown_label_pixels"]} label pixels with unknown ids scored as '
            'ignored (--allow-unknown-labels)'
        )
    if 'pda' in report:
        print(
            'PDA mIoU by distance: '
            + '  '.join(
                f'{name} ' + ' '.join(f'{v:.1f}' for v in curve.values())
                for name, curve in report['pda'].items()
            )
        )
        c = report['cost']
        print(
            f'cost (mean): key {c["key_ms_mean"]:.1f} ms / {c["key_gflops"]:.2f} GFLOPs, '
            f'non-key {c["nonkey_ms_mean"]:.1f} ms / {c["nonkey_gflops"]:.2f} GFLOPs '
            f'(time ratio {c["time_ratio"]:.3f})'
        )
    print(f'report: {cfg.out / "report.json"}, {cfg.out / "report.md"}; plots in {cfg.out}')
    return 0


def _run_line(run: dict) -> str:
    """The summary line of one report row."""
    lat = run['latency_ms']
    miou = f'mIoU {run["miou"]:6.2f}  ' if run.get('miou') is not None else ''
    ratio = (
        f' ({run["time_vs_per_frame"]:.2f}× per_frame)'
        if 'time_vs_per_frame' in run and run['strategy'] != 'per_frame'
        else ''
    )
    dropped = f'  dropped {run["dropped"]}' if run['dropped'] else ''
    return (
        f'{run_label(run):>10s} {run["strategy"]:>10s}: {miou}agreement '
        f'{run["agreement"]:6.2f}  TC {run["tc"]:6.2f}  mean {run["mean_ms"]:6.1f} ms/frame'
        f'{ratio}  latency p50 {lat["p50"]:6.1f} p95 {lat["p95"]:6.1f} ms  keyframes '
        f'{run["keyframe_ratio"]:.2f}{dropped}{_hit_summary(run)}'
    )


def _hit_summary(run: dict) -> str:
    """For a transient run: '  hit 9/30 (mIoU hit 41.20, not hit 55.03)'; else ''."""
    if run.get('weather_mode') != 'transient':
        return ''
    scores = ''
    if 'miou_hit' in run:

        def f(v):
            return 'n/a' if v is None else f'{v:.2f}'

        scores = f' (mIoU hit {f(run["miou_hit"])}, not hit {f(run["miou_unhit"])})'
    return f'  hit {run["hit_frames"]}/{run["frames"]}{scores}'
