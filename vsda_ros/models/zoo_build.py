"""``vsda models build`` (``make models``): retrain every shipped checkpoint from the real data.

Each shipped file (:data:`vsda_ros.models.shipped.SHIPPED_FILES`) is made from one or more
``vsda adapt`` runs (:data:`STEPS`, fixed seeds, the recipes in ``config/experiments/``), run
one after another as subprocesses with their own progress bars. The runs' full checkpoints go to
``--work`` (default ``runs/zoo_build``); the packed, compact files (float16 weights, see
:func:`vsda_ros.models.shipped.compact_state`) to ``WORK/zoo``. Then every new file is evaluated
next to the shipped one on the labelled dev clip (CamVid val at 480×360: mIoU and TC per
strategy) and, with ``--install``, copied into ``vsda_ros/zoo/`` with its new sha256 written
into ``vsda_ros/models/shipped.py``.

Needs a source checkout (the recipes live in ``config/experiments/``) and ``VSDA_DATA_DIR``.
"""
from __future__ import annotations

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

REPO = Path(__file__).resolve().parents[2]
CITYSCAPES_SEQ = tuple(f'cityscapes_seq/seq{i:04d}' for i in range(6))
DASHCAM = 'video/solidWhiteRight.mp4'


@dataclass(frozen=True)
class Step:
    """One ``vsda adapt`` run: its recipe file, extra flags and targets (under the data dir).

    With ``transfer`` (a step key) nothing is trained: the fusion block of that step's
    checkpoint is rebuilt for this step's model (``flags`` = ``('--model', NAME)``) as the
    strategy runs it, by :func:`transfer_fusion` — the image-guided block without deformable
    steps has no class-dependent weights. ``needs``: other steps whose checkpoints this one
    reads (run first; a ``transfer`` source counts without being listed).
    """

    key: str
    config: str
    targets: tuple[str, ...]
    flags: tuple[str, ...] = ()
    transfer: str | None = None
    needs: tuple[str, ...] = ()

    def command(self, data: Path, out: Path, threads: int) -> list[str]:
        cmd = [sys.executable, '-m', 'vsda_ros', 'adapt', '--config', str(REPO / self.config),
               '--out', str(out), '--threads', str(threads), *self.flags]
        for target in self.targets:
            cmd += ['--target', str(data / target)]
        return cmd


#: every training run behind the shipped files, in the order they run.
STEPS: dict[str, Step] = {s.key: s for s in [
    Step('espnet-camvid.davss', 'config/experiments/davss.yaml', ('camvid/train', DASHCAM)),
    Step('espnet-camvid.fusion', 'config/experiments/fusion.yaml', ('camvid/train', DASHCAM)),
    # the image-guided block: the motion field alone (2000 iterations, then 4000 more at half
    # the rate: config/experiments/fusion_guided.yaml), then everything with the frame cues and
    # the pixel mask (config/experiments/fusion_guided_cues.yaml)
    Step('espnet-camvid.fusion_guided1', 'config/experiments/fusion_guided.yaml',
         (*CITYSCAPES_SEQ, DASHCAM),
         ('--fusion-stage', 'motion', '--batch', '8', '--iterations', '2000')),
    Step('espnet-camvid.fusion_guided1b', 'config/experiments/fusion_guided.yaml',
         (*CITYSCAPES_SEQ, DASHCAM),
         ('--fusion-stage', 'motion', '--batch', '8', '--iterations', '4000', '--lr', '0.002',
          '--seed', '3', '--fusion-init', '{work}/espnet-camvid.fusion_guided1.pt'),
         needs=('espnet-camvid.fusion_guided1',)),
    Step('espnet-camvid.fusion_cues', 'config/experiments/fusion_guided_cues.yaml',
         (*CITYSCAPES_SEQ, DASHCAM), ('--fusion-init', '{work}/espnet-camvid.fusion_guided1b.pt'),
         needs=('espnet-camvid.fusion_guided1b',)),
    # the ESPNetv2 models: that block fine-tuned on each network's own scores (300 iterations
    # at half the rate; the block has no class-dependent weight, so it starts from all of it).
    # The network is the installed one (for espnetv2-camvid-tsl: the shipped file's network,
    # as these blocks were trained), not this build's float32 tsl checkpoint.
    *(Step(f'{m}.fusion_cues', 'config/experiments/fusion_guided_cues.yaml',
           (*CITYSCAPES_SEQ, DASHCAM),
           ('--model', m, '--iterations', '300', '--lr', '0.002',
            '--fusion-init', '{work}/espnet-camvid.fusion_cues.pt'),
           needs=('espnet-camvid.fusion_cues',))
      for m in ('espnetv2-cityscapes', 'espnetv2-camvid-tsl')),
    Step('espnetv2-cityscapes.davss', 'config/experiments/davss.yaml',
         (*CITYSCAPES_SEQ, DASHCAM), ('--model', 'espnetv2-cityscapes')),
    # ESPNetv2 costs ~2.4 s an iteration here (4× ESPNet): the fusion block gets 300
    Step('espnetv2-cityscapes.fusion', 'config/experiments/fusion.yaml',
         (*CITYSCAPES_SEQ, DASHCAM), ('--model', 'espnetv2-cityscapes', '--iterations', '300')),
    # tsl's recipe evaluates on CamVid val at iterations 0, 100 and 200; here only at the end
    Step('espnetv2-camvid-tsl', 'config/experiments/tsl.yaml', ('camvid/train', DASHCAM),
         ('--eval-every', '0')),
]}

