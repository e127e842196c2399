"""vsda export: graphs + model.pt + sidecar, int8 calibrated on unlabelled frames, the
accuracy check recorded, an export folder used as a model name, precision auto. A random
ESPNet at 64×48 on synthetic frames (everything under tmp_path)."""

from __future__ import annotations

import copy
import json

import cv2
import numpy as np
import pytest
import torch

from vsda_ros.inference.backends import installed

pytestmark = pytest.mark.skipif(
    not (installed('openvino') and installed('onnxruntime')),
    reason='needs openvino and onnxruntime',
)
SIZE = (64, 48)


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """A checkpoint of a random ESPNet and a folder of 6 synthetic frames."""
    from vsda_ros.models.checkpoint import save_checkpoint
    from vsda_ros.models.zoo import ZOO, build

    torch.set_num_threads(2)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp('export')
    model = build(copy.deepcopy(ZOO['espnet-camvid'].meta)).eval()
    ckpt = save_checkpoint(model, root / 'tiny.pt')
    frames = root / 'frames'
    frames.mkdir()
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (80, 60))
    for i in range(6):
        cv2.imwrite(str(frames / f'f{i:02d}.png'), np.roll(base, 3 * i, axis=1))
    return root, ckpt, frames


@pytest.fixture(scope='module')
def exported(work):
    from vsda_ros.apps.export import ExportConfig, run_export

    root, ckpt, frames = work
    out = root / 'exp'
    lines: list[str] = []
    run_export(
        ExportConfig(
            model=str(ckpt),
            out=out,
            size=SIZE,
            formats=('onnx', 'openvino'),
            precisions=('fp32', 'bf16', 'int8'),
            calibrate=str(frames),
            calibrate_frames=4,
            validate=str(frames),
            progress=False,
        ),
        echo=lines.append,
    )
    return out, lines


def test_export_folder_contents(exported):
    out, lines = exported
    side = json.loads((out / 'vsda_export.json').read_text())
    assert side['size'] == list(SIZE) and len(side['state_sha256']) == 64
    assert side['meta']['classes'] and side['meta']['palette'] and side['meta']['mean']
    assert side['weights_sha256'] is None or len(side['weights_sha256']) == 64
    for fmt, precision in (
        ('onnx', 'fp32'),
        ('onnx', 'int8'),
        ('openvino', 'fp32'),
        ('openvino', 'int8'),
    ):
        assert set(side['graphs'][fmt][precision]) == {'features', 'head', 'full'}
        for f in side['graphs'][fmt][precision].values():
            assert (out / f).is_file()
    assert (out / 'model.pt').is_file()
    # the check is printed and recorded for every backend/precision made
    for key in (
        'openvino/fp32',
        'openvino/bf16',
        'openvino/int8',
        'onnxruntime/fp32',
        'onnxruntime/int8',
    ):
        rec = side['validation'][key]
        assert 0 <= rec['argmax_agreement'] <= 100 and rec['max_logit_error'] >= 0
        assert any(key.replace('/', ' ') in ' '.join(line.split()) for line in lines), key
    assert side['validation']['openvino/fp32']['argmax_agreement'] > 99.0
    # no labels: lower precisions cannot be validated, so they are not within the limits
    assert side['validation']['openvino/bf16']['within_limits'] is False


def test_export_folder_loads_like_a_model_name(exported, work, tmp_path):
    from vsda_ros.apps.segment import SegmentConfig, run_segment

    out, _ = exported
    _, _, frames = work
    s = run_segment(
        SegmentConfig(
            model=str(out),
            input=frames,
            out=tmp_path / 'seg',
            size=SIZE,
            backend='openvino',
            write_overlay=False,
            progress=False,
            max_frames=2,
        )
    )
    assert (s['backend'], s['precision'], s['frames']) == ('openvino', 'fp32', 2)


def test_precision_auto_uses_the_record(exported):
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.inference.export_info import ExportInfo
    from vsda_ros.models.zoo import load_model, resolve_model

    out, _ = exported
    src, export_dir = resolve_model(str(out))
    model = load_model(src, progress=False)
    seg = Segmenter(
        model,
        SegmenterConfig(
            input_size=SIZE, backend='openvino', precision='auto', export_dir=export_dir
        ),
    )
    assert seg.precision == 'fp32'  # bf16/int8 unvalidated (no labels)
    info = ExportInfo.load(out)
    info.validation['openvino/int8']['within_limits'] = True
    info.save()
    seg = Segmenter(
        model,
        SegmenterConfig(
            input_size=SIZE, backend='openvino', precision='auto', export_dir=export_dir
        ),
    )
    assert seg.precision == 'int8' and 'validated' in seg.backend_reason
    x = seg.preprocess(np.zeros((60, 80, 3), np.uint8))
    assert seg.logits(x).shape == (1, model.meta.num_classes, SIZE[1], SIZE[0])


def test_int8_needs_calibration_frames(work, tmp_path):
    from vsda_ros.apps.export import ExportConfig, run_export

    _, ckpt, _ = work
    with pytest.raises(ValueError, match='--calibrate'):
        run_export(
            ExportConfig(
                model=str(ckpt), out=tmp_path / 'x', size=SIZE, precisions=('fp32', 'int8')
            ),
            echo=lambda s: None,
        )
    with pytest.raises(ValueError, match='format'):
        run_export(
            ExportConfig(model=str(ckpt), out=tmp_path / 'x', size=SIZE, formats=('tflite',)),
            echo=lambda s: None,
        )


def test_real_espnet_export_agrees(real_data, tmp_path):
    """espnet-camvid exported at 240×180, checked on 3 real frames: fp32 ≥ 99.9 % agreement."""
    from vsda_ros.apps.export import ExportConfig, run_export

    v = run_export(
        ExportConfig(
            model='espnet-camvid',
            out=tmp_path / 'e',
            size=(240, 180),
            validate=str(real_data / 'camvid' / 'val'),
            labels=str(real_data / 'camvid' / 'valannot'),
            validate_frames=3,
            progress=False,
        ),
        echo=lambda s: None,
    )
    for key in ('openvino/fp32', 'onnxruntime/fp32'):
        assert v[key]['argmax_agreement'] >= 99.9 and v[key]['within_limits'], v[key]
        assert abs(v[key]['miou'] - v[key]['ref_miou']) <= 0.05
