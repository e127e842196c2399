"""Model-card figures for the shipped models (docs/design/models.md), measured by ``vsda eval``.

For each model: on the CamVid val clip (the dev clip, 61 frames, 15 Hz, never trained on) at
480×360 — per_frame / fusion / keyframe clean and under each synthetic temporal weather at 0.6
(seed 0): mIoU, TC, mean ms per frame, and per-class IoU of per_frame; then the mean time per
frame at the model's native size on the first ``--native-frames`` frames. Prints markdown and
writes ``OUT/cards.json``.

    .venv/bin/python benchmarks/model_cards.py --out runs/cards
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

WEATHERS = ('fog', 'rain', 'snow', 'night', 'glare', 'noise')
STRATEGIES = 'per_frame,fusion,keyframe'
#: card name → (zoo model, label map, native size)
MODELS = {
    'espnet-camvid': ('espnet-camvid', None, '480x360'),
    'espnetv2-cityscapes': ('espnetv2-cityscapes', 'cityscapes-camvid', '1024x512'),
    'espnetv2-camvid-tsl': ('espnetv2-camvid-tsl', 'cityscapes-camvid', '1024x512'),
}


def _eval(
    model: str, label_map: str | None, size: str, out: Path, data: Path, extra: list[str]
) -> dict:
    cmd = [
        sys.executable,
        '-m',
        'vsda_ros',
        'eval',
        '--model',
        model,
        '--size',
        size,
        '--strategy',
        STRATEGIES,
        '--source',
        str(data / 'camvid' / 'val'),
        '--labels',
        str(data / 'camvid' / 'valannot'),
        '--out',
        str(out),
        '--quiet',
        *extra,
    ]
    if label_map:
        cmd += ['--map', label_map]
    print('$ vsda ' + ' '.join(cmd[3:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env=dict(os.environ, VSDA_DATA_DIR=str(data)))
    return json.loads((out / 'report.json').read_text())


def card(name: str, out: Path, data: Path, native_frames: int) -> dict:
    model, label_map, native = MODELS[name]
    weather = [a for w in WEATHERS for a in ('--weather', f'{w}:0.6')]
    dev = _eval(model, label_map, '480x360', out / name / 'dev', data, weather)
    nat = (
        _eval(
            model,
            label_map,
            native,
            out / name / 'native',
            data,
            ['--max-frames', str(native_frames)],
        )
        if native != '480x360'
        else None
    )
    return {
        'model': model,
        'label_map': label_map,
        'native_size': native,
        'temporal_modules': dev.get('temporal_modules'),
        'runs': dev['runs'],
        'native_runs': nat['runs'] if nat else None,
    }


def _f(v, nd=1) -> str:
    return '–' if v is None else f'{v:.{nd}f}'


def markdown(name: str, c: dict) -> str:
    runs = c['runs']
    get = {(r['weather'] or 'clean', r['strategy']): r for r in runs}
    conds = ['clean'] + [w for w in dict.fromkeys(r['weather'] for r in runs) if w]
    lines = [
        f'#### {name}: strategies on the dev clip at 480×360',
        '',
        '| condition | ' + ' | '.join(f'{s} mIoU / TC' for s in STRATEGIES.split(',')) + ' |',
        '| --- |' + ' --- |' * 3,
    ]
    for cond in conds:
        cells = [
            f'{_f(get[(cond, s)].get("miou"), 2)} / {_f(get[(cond, s)].get("tc"), 2)}'
            if (cond, s) in get
            else '–'
            for s in STRATEGIES.split(',')
        ]
        lines.append(f'| {cond} | ' + ' | '.join(cells) + ' |')
    strategies = STRATEGIES.split(',')
    lines += [
        '',
        '| mean ms per frame, clean, 2 threads | ' + ' | '.join(strategies) + ' |',
        '| --- |' + ' --- |' * len(strategies),
        '| 480×360 | '
        + ' | '.join(_f(get[('clean', s)].get('mean_ms')) for s in strategies)
        + ' |',
    ]
    if c['native_runs']:
        nat = {r['strategy']: r for r in c['native_runs']}
        lines.append(
            f'| native {c["native_size"]} (first frames) | '
            + ' | '.join(_f(nat[s].get('mean_ms')) if s in nat else '–' for s in strategies)
            + ' |'
        )
    lines.append('')
    classes = list(get[('clean', 'per_frame')]['per_class_iou'])
    lines += [
        f'#### {name}: per-class IoU of per_frame (dev clip, 480×360)',
        '',
        '| condition | ' + ' | '.join(classes) + ' |',
        '| --- |' + ' --- |' * len(classes),
    ]
    for cond in conds:
        iou = get[(cond, 'per_frame')]['per_class_iou']
        lines.append(f'| {cond} | ' + ' | '.join(_f(iou[k]) for k in classes) + ' |')
    return '\n'.join(lines) + '\n'


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--out', default='runs/cards', help='output folder')
    ap.add_argument('--models', default=','.join(MODELS), help='comma-separated card names')
    ap.add_argument(
        '--native-frames', type=int, default=20, help='frames timed at the native size (default 20)'
    )
    ap.add_argument('--data', default=None, help='real data (default: VSDA_DATA_DIR)')
    args = ap.parse_args()
    from vsda_ros.paths import data_dir

    data = Path(args.data) if args.data else data_dir()
    if data is None:
        ap.error('real data not found: set VSDA_DATA_DIR')
    out = Path(args.out)
    cards = {}
    for name in args.models.split(','):
        cards[name] = card(name, out, data, args.native_frames)
        (out / 'cards.json').write_text(json.dumps(cards, indent=2) + '\n')
        print(markdown(name, cards[name]), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