#: shipped file name → the steps it is packed from (a whole model comes from the first; where
#: two steps have the same module, the later step's wins).
PACKS: dict[str, tuple[str, ...]] = {
    'espnet-camvid.temporal.pt': ('espnet-camvid.davss', 'espnet-camvid.fusion_cues'),
    'espnetv2-cityscapes.temporal.pt': ('espnetv2-cityscapes.davss',
                                        'espnetv2-cityscapes.fusion_cues'),
    # the adapted network, the DMNet/CFNet of the network it was adapted from (docs/models.md:
    # measured against plain warping) and the image-guided fusion block (replacing the score
    # block tsl trained with it: docs/temporal.md)
    'espnetv2-camvid-tsl.pt': ('espnetv2-camvid-tsl', 'espnetv2-cityscapes.davss',
                               'espnetv2-camvid-tsl.fusion_cues'),
}


def with_dependencies(keys: list[str]) -> list[str]:
    """``keys`` with every step they need (:attr:`Step.needs` and :attr:`Step.transfer`,
    recursively) before them."""
    out: list[str] = []

    def add(key: str) -> None:
        step = STEPS[key]
        for dep in (*step.needs, *((step.transfer,) if step.transfer else ())):
            add(dep)
        if key not in out:
            out.append(key)

    for key in keys:
        add(key)
    return out


def transfer_fusion(src: Path, model: str, out: Path) -> Path:
    """Write a checkpoint of ``model`` whose fusion block is the one in ``src`` rebuilt for
    ``model``'s classes, as the strategy runs it: the same weights, ``recurrent`` (the fused
    scores are passed on) and ``frame_gate`` (the gate, trained per pixel, gives one weight per
    frame: the mean of its logits). Raises ``ValueError`` when the block has
    class-dependent weights (a score-only block, or deformable steps)."""
    from vsda_ros.models.checkpoint import save_checkpoint
    from vsda_ros.models.zoo import load_model
    from vsda_ros.temporal.modules import TemporalModules, make_module

    block = TemporalModules.from_checkpoint(src).fusion
    args = dict(getattr(block, 'vsda_args', {}))
    if args.get('variant') != 'guided' or args.get('num_deform', 1) != 0:
        raise ValueError(f'{src}: only a guided fusion block without deformable steps '
                         f'transfers between models (args {args})')
    net = load_model(model)
    new = make_module('fusion', **{**args, 'num_classes': net.num_classes, 'recurrent': True,
                                   'frame_gate': True})
    new.load_state_dict(block.state_dict(), strict=True)
    extra = TemporalModules(fusion=new.eval()).to_extra()
    extra['summary'] = {'transferred_from': str(src)}
    return save_checkpoint(net, out, extra)


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
        if step.transfer:
            t0 = time.monotonic()
            print(f'== {key}: the fusion block of {step.transfer} for {flags[1]}', flush=True)
            transfer_fusion(work / f'{step.transfer}.pt', flags[1], out)
            times[key] = time.monotonic() - t0
            continue
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
        extra = {**extra, 'summary': {k: info.get(k) for k in ('iterations', 'train_seconds',
                                                               'weights_sha256', 'final')}}
    if STEPS[key].transfer:
        return {'step': key, 'transferred_from': STEPS[key].transfer,
                'recipe': 'fusion', 'train_seconds': 0.0, 'summary': None}
    return {'step': key, 'command': 'vsda ' + ' '.join(
        ['adapt', '--config', STEPS[key].config, *STEPS[key].flags,
         *[a for t in STEPS[key].targets for a in ('--target', f'$VSDA_DATA_DIR/{t}')]]),
        'recipe': extra.get('recipe'), 'train_seconds': seconds,
        'summary': extra.get('summary')}


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
    out = {'format': FORMAT, 'meta': meta,
           'state_dict': compact_state(first['state_dict']) if whole else {},
           'extra': {'temporal': compact_temporal(temporal),
                     'kind': 'model' if whole else 'temporal'}}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / filename
    torch.save(out, str(path))
    return path


def evaluate(model: str, temporal_weights: str, out: Path, data: Path,
             strategies: str = 'per_frame,fusion,keyframe') -> dict:
    """mIoU / TC / mean ms per strategy on CamVid val at 480×360 (``vsda eval``)."""
    from vsda_ros.models.shipped import SHIPPED_MODELS
    from vsda_ros.models.zoo import ZOO
    classes = (ZOO[model].meta.num_classes if model in ZOO else 19)
    cmd = [sys.executable, '-m', 'vsda_ros', 'eval', '--model', model, '--size', '480x360',
           '--strategy', strategies, '--source', str(data / 'camvid/val'),
           '--labels', str(data / 'camvid/valannot'), '--out', str(out)]
    if temporal_weights:
        cmd += ['--temporal-weights', temporal_weights]
    if classes != 11 or model in SHIPPED_MODELS:
        cmd += ['--map', 'cityscapes-camvid']
    res = subprocess.run(cmd, env=dict(os.environ, VSDA_DATA_DIR=str(data)),
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f'evaluation of {model} failed: {res.stderr.strip()[-400:]}')
    report = json.loads((out / 'report.json').read_text())
    return {run['strategy']: run for run in report['runs'] if run.get('weather') is None}


def install(path: Path) -> str:
    """Copy a packed file into ``vsda_ros/zoo/`` and write its sha256 into ``shipped.py``."""
    from vsda_ros.zoo import ZOO_DIR
    from vsda_ros.fetch import sha256_of
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
    return next((f for f in SHIPPED_FILES if f.filename == filename), None)
