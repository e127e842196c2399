"""``vsda fetch``: download published weights into ``VSDA_CACHE_DIR/weights``, sha256-checked."""

from __future__ import annotations

import argparse

from vsda_ros.apps._common import EPILOG, zoo_names


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsda fetch``."""
    p = subparsers.add_parser(
        'fetch',
        help='download published weights (sha256-checked)',
        description='Download published weights into VSDA_CACHE_DIR/weights with a progress '
        'bar; resumes partial downloads and refuses files whose sha256 differs.',
        epilog=EPILOG,
    )
    p.add_argument('name', choices=[*zoo_names(), 'all'], help='model name, or all')
    p.add_argument(
        '--base-url',
        default=None,
        help='fetch from a mirror laid out like ../shared/data (BASE/weights/FILE)',
    )
    p.add_argument('--quiet', dest='progress', action='store_false', help='no progress bar')
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``vsda fetch NAME|all``: download (or find) each file; returns 0."""
    from vsda_ros.fetch import fetch_file
    from vsda_ros.models.zoo import ZOO
    from vsda_ros.paths import cache_dir

    names = list(ZOO) if args.name == 'all' else [args.name]
    for name in names:
        entry = ZOO[name]
        url = (
            (args.base_url.rstrip('/') + '/weights/' + entry.filename)
            if args.base_url
            else entry.url
        )
        path = fetch_file(
            url, cache_dir() / 'weights' / entry.filename, entry.sha256, progress=args.progress
        )
        print(f'{name}: {path} (sha256 ok)')
    return 0
