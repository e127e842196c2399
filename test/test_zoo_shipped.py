"""The checkpoints shipped in vsda_ros/zoo/: present, sha256-exact, small, loaded by default, and
accurate on a few real dev frames (floors well below the model cards' figures, docs/models.md)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vsda_ros.models import shipped
from vsda_ros.models.safe_load import ModelLoadError
from vsda_ros.models.shipped import (
    SHIPPED_FILES,
    SHIPPED_MODELS,
    SHIPPED_TEMPORAL,
    ShippedFile,
    compact_state,
    verified_path,
)
from vsda_ros.temporal.modules import load_temporal_modules


def test_every_shipped_file_matches_its_sha256_and_size_limits():
    total = 0
    for entry in SHIPPED_FILES:
        data = entry.path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256, entry.filename
        assert len(data) <= 5_000_000, f'{entry.filename}: {len(data)} bytes > 5 MB'
        total += len(data)
    assert total <= 10_000_000, f'shipped files add up to {total} bytes > 10 MB'
    assert set(SHIPPED_MODELS) == {'espnetv2-camvid-tsl'}
    assert set(SHIPPED_TEMPORAL) == {'espnet-camvid', 'espnetv2-cityscapes'}


def test_a_replaced_shipped_file_is_refused(tmp_path, monkeypatch):
    entry = SHIPPED_FILES[0]
    original = entry.path.read_bytes()
    monkeypatch.setattr(shipped, 'ZOO_DIR', tmp_path)
    fake = ShippedFile(entry.name, entry.kind, entry.filename, entry.sha256, entry.base, '')
    with pytest.raises(FileNotFoundError, match='make models'):
        verified_path(fake)
    (tmp_path / entry.filename).write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ModelLoadError, match='corrupt or was replaced'):
        verified_path(fake)


def test_compact_state_halves_weights_and_keeps_batchnorm_statistics():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    net[1].running_var.fill_(1e-6)  # below float16's normal range
    state = compact_state(net.state_dict())
    assert state['0.weight'].dtype == torch.float16
    assert state['1.running_var'].dtype == torch.float32
    assert state['1.num_batches_tracked'].dtype == torch.int64
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    other.load_state_dict(state)
    assert other[0].weight.dtype == torch.float32
    assert torch.allclose(other[0].weight, net[0].weight, atol=1e-3)
    assert torch.equal(other[1].running_var, net[1].running_var)


def test_published_models_use_their_shipped_temporal_modules_by_default():
    for name in SHIPPED_TEMPORAL:
        assert set(load_temporal_modules(name).loaded()) == {'fusion', 'dmnet', 'cfnet'}
        assert load_temporal_modules(name, 'none').loaded() == []
    assert set(load_temporal_modules('espnetv2-camvid-tsl').loaded()) == {
        'fusion',
        'dmnet',
        'cfnet',
    }
    assert load_temporal_modules('espnet-cityscapes').loaded() == []


def _miou(preds, labels, mapping, num_classes=11, void=11) -> float:
    from vsda_ros.evaluation.metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes, ignore_index=void)
    for pred, label in zip(preds, labels, strict=False):
        cm.update(mapping[pred] if mapping is not None else pred, label)
    return cm.miou() * 100


@pytest.fixture(scope='module')
def dev_clip(real_data):
    from vsda_ros.data.sources import read_label

    paths = sorted((real_data / 'camvid' / 'val').glob('*.png'))[:12]
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    labels = [read_label(real_data / 'camvid' / 'valannot' / p.name) for p in paths]
    return images, labels


@pytest.mark.data
@pytest.mark.parametrize(
    'model, strategy, floor',
    [
        ('espnetv2-camvid-tsl', 'per_frame', 50.0),
        ('espnetv2-camvid-tsl', 'fusion', 50.0),
        ('espnet-camvid', 'keyframe', 55.0),
        ('espnet-camvid', 'fusion', 55.0),
        ('espnetv2-cityscapes', 'keyframe', 40.0),
    ],
)
def test_shipped_models_reach_an_accuracy_floor_on_dev_frames(dev_clip, model, strategy, floor):
    """12 consecutive CamVid val frames at 480×360 (the dev clip; never trained on)."""
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.models.zoo import CITYSCAPES_TO_CAMVID, load_model
    from vsda_ros.temporal.factory import build_strategy
    from vsda_ros.temporal.strategy import StrategyConfig

    torch.set_num_threads(2)
    net = load_model(model, download=False, progress=False)
    seg = Segmenter(net, SegmenterConfig(input_size=(480, 360)))
    modules = load_temporal_modules(model)
    assert modules.loaded(), 'no shipped modules loaded'
    strat = build_strategy(strategy, seg, StrategyConfig(keyframe_interval=5), modules)
    images, labels = dev_clip
    preds = [strat.step(img, i / 15).labels for i, img in enumerate(images)]
    mapping = np.asarray(CITYSCAPES_TO_CAMVID, np.uint8) if net.meta.num_classes == 19 else None
    assert _miou(preds, labels, mapping) >= floor


def test_vsda_models_lists_the_zoo_with_sha256_status(real_data):
    res = subprocess.run(
        [sys.executable, '-m', 'vsda_ros', 'models'], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    for name in ('espnet-camvid', 'espnetv2-cityscapes', 'espnetv2-camvid-tsl'):
        assert name in res.stdout
    assert 'BAD' not in res.stdout and 'missing' not in res.stdout
    assert 'dmnet,cfnet' in res.stdout or 'fusion,dmnet,cfnet' in res.stdout


def test_shipped_fusion_blocks_are_the_image_guided_block():
    """The image-guided block (recurrent, a gate weight per frame with frame cues and a pixel
    mask, no deformable steps) for all three models; the ESPNetv2 ones are the espnet-camvid
    block fine-tuned on their own scores (19 classes, same shapes, other weights)."""
    from vsda_ros.temporal.guided_fusion import GuidedFusionBlock

    blocks = {
        name: load_temporal_modules(name).fusion
        for name in ('espnet-camvid', 'espnetv2-cityscapes', 'espnetv2-camvid-tsl')
    }
    for name, block in blocks.items():
        assert isinstance(block, GuidedFusionBlock), name
        assert block.recurrent and block.frame_gate and block.num_deform == 0
        assert block.frame_cues and block.pixel_mask
    ref = blocks['espnet-camvid'].state_dict()
    for name in ('espnetv2-cityscapes', 'espnetv2-camvid-tsl'):
        assert blocks[name].num_classes == 19
        own = blocks[name].state_dict()
        assert own.keys() == ref.keys() and all(own[k].shape == ref[k].shape for k in ref)
        assert not all(torch.equal(ref[k], own[k]) for k in ref)


def _zoo_build():
    """``tools/zoo_build.py``, the repository's maintainer pipeline (not an installed module)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / 'tools' / 'zoo_build.py'
    spec = importlib.util.spec_from_file_location('zoo_build', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules['zoo_build'] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_zoo_build_steps_come_after_what_they_need():
    zb = _zoo_build()
    order = zb.with_dependencies(['espnetv2-cityscapes.fusion_cues'])
    assert order == [
        'espnet-camvid.fusion_guided1',
        'espnet-camvid.fusion_guided1b',
        'espnet-camvid.fusion_cues',
        'espnetv2-cityscapes.fusion_cues',
    ]
    for keys in zb.PACKS.values():
        assert all(k in zb.STEPS for k in keys)
    assert zb.REPO == Path(__file__).resolve().parents[1]
    assert zb.build_parser().parse_args(['--install', '--only', 'x']).install


def test_zoo_build_is_not_in_the_installed_package():
    """The maintainer pipeline lives in tools/ (``make models``), not in vsda_ros."""
    import importlib.util

    assert importlib.util.find_spec('vsda_ros.models.zoo_build') is None
    package = Path(shipped.__file__).parents[1]
    assert not any(p.name == 'zoo_build.py' for p in package.rglob('*.py'))
