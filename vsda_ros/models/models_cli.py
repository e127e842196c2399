"""``vsda models``: list the zoo (published and shipped models, their temporal modules, files and
sha256 status); ``vsda models build``: retrain the shipped files (``make models``)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def zoo_rows() -> list[dict]:
    """One row per model :func:`vsda_ros.models.zoo.load_model` knows by name."""
    from vsda_ros.models.shipped import SHIPPED_MODELS, SHIPPED_TEMPORAL, file_status
    from vsda_ros.fetch import file_sha256
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
        rows.append({'name': name, 'kind': 'published', 'classes': entry.meta.num_classes,
                     'native_size': 'x'.join(map(str, entry.meta.native_size)),
                     'temporal_modules': modules(shipped),
                     'file': str(path) if path else '-', 'sha256': status,
                     'temporal_file': str(shipped.path) if shipped else '-',
                     'temporal_sha256': file_status(shipped) if shipped else '-'})
    for name, entry in SHIPPED_MODELS.items():
        base = ZOO[entry.base].meta
        status = file_status(entry)
        rows.append({'name': name, 'kind': f'adapted from {entry.base}',
                     'classes': base.num_classes,
                     'native_size': 'x'.join(map(str, base.native_size)),
                     'temporal_modules': modules(entry), 'file': str(entry.path),
                     'sha256': status, 'temporal_file': '-', 'temporal_sha256': '-'})
    return rows


def _cmd_list(args: argparse.Namespace) -> int:
    rows = zoo_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = ('name', 'kind', 'classes', 'native', 'temporal modules', 'sha256', 'file')
    table = [head] + [(r['name'], r['kind'], str(r['classes']), r['native_size'],
                       r['temporal_modules'], r['sha256'], r['file']) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print('  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for r in rows:
        if r['temporal_file'] != '-':
            print(f"{r['name']}: temporal modules {r['temporal_file']} "
                  f"(sha256 {r['temporal_sha256']})")
    bad = [r['name'] for r in rows if r['sha256'].startswith('BAD')
           or r['temporal_sha256'].startswith('BAD')]
    return 1 if bad else 0


def _fmt(run: dict | None, key: str) -> str:
    return f"{run[key]:.2f}" if run and run.get(key) is not None else 'n/a'


def _cmd_build(args: argparse.Namespace) -> int:
    from vsda_ros.models import zoo_build as zb
    from vsda_ros.models.shipped import file_status
    from vsda_ros.paths import data_dir

    data = Path(args.data) if args.data else data_dir()
    if data is None or not (data / 'camvid').is_dir():
        raise FileNotFoundError(f'real data not found at {data} (set VSDA_DATA_DIR)')
    files = args.only or list(zb.PACKS)
    unknown = [f for f in files if f not in zb.PACKS]
    if unknown:
        raise ValueError(f'unknown shipped file(s) {unknown}; known: {", ".join(zb.PACKS)}')
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    keys = zb.with_dependencies([k for f in files for k in zb.PACKS[f]])
    times_file = work / 'times.json'
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    times.update(zb.run_steps(keys, work, data, args.threads, args.force))
    times_file.write_text(json.dumps(times, indent=2) + '\n')
    packed = {f: zb.pack(f, work, work / 'zoo', times) for f in files}
    rows = []
    if not args.no_eval:
        for f, path in packed.items():
            entry = zb.entry_for(f)
            if f.endswith('.temporal.pt'):
                model = f[: -len('.temporal.pt')]
                new = zb.evaluate(model, str(path), work / 'eval' / f'{f}.new', data)
                old = (zb.evaluate(model, '', work / 'eval' / f'{f}.shipped', data)
                       if entry and file_status(entry) == 'ok' else None)
            else:
                new = zb.evaluate(str(path), '', work / 'eval' / f'{f}.new', data)
                old = (zb.evaluate(entry.name, '', work / 'eval' / f'{f}.shipped', data)
                       if entry and file_status(entry) == 'ok' else None)
            for strategy in new:
                o = (old or {}).get(strategy)
                rows.append((f, strategy, _fmt(new[strategy], 'miou'), _fmt(o, 'miou'),
                             _fmt(new[strategy], 'tc'), _fmt(o, 'tc')))
    installed = {}
    if args.install:
        for f, path in packed.items():
            installed[f] = zb.install(path)
    total = time.monotonic() - t0
    if rows:
        print('\nCamVid val (61 frames, 15 Hz) at 480x360: new vs shipped')
        print('| file | strategy | mIoU new | mIoU shipped | TC new | TC shipped |')
        print('| --- | --- | --- | --- | --- | --- |')
        for row in rows:
            print('| ' + ' | '.join(row) + ' |')
    for f, path in packed.items():
        size = path.stat().st_size / 1e6
        print(f'{f}: {path} ({size:.2f} MB)' + (f', installed, sha256 {installed[f]}'
                                                 if f in installed else ''))
    trained = sum(times.get(k, 0.0) for k in keys)
    print(f'training time of these files: {trained:.0f} s; this run: {total:.0f} s')
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``vsda models`` (and ``vsda models build``)."""
    from vsda_ros.cli import EPILOG
    p = subparsers.add_parser(
        'models', help='list the zoo (published and shipped models); `models build` retrains',
        description='List every model vsda_ros knows by name: the published networks (weights '
                    'found in VSDA_DATA_DIR or the cache, sha256-checked) and the adapted '
                    'models shipped in vsda_ros/zoo/, with the trained temporal modules each '
                    'carries and whether each file\'s sha256 is OK. Exit 1 if a file is corrupt.',
        epilog=EPILOG)
    p.add_argument('--json', action='store_true', help='print the rows as JSON')
    p.set_defaults(func=_cmd_list)
    sub = p.add_subparsers(dest='models_command', metavar='{build}')
    b = sub.add_parser(
        'build', help='retrain every shipped file from VSDA_DATA_DIR (make models)',
        description='Run the vsda adapt recipes behind every shipped file (fixed seeds, one '
                    'after another, with progress bars), pack them compactly (float16 weights) '
                    'into WORK/zoo, evaluate each next to the shipped one on CamVid val at '
                    '480x360 and print the comparison and the total time; --install copies '
                    'them into vsda_ros/zoo/ and writes their sha256 into '
                    'vsda_ros/models/shipped.py. Training takes about an hour on 2 CPU threads.',
        epilog=EPILOG)
    b.add_argument('--only', action='append', default=None, metavar='FILE',
                   help='build only this shipped file (repeatable), e.g. '
                        'espnet-camvid.temporal.pt')
    b.add_argument('--work', default='runs/zoo_build',
                   help='folder for the runs\' checkpoints and logs (default: %(default)s)')
    b.add_argument('--data', default=None, help='real data folder (default: VSDA_DATA_DIR)')
    b.add_argument('--threads', type=int, default=2, help='torch threads (default: 2)')
    b.add_argument('--force', action='store_true', help='retrain steps whose checkpoint exists')
    b.add_argument('--no-eval', action='store_true', help='skip the comparison on CamVid val')
    b.add_argument('--install', action='store_true',
                   help='copy the new files into vsda_ros/zoo/ and update their sha256')
    b.set_defaults(func=_cmd_build)
    return p
