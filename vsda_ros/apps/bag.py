"""``vsda bag make`` and ``vsda bag info``: frame folders / videos → rosbag2; what a bag holds.

No ROS needed: bags are written and read with ``rosbags`` (see :mod:`vsda_ros.data.bags` and
:mod:`vsda_ros.data.bag_writer`). ``python -m vsda_ros.apps.bag make|info …`` runs the command
on its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from vsda_ros.apps._common import (
    check_output_dir,
    check_output_file,
    finite_float,
    int_range,
    positive_float,
    positive_int,
    standalone,
)
from vsda_ros.frames import Frame

MAKE_EPILOG = """\
examples:
  vsda bag make $VSDA_DATA_DIR/camvid/val --labels $VSDA_DATA_DIR/camvid/valannot --out camvid_val
  vsda bag make drive.mp4 --out drive_bag --compression jpeg --storage sqlite3
  vsda bag info camvid_val

Images go on --topic as sensor_msgs/Image rgb8 (bit-exact), or with --compression jpeg|png as
sensor_msgs/CompressedImage on TOPIC/compressed. Labels go on --label-topic as mono8 Images
with the same header as their frame. Header stamps (and log times) are --start-time + the frame
time: index / --fps for a folder, the video's own frame times for a video.
"""


def _size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob('*') if p.is_file())


def _shifted(
    pairs: Iterator[tuple[Frame, np.ndarray | None]], offset: float
) -> Iterator[tuple[Frame, np.ndarray | None]]:
    for frame, label in pairs:
        if offset:
            frame.stamp += offset
        yield frame, label


def cmd_make(args: argparse.Namespace) -> int:
    """``vsda bag make``: returns the exit status (raises on bad input; the entry point
    reports it)."""
    from tqdm import tqdm

    from vsda_ros.data.bag_writer import write_bag
    from vsda_ros.data.labelled import open_labelled

    source = Path(args.source)
    if Path(args.out).exists() and not args.overwrite:  # before any work or progress bar
        print(
            f'vsda bag make: error: {args.out} exists; pass --overwrite to replace it',
            file=sys.stderr,
        )
        return 2
    check_output_dir(args.out, '--out')  # not under a file, on a file system we can write
    if args.json:
        check_output_file(args.json, '--json')
    pairs = open_labelled(source, labels=args.labels, fps=args.fps, max_frames=args.max_frames)
    total = _frame_count(source, args.fps, args.max_frames)
    bar = tqdm(
        _shifted(pairs, args.start_time),
        total=total,
        unit='frame',
        desc=f'bag make → {args.out}',
        disable=not args.progress,
    )
    t0 = time.perf_counter()
    try:
        summary = write_bag(
            Path(args.out),
            bar,
            topic=args.topic,
            label_topic=args.label_topic,
            storage=args.storage,
            compression=args.compression,
            frame_id=args.frame_id,
            overwrite=args.overwrite,
            jpeg_quality=args.jpeg_quality,
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    if summary['frames'] == 0:
        shutil.rmtree(args.out, ignore_errors=True)
        raise ValueError(f'{source} gave no frames; nothing written')
    summary['seconds'] = seconds
    summary['bytes'] = _size_on_disk(Path(args.out))
    _print_make_summary(summary, seconds)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + '\n')
    return 0


def _frame_count(source: Path, fps: float, max_frames: int | None) -> int | None:
    """The frames ``vsda bag make`` will write from a folder or video (for the progress bar;
    ``None`` for a bag)."""
    from vsda_ros.data.bags import is_bag
    from vsda_ros.data.sources import FrameSource

    if is_bag(source):
        return None
    total = len(FrameSource(source, fps=fps))
    return total if max_frames is None else min(total, max_frames)


def _print_make_summary(summary: dict, seconds: float) -> None:
    """The human summary of ``vsda bag make``: the bag, its size, speed and topics."""
    print(
        f'wrote {summary["path"]} ({summary["storage"]}, '
        f'{summary["bytes"] / 1e6:.1f} MB) in {seconds:.1f} s '
        f'({summary["frames"] / max(seconds, 1e-9):.0f} frames/s)'
    )
    for topic, info in summary['topics'].items():
        print(f'  {topic:<32} {info["type"]:<32} {info["count"]:>6} msgs')
    print(
        f'  frames {summary["frames"]}, labels {summary["labels"]}, '
        f'duration {summary["duration"]:.3f} s'
    )


def cmd_info(args: argparse.Namespace) -> int:
    """``vsda bag info``: print (or with --json, dump) topics, types, counts, duration, rate."""
    from vsda_ros.data.bags import bag_info

    info = bag_info(args.bag)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f'bag:       {info["path"]}')
    print(f'storage:   {info["storage"]}')
    print(f'messages:  {info["messages"]}')
    print(f'duration:  {info["duration"]:.3f} s')
    if info['messages']:
        print(f'start:     {info["start"]:.9f} s')
        print(f'end:       {info["end"]:.9f} s')
    print('topics:')
    width = max((len(t) for t in info['topics']), default=0)
    for topic, t in info['topics'].items():
        rate = f'{t["rate"]:.2f} Hz' if t['rate'] is not None else '-'
        print(f'  {topic:<{width}}  {t["type"]:<32} {t["count"]:>7} msgs  {rate}')
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bag`` (with ``make`` and ``info``) on an argparse ``subparsers`` object; each
    subcommand sets ``func`` to :func:`run` (``args.func(args)`` → exit status)."""
    p = subparsers.add_parser(
        'bag',
        help='make rosbag2 bags from frame folders / videos; show what a bag holds',
        description='rosbag2 tools (mcap and sqlite3, no ROS installation needed).',
    )
    bag_sub = p.add_subparsers(dest='bag_command', required=True, metavar='ACTION')

    m = bag_sub.add_parser(
        'make',
        help='convert a frame folder or a video (+ labels) into a bag',
        description='Convert a folder of frames or a video file (and optionally a folder of\n'
        'label PNGs, CamVid or Cityscapes layout) into a rosbag2 bag that vsda\n'
        'replay, vsda eval and ros2 bag play can use.',
        epilog=MAKE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_make_inputs(m)
    _add_make_format(m)
    m.add_argument('--max-frames', type=positive_int, default=None, help='stop after N frames')
    m.add_argument('--overwrite', action='store_true', help='replace an existing bag at --out')
    m.add_argument('--json', default=None, help='also write the summary as JSON here')
    m.add_argument('--quiet', dest='progress', action='store_false', help='no progress bar')
    m.set_defaults(func=run)

    i = bag_sub.add_parser(
        'info',
        help='topics, message types, counts, duration and rate of a bag',
        description='Show what a rosbag2 bag (folder, .mcap or .db3) holds: storage, duration, '
        'and per topic the message type, count and mean rate.',
    )
    i.add_argument('bag', help='bag folder, .mcap or .db3 file')
    i.add_argument('--json', action='store_true', help='print JSON instead of a table')
    i.set_defaults(func=run)
    return p


def _add_make_inputs(p: argparse.ArgumentParser) -> None:
    """``vsda bag make``'s input (frames, labels) and the bag and topics it writes."""
    p.add_argument(
        'source',
        help='folder of images (time order by the numbers in the file names) or a video file',
    )
    p.add_argument('--out', required=True, help='the bag folder to create')
    p.add_argument(
        '--labels',
        default=None,
        help='label folder: CamVid layout (same file names, class ids) or Cityscapes '
        '(*_gtFine_labelIds.png, converted to the 19 train ids, 255 = ignore)',
    )
    p.add_argument(
        '--topic',
        default='/camera/image_raw',
        help='image topic (default: %(default)s; /compressed is appended with '
        '--compression jpeg|png)',
    )
    p.add_argument(
        '--label-topic',
        default='/camera/labels',
        help='label topic, mono8 class ids (default: %(default)s)',
    )


def _add_make_format(p: argparse.ArgumentParser) -> None:
    """``vsda bag make``'s storage, image encoding, stamps and frame id."""
    p.add_argument(
        '--storage',
        default='mcap',
        choices=['mcap', 'sqlite3'],
        help='rosbag2 storage plugin (default: %(default)s)',
    )
    p.add_argument(
        '--compression',
        default='none',
        choices=['none', 'jpeg', 'png'],
        help='none = sensor_msgs/Image rgb8 (lossless, bit-exact); jpeg/png = '
        'sensor_msgs/CompressedImage (default: %(default)s)',
    )
    p.add_argument(
        '--jpeg-quality', type=int_range(1, 100), default=95, help='1..100 (default: %(default)s)'
    )
    p.add_argument(
        '--fps',
        type=positive_float,
        default=15.0,
        help='frame rate of a folder: frame i is stamped START + i / FPS '
        '(default: %(default)s; a video uses its own rate)',
    )
    p.add_argument(
        '--start-time',
        type=finite_float,
        default=0.0,
        help='stamp of the first frame in seconds since the epoch (default: 0)',
    )
    p.add_argument(
        '--frame-id',
        default='camera',
        help='header.frame_id of every message (default: %(default)s)',
    )


def run(args: argparse.Namespace) -> int:
    """``vsda bag make|info``: the exit status of the action."""
    return cmd_make(args) if args.bag_command == 'make' else cmd_info(args)


def main(argv: list[str] | None = None) -> int:
    """``python -m vsda_ros.apps.bag make|info …``: exactly ``vsda bag …``."""
    return standalone(sys.modules[__name__], 'bag', argv)


if __name__ == '__main__':
    sys.exit(main())
