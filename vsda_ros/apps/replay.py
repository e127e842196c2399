"""``vsda replay``: publish a rosbag2 bag's image (and label) topics over ROS 2 at the recorded
rate. The ROS tool :mod:`vsda_ros.ros.tools.replay` does the work; it is imported only when the
command runs, so ``vsda --help`` needs no rclpy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vsda_ros.apps._common import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    standalone,
)

EPILOG = """\
examples:
  vsda replay camvid_val                       # all image topics at recorded speed
  vsda replay camvid_val --rate 0.5 --loop     # half speed, forever (Ctrl-C stops)
  vsda replay camvid_val --remap /camera/image_raw:=/segmentation_node/image \\
      --wait-subscribers 1                     # into a running segmentation_node

Messages are the bag's CDR bytes, published unchanged: header stamps are the recorded ones
unless --restamp. --wait-subscribers waits for subscribers on every replayed topic that is not
a label topic (a name ending in 'labels').
"""


def run(args: argparse.Namespace) -> int:
    """``vsda replay``: publish, print the summary; returns the exit status."""
    from vsda_ros.ros.tools.replay import (  # imports rclpy
        print_summary,
        replay_bag,
        use_environment_domain,
    )

    domain, origin = use_environment_domain()  # network rule, before rclpy starts
    print(
        f'vsda replay: ROS_DOMAIN_ID={domain} ('
        f'{"from the environment" if origin == "ROS_DOMAIN_ID" else "default; unset"}), '
        'discovery on localhost only',
        flush=True,
    )
    summary = replay_bag(
        args.bag,
        rate=args.rate,
        topics=args.topics or None,
        loop=args.loop,
        remap=args.remap,
        start_delay=args.start_delay,
        wait_subscribers=args.wait_subscribers,
        wait_timeout=args.wait_timeout,
        restamp=args.restamp,
        qos_depth=args.qos_depth,
        progress=args.progress,
    )
    print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + '\n')
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``vsda replay`` (``func`` = :func:`run`)."""
    p = subparsers.add_parser(
        'replay',
        help='publish a rosbag2 bag on ROS 2 topics at the recorded rate',
        description='Publish the image (and label) topics of a rosbag2 bag (folder, .mcap or\n'
        '.db3) over ROS 2 at the recorded timing scaled by --rate. Messages are the\n'
        "bag's serialized bytes, unchanged (bit-identical). Runs with\n"
        'ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST in the ROS_DOMAIN_ID of the\n'
        'environment (0 when unset, like every ROS tool), and prints it.',
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument('bag', help='bag folder, .mcap or .db3 file')
    p.add_argument(
        '--rate',
        type=positive_float,
        default=1.0,
        help='speed factor: 2 = twice as fast (default: %(default)s)',
    )
    p.add_argument('--loop', action='store_true', help='start over at the end (Ctrl-C stops)')
    p.add_argument(
        '--topics',
        nargs='+',
        default=None,
        metavar='TOPIC',
        help='bag topics to publish (default: every Image/CompressedImage topic)',
    )
    p.add_argument(
        '--remap',
        nargs='+',
        default=[],
        metavar='OLD:=NEW',
        help='publish bag topic OLD as NEW (also the way to replay a topic whose '
        'name is invalid in ROS 2, e.g. /2cam/image:=/cam2/image)',
    )
    _add_timing_args(p)
    p.add_argument('--json', default=None, help='write the summary as JSON here')
    p.add_argument('--quiet', dest='progress', action='store_false', help='no progress bar')
    p.set_defaults(func=run)
    return p


def _add_timing_args(p: argparse.ArgumentParser) -> None:
    """``vsda replay``'s start (delay, waiting for subscribers), stamps and publisher depth."""
    p.add_argument(
        '--start-delay',
        type=non_negative_float,
        default=1.0,
        help='seconds to wait after creating publishers, so subscribers can match '
        '(default: %(default)s)',
    )
    p.add_argument(
        '--wait-subscribers',
        type=non_negative_int,
        default=0,
        metavar='N',
        help='first wait until every non-label topic has N subscribers (default: 0)',
    )
    p.add_argument(
        '--wait-timeout',
        type=positive_float,
        default=30.0,
        help='give up waiting for subscribers after this many seconds (default: 30)',
    )
    p.add_argument(
        '--restamp',
        action='store_true',
        help='rewrite header stamps to the publish time (default: keep recorded)',
    )
    p.add_argument(
        '--qos-depth',
        type=positive_int,
        default=10,
        help='depth of the reliable publishers (default: %(default)s)',
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m vsda_ros.apps.replay BAG …``: exactly ``vsda replay``."""
    return standalone(sys.modules[__name__], 'replay', argv)


if __name__ == '__main__':
    sys.exit(main())
