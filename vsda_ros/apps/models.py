"""``vsda models``: list the zoo (published and shipped models, their temporal modules, files and
sha256 status). Retraining the shipped files is a maintainer pipeline of the repository, not
part of the package: ``make models`` (``tools/zoo_build.py``)."""

from __future__ import annotations

import argparse
import json

from vsda_ros.apps._common import EPILOG


def zoo_rows() -> list[dict]:
    """One row per model :func:`vsda_ros.models.zoo.load_model` knows by name."""
    from vsda_ros.fetch import file_sha256
    from vsda_ros.models.shipped import SHIPPED_MODELS, SHIPPED_TEMPORAL, file_status
    from vsda_ros.models.zoo import ZOO, find_weights
    from vsda_ros.temporal.modules import TemporalModules

    def modules(entry) -> str:
        if entry is None or file_status(entry) != 'ok':
            return '-'
        return ','.join(TemporalModules.from_checkpoint(entry.path).loaded()) or '-'

    rows = []
    for name, entry in ZOO.items():
        try:
            path = find_weights(entry, download=False)
            status = 'ok' if file_sha256(path) == entry.sha256 else 'BAD sha256'
        except FileNotFoundError:
            path, status = None, 'missing (vsda fetch ' + name + ')'
        shipped = SHIPPED_TEMPORAL.get(name)
        rows.append(
            {
                'name': name,
                'kind': 'published',
                'classes': entry.meta.num_classes,
                'native_size': 'x'.join(map(str, entry.meta.native_size)),
                'temporal_modules': modules(shipped),
                'file': str(path) if path else '-',
                'sha256': status,
                'temporal_file': str(shipped.path) if shipped else '-',
                'temporal_sha256': file_status(shipped) if shipped else '-',
            }
        )
    for name, adapted in SHIPPED_MODELS.items():
        base = ZOO[adapted.base].meta
        status = file_status(adapted)
        rows.append(
            {
                'name': name,
                'kind': f'adapted from {adapted.base}',
                'classes': base.num_classes,
                'native_size': 'x'.join(map(str, base.native_size)),
                'temporal_modules': modules(adapted),
                'file': str(adapted.path),
                'sha256': status,
                'temporal_file': '-',
                'temporal_sha256': '-',
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    """``vsda models``: print the table (or JSON); exit 1 when a file's sha256 is bad."""
    rows = zoo_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = ('name', 'kind', 'classes', 'native', 'temporal modules', 'sha256', 'file')
    table = [head] + [
        (
            r['name'],
            r['kind'],
            str(r['classes']),
            r['native_size'],
            r['temporal_modules'],
            r['sha256'],
            r['file'],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print('  '.join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    for r in rows:
        if r['temporal_file'] != '-':
            print(
                f'{r["name"]}: temporal modules {r["temporal_file"]} '
                f'(sha256 {r["temporal_sha256"]})'
            )
    bad = [
        r['name']
        for r in rows
        if r['sha256'].startswith('BAD') or r['temporal_sha256'].startswith('BAD')
    ]
    return 1 if bad else 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsda models``."""
    p = subparsers.add_parser(
        'models',
        help='list the zoo (published and shipped models)',
        description='List every model vsda_ros knows by name: the published networks (weights '
        'found in VSDA_DATA_DIR or the cache, sha256-checked) and the adapted '
        'models shipped in vsda_ros/zoo/, with the trained temporal modules each '
        "carries and whether each file's sha256 is OK. Exit 1 if a file is corrupt. "
        'Retraining the shipped files: make models (a repository tool).',
        epilog=EPILOG,
    )
    p.add_argument('--json', action='store_true', help='print the rows as JSON')
    p.set_defaults(func=run)
    return p
