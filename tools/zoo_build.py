"""``make models`` (``tools/zoo_build.py``): retrain every shipped checkpoint from the real data.

A maintainer pipeline of the repository, not part of the installed package: it needs a source
checkout (the recipes live in ``config/experiments/``, the sha256 go into
``vsda_ros/models/shipped.py``) and ``VSDA_DATA_DIR``. Run it as ``make models`` or
``.venv/bin/python tools/zoo_build.py [--only FILE] [--install] …`` (``--help``).


Each shipped file (:data:`vsda_ros.models.shipped.SHIPPED_FILES`) is made from one or more
``vsda adapt`` runs (:data:`STEPS`, fixed seeds, the recipes in ``config/experiments/``), run
one after another as subprocesses with their own progress bars. The runs' full checkpoints go to
``--work`` (default ``runs/zoo_build``); the packed, compact files (float16 weights, see
:func:`vsda_ros.models.shipped.compact_state`) to ``WORK/zoo``. Then every new file is evaluated
next to the shipped one on the labelled dev clip (CamVid val at 480×360: mIoU and TC per
strategy) and, with ``--install``, copied into ``vsda_ros/zoo/`` with its new sha256 written
into ``vsda_ros/models/shipped.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vsda_ros.models.shipped import SHIPPED_FILES, ShippedFile, compact_state, compact_temporal

REPO = Path(__file__).resolve().parents[1]
CITYSCAPES_SEQ = tuple(f'cityscapes_seq/seq{i:04d}' for i in range(6))
DASHCAM = 'video/solidWhiteRight.mp4'


@dataclass(frozen=True)
class Step:
    """One ``vsda adapt`` run: its recipe file, extra flags and targets (under the data dir).

    ``needs``: other steps whose checkpoints this one reads (run first).
    """

    key: str
    config: str
    targets: tuple[str, ...]
    flags: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()

    def command(self, data: Path, out: Path, threads: int) -> list[str]:
        cmd = [
            sys.executable,
            '-m',
            'vsda_ros',
            'adapt',
            '--config',
            str(REPO / self.config),
            '--out',
            str(out),
            '--threads',
            str(threads),
            *self.flags,
        ]
        for target in self.targets:
            cmd += ['--target', str(data / target)]
        return cmd


#: every training run behind the shipped files, in the order they run.
STEPS: dict[str, Step] = {
    s.key: s
    for s in [
        Step('espnet-camvid.davss', 'config/experiments/davss.yaml', ('camvid/train', DASHCAM)),
        Step('espnet-camvid.fusion', 'config/experiments/fusion.yaml', ('camvid/train', DASHCAM)),
        # the image-guided block: the motion field alone (2000 iterations, then 4000 more at half
        # the rate: config/experiments/fusion_guided.yaml), then everything with the frame cues and
        # the pixel mask (config/experiments/fusion_guided_cues.yaml)
        Step(
            'espnet-camvid.fusion_guided1',
            'config/experiments/fusion_guided.yaml',
            (*CITYSCAPES_SEQ, DASHCAM),
            ('--fusion-stage', 'motion', '--batch', '8', '--iterations', '2000'),
        ),
        Step(
            'espnet-camvid.fusion_guided1b',
            'config/experiments/fusion_guided.yaml',
            (*CITYSCAPES_SEQ, DASHCAM),
            (
                '--fusion-stage',
                'motion',
                '--batch',
                '8',
                '--iterations',
                '4000',
                '--lr',
                '0.002',
                '--seed',
                '3',
                '--fusion-init',
                '{work}/espnet-camvid.fusion_guided1.pt',
            ),
            needs=('espnet-camvid.fusion_guided1',),
        ),
        Step(
            'espnet-camvid.fusion_cues',
            'config/experiments/fusion_guided_cues.yaml',
            (*CITYSCAPES_SEQ, DASHCAM),
            ('--fusion-init', '{work}/espnet-camvid.fusion_guided1b.pt'),
            needs=('espnet-camvid.fusion_guided1b',),
        ),
        # the ESPNetv2 models: that block fine-tuned on each network's own scores (300 iterations
        # at half the rate; the block has no class-dependent weight, so it starts from all of it).
        # The network is the installed one (for espnetv2-camvid-tsl: the shipped file's network,
        # as these blocks were trained), not this build's float32 tsl checkpoint.
        *(
            Step(
                f'{m}.fusion_cues',
                'config/experiments/fusion_guided_cues.yaml',
                (*CITYSCAPES_SEQ, DASHCAM),
                (
                    '--model',
                    m,
                    '--iterations',
                    '300',
                    '--lr',
                    '0.002',
                    '--fusion-init',
                    '{work}/espnet-camvid.fusion_cues.pt',
                ),
                needs=('espnet-camvid.fusion_cues',),
            )
            for m in ('espnetv2-cityscapes', 'espnetv2-camvid-tsl')
        ),
        Step(
            'espnetv2-cityscapes.davss',
            'config/experiments/davss.yaml',
            (*CITYSCAPES_SEQ, DASHCAM),
            ('--model', 'espnetv2-cityscapes'),
        ),
        # ESPNetv2 costs ~2.4 s an iteration here (4× ESPNet): the fusion block gets 300
        Step(
            'espnetv2-cityscapes.fusion',
            'config/experiments/fusion.yaml',
            (*CITYSCAPES_SEQ, DASHCAM),
            ('--model', 'espnetv2-cityscapes', '--iterations', '300'),
        ),
        # tsl's recipe evaluates on CamVid val at iterations 0, 100 and 200; here only at the end
        Step(
            'espnetv2-camvid-tsl',
            'config/experiments/tsl.yaml',
            ('camvid/train', DASHCAM),
            ('--eval-every', '0'),
        ),
    ]
}

#: shipped file name → the steps it is packed from (a whole model comes from the first; where
#: two steps have the same module, the later step's wins).
PACKS: dict[str, tuple[str, ...]] = {
    'espnet-camvid.temporal.pt': ('espnet-camvid.davss', 'espnet-camvid.fusion_cues'),
    'espnetv2-cityscapes.temporal.pt': (
        'espnetv2-cityscapes.davss',
        'espnetv2-cityscapes.fusion_cues',
    ),
    # the adapted network, the DMNet/CFNet of the network it was adapted from
    # (docs/design/models.md: measured against plain warping) and the image-guided fusion block
    # (replacing the score block tsl trained with it: docs/design/temporal.md)
    'espnetv2-camvid-tsl.pt': (
        'espnetv2-camvid-tsl',
        'espnetv2-cityscapes.davss',
        'espnetv2-camvid-tsl.fusion_cues',
    ),
}


def with_dependencies(keys: list[str]) -> list[str]:
    """``keys`` with every step they need (:attr:`Step.needs`, recursively) before them."""
    out: list[str] = []

    def add(key: str) -> None:
        step = STEPS[key]
        for dep in step.needs:
            add(dep)
        if key not in out:
            out.append(key)

    for key in keys:
        add(key)
    return out


def run_steps(keys: list[str], work: Path, data: Path, threads: int, force: bool) -> dict:
    """Run the training steps (skipping those whose checkpoint exists unless ``force``).

    Returns ``{key: seconds}`` for the steps that ran. Raises ``RuntimeError`` if one fails.
    """
    times = {}
    for key in keys:
        step = STEPS[key]
        out = work / f'{key}.pt'
        if out.is_file() and not force:
            print(f'== {key}: {out} exists, kept (--force retrains)')
            continue
        flags = tuple(f.replace('{work}', str(work)) for f in step.flags)
        cmd = Step(step.key, step.config, step.targets, flags).command(data, out, threads)
        print(f'== {key}: ' + ' '.join(cmd[2:]), flush=True)
        t0 = time.monotonic()
        res = subprocess.run(cmd, env=dict(os.environ, VSDA_DATA_DIR=str(data)))
        if res.returncode != 0:
            raise RuntimeError(f'training step {key} failed (exit {res.returncode})')
        times[key] = time.monotonic() - t0
        print(f'== {key}: {times[key]:.0f} s', flush=True)
    return times


def _provenance(ckpt: dict, key: str, seconds: float | None, work: Path) -> dict:
    extra = ckpt.get('extra', {})
    summary = work / f'{key}.pt.json'  # vsda adapt's own summary: training time, iterations
    if summary.is_file():
        info = json.loads(summary.read_text())
        seconds = info.get('train_seconds', seconds)
        extra = {
            **extra,
            'summary': {
                k: info.get(k) for k in ('iterations', 'train_seconds', 'weights_sha256', 'final')
            },
        }
    return {
        'step': key,
        'command': 'vsda '
        + ' '.join(
            [
                'adapt',
                '--config',
                STEPS[key].config,
                *STEPS[key].flags,
                *[a for t in STEPS[key].targets for a in ('--target', f'$VSDA_DATA_DIR/{t}')],
            ]
        ),
        'recipe': extra.get('recipe'),
        'train_seconds': seconds,
        'summary': extra.get('summary'),
    }


def pack(filename: str, work: Path, out_dir: Path, times: dict) -> Path:
    """Pack the steps' checkpoints into one compact shipped file; returns its path.

    Raises ``FileNotFoundError`` if a step's checkpoint is missing.
    """
    from vsda_ros.models.checkpoint import FORMAT, read_checkpoint

    keys = PACKS[filename]
    ckpts = {k: read_checkpoint(work / f'{k}.pt') for k in keys}
    temporal: dict = {}
    for k in keys:  # a later step's module replaces an earlier one's
        temporal.update(ckpts[k].get('extra', {}).get('temporal', {}))
    first = ckpts[keys[0]]
    whole = filename.endswith('.pt') and not filename.endswith('.temporal.pt')
    meta = dict(first['meta'])
    provenance = dict(meta.get('provenance', {}))
    provenance['built_from'] = [_provenance(ckpts[k], k, times.get(k), work) for k in keys]
    meta['provenance'] = provenance
    if whole:
        meta['name'] = filename[:-3]
    out = {
        'format': FORMAT,
        'meta': meta,
        'state_dict': compact_state(first['state_dict']) if whole else {},
        'extra': {'temporal': compact_temporal(temporal), 'kind': 'model' if whole else 'temporal'},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / filename
    torch.save(out, str(path))
    return path


def evaluate(
    model: str,
    temporal_weights: str,
    out: Path,
    data: Path,
    strategies: str = 'per_frame,fusion,keyframe',
) -> dict:
    """mIoU / TC / mean ms per strategy on CamVid val at 480×360 (``vsda eval``)."""
    from vsda_ros.models.shipped import SHIPPED_MODELS
    from vsda_ros.models.zoo import ZOO

    classes = ZOO[model].meta.num_classes if model in ZOO else 19
    cmd = [
        sys.executable,
        '-m',
        'vsda_ros',
        'eval',
        '--model',
        model,
        '--size',
        '480x360',
        '--strategy',
        strategies,
        '--source',
        str(data / 'camvid/val'),
        '--labels',
        str(data / 'camvid/valannot'),
        '--out',
        str(out),
    ]
    if temporal_weights:
        cmd += ['--temporal-weights', temporal_weights]
    if classes != 11 or model in SHIPPED_MODELS:
        cmd += ['--map', 'cityscapes-camvid']
    res = subprocess.run(
        cmd, env=dict(os.environ, VSDA_DATA_DIR=str(data)), capture_output=True, text=True
    )
    if res.returncode != 0:
        raise RuntimeError(f'evaluation of {model} failed: {res.stderr.strip()[-400:]}')
    report = json.loads((out / 'report.json').read_text())
    return {run['strategy']: run for run in report['runs'] if run.get('weather') is None}


def install(path: Path) -> str:
    """Copy a packed file into ``vsda_ros/zoo/`` and write its sha256 into ``shipped.py``."""
    from vsda_ros.fetch import sha256_of
    from vsda_ros.zoo import ZOO_DIR

    digest = sha256_of(path)
    shutil.copyfile(path, ZOO_DIR / path.name)
    src = REPO / 'vsda_ros' / 'models' / 'shipped.py'
    text = src.read_text()
    pattern = re.compile(r"(filename='" + re.escape(path.name) + r"',\s*sha256=')([0-9a-f]*)(')")
    if not pattern.search(text):
        raise RuntimeError(f'{src} has no SHIPPED_FILES entry for {path.name}')
    src.write_text(pattern.sub(lambda m: m.group(1) + digest + m.group(3), text))
    return digest


def entry_for(filename: str) -> ShippedFile | None:
    """The shipped-file entry named ``filename`` (``None`` for a new file)."""
    return next((f for f in SHIPPED_FILES if f.filename == filename), None)


# ------------------------------------------------------------------------------ command line
def _fmt(run: dict | None, key: str) -> str:
    return f'{run[key]:.2f}' if run and run.get(key) is not None else 'n/a'


def compare(packed: dict[str, Path], work: Path, data: Path) -> list[tuple[str, ...]]:
    """Evaluate every packed file next to the shipped one (when that is installed and
    intact); rows (file, strategy, mIoU new, mIoU shipped, TC new, TC shipped)."""
    from vsda_ros.models.shipped import file_status

    rows = []
    for f, path in packed.items():
        entry = entry_for(f)
        shipped_ok = entry is not None and file_status(entry) == 'ok'
        if f.endswith('.temporal.pt'):
            model = f[: -len('.temporal.pt')]
            new = evaluate(model, str(path), work / 'eval' / f'{f}.new', data)
            old = evaluate(model, '', work / 'eval' / f'{f}.shipped', data) if shipped_ok else None
        else:
            new = evaluate(str(path), '', work / 'eval' / f'{f}.new', data)
            old = (
                evaluate(entry.name, '', work / 'eval' / f'{f}.shipped', data)
                if shipped_ok
                else None
            )
        for strategy in new:
            o = (old or {}).get(strategy)
            rows.append(
                (
                    f,
                    strategy,
                    _fmt(new[strategy], 'miou'),
                    _fmt(o, 'miou'),
                    _fmt(new[strategy], 'tc'),
                    _fmt(o, 'tc'),
                )
            )
    return rows


def build(args: argparse.Namespace) -> int:
    """Train, pack, compare and (with ``--install``) install; prints what it did."""
    from vsda_ros.paths import data_dir

    data = Path(args.data) if args.data else data_dir()
    if data is None or not (data / 'camvid').is_dir():
        raise FileNotFoundError(f'real data not found at {data} (set VSDA_DATA_DIR)')
    files = args.only or list(PACKS)
    unknown = [f for f in files if f not in PACKS]
    if unknown:
        raise ValueError(f'unknown shipped file(s) {unknown}; known: {", ".join(PACKS)}')
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    keys = with_dependencies([k for f in files for k in PACKS[f]])
    times_file = work / 'times.json'
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    times.update(run_steps(keys, work, data, args.threads, args.force))
    times_file.write_text(json.dumps(times, indent=2) + '\n')
    packed = {f: pack(f, work, work / 'zoo', times) for f in files}
    rows = [] if args.no_eval else compare(packed, work, data)
    installed = {f: install(path) for f, path in packed.items()} if args.install else {}
    total = time.monotonic() - t0
    if rows:
        print('\nCamVid val (61 frames, 15 Hz) at 480x360: new vs shipped')
        print('| file | strategy | mIoU new | mIoU shipped | TC new | TC shipped |')
        print('| --- | --- | --- | --- | --- | --- |')
        for row in rows:
            print('| ' + ' | '.join(row) + ' |')
    for f, path in packed.items():
        size = path.stat().st_size / 1e6
        print(
            f'{f}: {path} ({size:.2f} MB)'
            + (f', installed, sha256 {installed[f]}' if f in installed else '')
        )
    trained = sum(times.get(k, 0.0) for k in keys)
    print(f'training time of these files: {trained:.0f} s; this run: {total:.0f} s')
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The options of ``tools/zoo_build.py`` (``make models`` passes ``--install``)."""
    b = argparse.ArgumentParser(
        prog='tools/zoo_build.py',
        description='Run the vsda adapt recipes behind every shipped file (fixed seeds, one '
        'after another, with progress bars), pack them compactly (float16 weights) '
        'into WORK/zoo, evaluate each next to the shipped one on CamVid val at '
        '480x360 and print the comparison and the total time; --install copies '
        'them into vsda_ros/zoo/ and writes their sha256 into '
        'vsda_ros/models/shipped.py. Training takes about an hour on 2 CPU threads.',
    )
    b.add_argument(
        '--only',
        action='append',
        default=None,
        metavar='FILE',
        help='build only this shipped file (repeatable), e.g. espnet-camvid.temporal.pt',
    )
    b.add_argument(
        '--work',
        default='runs/zoo_build',
        help="folder for the runs' checkpoints and logs (default: %(default)s)",
    )
    b.add_argument('--data', default=None, help='real data folder (default: VSDA_DATA_DIR)')
    b.add_argument('--threads', type=int, default=2, help='torch threads (default: 2)')
    b.add_argument('--force', action='store_true', help='retrain steps whose checkpoint exists')
    b.add_argument('--no-eval', action='store_true', help='skip the comparison on CamVid val')
    b.add_argument(
        '--install',
        action='store_true',
        help='copy the new files into vsda_ros/zoo/ and update their sha256',
    )
    return b


def main(argv: list[str] | None = None) -> int:
    """``tools/zoo_build.py …``: the exit status (2 with a one-line error on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return build(args)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f'zoo_build: error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
