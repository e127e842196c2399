"""Loading files never runs code, and every model/checkpoint/state load failure is one clear line.

An "evil" file is a pickle whose unpickling would create a marker file (``Path.touch``): a file
that ran code leaves the marker behind. Every load must refuse such a file with a one-line
:class:`~vsda_ros.models.safe_load.ModelLoadError` that names it — and never repeat torch's
advice to retry with ``weights_only=False``.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from uda_synthetic import random_espnet_checkpoint, write_sequence
from vsda_ros.models.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from vsda_ros.models.safe_load import ModelLoadError
from vsda_ros.models.zoo import ZOO, build, load_model

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


class _Evil:
    """Unpickling this creates ``marker`` (a stand-in for running any command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _evil_file(path: Path, payload: dict | None = None) -> Path:
    marker = path.with_name(path.name + '.pwned')
    obj = dict(payload or {})
    obj['x'] = _Evil(marker)
    torch.save(obj, str(path))
    return marker


def _assert_clean(err: BaseException | str, path: Path) -> None:
    text = str(err)
    assert '\n' not in text.strip(), f'not one line: {text!r}'
    assert str(path) in text, f'does not name {path}: {text!r}'
    assert 'weights_only' not in text and 'Traceback' not in text, text


def _small_model():
    torch.manual_seed(0)
    return build(ZOO['espnet-camvid'].meta).eval()


def test_no_unsafe_loads_in_the_sources():
    """Every torch file is read through safe_torch_load; no pickle, no allow_pickle."""
    unsafe = (
        'torch.load(',
        'weights_only=False',
        'pickle.load',
        'allow_pickle=True',
        'torch.jit.load(',
    )
    offenders = []
    for folder in ('vsda_ros', 'benchmarks'):
        for path in sorted((ROOT / folder).rglob('*.py')):
            if path.name == 'safe_load.py':
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split('#')[0]
                if any(u in code for u in unsafe) and '``' not in code:
                    offenders.append(f'{path.relative_to(ROOT)}:{n}: {line.strip()}')
    assert not offenders, '\n'.join(offenders)


# -- checkpoints and weights ----------------------------------------------------------------------


def test_evil_checkpoint_is_refused_without_running_code(tmp_path):
    path = tmp_path / 'evil.pt'
    marker = _evil_file(path, {'format': FORMAT})
    with pytest.raises(ModelLoadError, match='refusing to load') as err:
        load_model(str(path))
    _assert_clean(err.value, path)
    assert 'pickled Python objects' in str(err.value)
    assert not marker.exists()


def test_evil_zoo_weights_file_is_refused(tmp_path):
    path = tmp_path / 'w.pth'
    marker = _evil_file(path)
    with pytest.raises(ModelLoadError, match='refusing to load') as err:
        load_model('espnet-camvid', weights=path)
    _assert_clean(err.value, path)
    assert not marker.exists()


@pytest.mark.parametrize(
    'content, what',
    [(b'', 'empty'), (b'hello world, not a torch file', 'not a PyTorch'), (None, 'truncated')],
)
def test_corrupt_or_truncated_checkpoint(tmp_path, content, what):
    path = tmp_path / 'bad.pt'
    if content is None:
        good = save_checkpoint(_small_model(), tmp_path / 'good.pt').read_bytes()
        content = good[: len(good) // 2]
    path.write_bytes(content)
    with pytest.raises(ModelLoadError) as err:
        load_checkpoint(path)
    _assert_clean(err.value, path)
    assert 'cannot read' in str(err.value)


def test_not_a_vsda_checkpoint(tmp_path):
    path = tmp_path / 'plain.pt'
    torch.save({'a': torch.zeros(1)}, str(path))
    with pytest.raises(ModelLoadError, match='not a vsda_ros checkpoint') as err:
        load_checkpoint(path)
    _assert_clean(err.value, path)


def _ckpt_with_meta(tmp_path: Path, edit) -> Path:
    path = save_checkpoint(_small_model(), tmp_path / 'm.pt')
    ckpt = torch.load(str(path), weights_only=True)
    edit(ckpt)
    torch.save(ckpt, str(path))
    return path


@pytest.mark.parametrize(
    'edit, expected',
    [
        (
            lambda c: [c['meta'].pop('name'), c['meta'].pop('arch')],
            "missing meta field(s): 'name', 'arch'",
        ),
        (lambda c: c['meta'].update(colour='red'), "unknown meta field(s): 'colour'"),
        (lambda c: c['meta'].update(classes='road'), "meta field 'classes'"),
        (lambda c: c['meta'].update(native_size=[480]), "meta field 'native_size'"),
        (lambda c: c['meta'].update(arch='resnet'), "unknown architecture 'resnet'"),
        (lambda c: c['meta'].update(arch_args={'num_outputs': 12, 'wings': 2}), 'arch_args'),
        (lambda c: c.update(meta=[1, 2]), 'meta is not a dict'),
        (lambda c: c.pop('state_dict'), "no 'state_dict'"),
    ],
)
def test_bad_meta_is_one_clear_line(tmp_path, edit, expected):
    path = _ckpt_with_meta(tmp_path, edit)
    with pytest.raises(ModelLoadError) as err:
        load_model(str(path))
    _assert_clean(err.value, path)
    assert expected in str(err.value)


def test_state_dict_that_does_not_fit_the_architecture(tmp_path):
    def edit(c):
        sd = c['state_dict']
        sd.pop(next(iter(sd)))
        sd['extra.weight'] = torch.zeros(1)
        key = next(k for k, v in sd.items() if v.ndim == 4)
        sd[key] = torch.zeros(1, 1, 1, 1)

    path = _ckpt_with_meta(tmp_path, edit)
    with pytest.raises(ModelLoadError) as err:
        load_model(str(path))
    _assert_clean(err.value, path)
    msg = str(err.value)
    assert '1 missing key' in msg and "1 unexpected key ('extra.weight')" in msg
    assert '1 shape mismatch' in msg


def test_zoo_weights_that_do_not_fit(tmp_path):
    path = tmp_path / 'w.pth'
    torch.save({'conv.weight': torch.zeros(2, 3, 3, 3)}, str(path))
    with pytest.raises(ModelLoadError, match='do not fit') as err:
        load_model('espnet-camvid', weights=path)
    _assert_clean(err.value, path)


def test_bad_temporal_weights_file(tmp_path):
    from vsda_ros.temporal.modules import load_temporal_modules

    model = save_checkpoint(_small_model(), tmp_path / 'm.pt')
    evil = tmp_path / 'evil_temporal.pt'
    marker = _evil_file(evil, {'format': FORMAT})
    with pytest.raises(ModelLoadError, match='refusing to load') as err:
        load_temporal_modules(str(model), str(evil))
    _assert_clean(err.value, evil)
    assert not marker.exists()

    bad = save_checkpoint(
        _small_model(),
        tmp_path / 'bad_temporal.pt',
        extra={
            'temporal': {
                'fusion': {'args': {'num_classes': 11}, 'state_dict': {'w': torch.zeros(1)}}
            }
        },
    )
    with pytest.raises(ModelLoadError, match='fusion') as err:
        load_temporal_modules(str(model), str(bad))
    _assert_clean(err.value, bad)

    odd = save_checkpoint(
        _small_model(),
        tmp_path / 'odd_temporal.pt',
        extra={'temporal': {'warp': {'args': {}, 'state_dict': {}}}},
    )
    with pytest.raises(ModelLoadError, match="unknown temporal module 'warp'") as err:
        load_temporal_modules(str(model), str(odd))
    _assert_clean(err.value, odd)


def test_cli_segment_with_an_evil_checkpoint_exits_2_with_one_line(tmp_path):
    frames = tmp_path / 'frames'
    frames.mkdir()
    cv2.imwrite(str(frames / 'f_00001.png'), np.zeros((48, 64, 3), np.uint8))
    model = tmp_path / 'evil.pt'
    marker = _evil_file(model, {'format': FORMAT})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'vsda_ros',
            'segment',
            '--backend',
            'torch',
            '--model',
            str(model),
            '--input',
            str(frames),
            '--out',
            str(tmp_path / 'out'),
            '--quiet',
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('vsda segment: error: ')
    _assert_clean(lines[0], model)
    assert not marker.exists()


def test_cli_segment_with_missing_meta_exits_2(tmp_path, capsys):
    from vsda_ros import cli

    frames = tmp_path / 'frames'
    frames.mkdir()
    cv2.imwrite(str(frames / 'f_00001.png'), np.zeros((48, 64, 3), np.uint8))
    path = _ckpt_with_meta(tmp_path, lambda c: c['meta'].pop('arch'))
    rc = cli.main(
        [
            'segment',
            '--backend',
            'torch',
            '--model',
            str(path),
            '--input',
            str(frames),
            '--out',
            str(tmp_path / 'out'),
            '--quiet',
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "missing meta field(s): 'arch'" in err
    _assert_clean(err, path)


# -- adaptation resume state ----------------------------------------------------------------------


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp('sec')
    write_sequence(root / 'target', 6, size=(96, 72), step=2, prefix='tgt', seed=11)
    return {'root': root, 'model': str(random_espnet_checkpoint(root / 'base.pt'))}


def _adapt_cfg(synthetic, out: Path, iterations: int):
    from vsda_ros.adaptation.config import AdaptConfig

    r = synthetic['root']
    return AdaptConfig(
        recipe='tps',
        model=synthetic['model'],
        target=[str(r / 'target')],
        out=str(out),
        iterations=iterations,
        batch=1,
        crop=(64, 48),
        height=72,
        threads=1,
        seed=4,
        save_every=1,
        confidence=0.0,
        clip_frames=2,
        lr=1e-3,
        eval_every=0,
    )


def test_evil_resume_state_is_refused_without_running_code(synthetic, tmp_path):
    from vsda_ros.adaptation.train import train

    out = tmp_path / 'a.pt'
    state = tmp_path / 'a.pt.state.pt'
    marker = _evil_file(state, {'recipe': 'tps', 'iteration': 0})
    with pytest.raises(ModelLoadError, match='refusing to load') as err:
        train(_adapt_cfg(synthetic, out, 2), progress=False)
    _assert_clean(err.value, state)
    assert not marker.exists()


def test_resume_state_of_another_shape_is_a_clear_error(synthetic, tmp_path):
    from vsda_ros.adaptation.train import train

    out = tmp_path / 'a.pt'
    state = tmp_path / 'a.pt.state.pt'
    torch.save({'recipe': 'tps', 'iteration': 1}, str(state))
    with pytest.raises(ModelLoadError, match='resume state') as err:
        train(_adapt_cfg(synthetic, out, 2), progress=False)
    _assert_clean(err.value, state)


def test_resume_round_trip_uses_plain_tensors(synthetic, tmp_path, capsys):
    from vsda_ros.adaptation.train import train

    out = tmp_path / 'r.pt'
    first = train(_adapt_cfg(synthetic, out, 1), progress=False)
    state = torch.load(str(out) + '.state.pt', map_location='cpu', weights_only=True)
    assert state['iteration'] == 1 and state['recipe'] == 'tps'
    capsys.readouterr()
    second = train(_adapt_cfg(synthetic, out, 2), progress=False)
    assert 'resuming tps from iteration 1' in capsys.readouterr().out
    assert len(second['losses']) == 2 and second['losses'][0] == first['losses'][0]
