"""Inference backends: one model contract (features / head / fused logits) on torch, OpenVINO
and ONNX Runtime; every strategy runs on each; auto resolution; lazy imports.

Unit tests use a randomly initialised ESPNet at 64×48 (exported once per module into
tmp_path); one real-weights check per backend at 240×180 on real CamVid frames. No timing
asserts (speed is measured by ``vsda bench model``).
"""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch

from vsda_ros.inference import Segmenter, SegmenterConfig
from vsda_ros.inference.backends import (
    BackendUnavailable,
    CompiledModel,
    installed,
    resolve_backend,
)
from vsda_ros.temporal.factory import build_strategy
from vsda_ros.temporal.strategy import StrategyConfig

COMPILED = [b for b in ('openvino', 'onnxruntime') if installed(b)]
needs_compiled = pytest.mark.skipif(not COMPILED, reason='neither openvino nor onnxruntime')
SIZE = (64, 48)


@pytest.fixture(scope='module')
def tiny():
    """A random ESPNet with the espnet-camvid meta (no weights needed)."""
    from vsda_ros.models.zoo import ZOO, build

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build(copy.deepcopy(ZOO['espnet-camvid'].meta)).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope='module')
def exported(tiny, tmp_path_factory):
    from vsda_ros.inference.export import export_onnx

    return export_onnx(tiny, SIZE, tmp_path_factory.mktemp('export'))


@pytest.fixture(scope='module')
def frames():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    return [np.roll(base, 2 * i, axis=1) for i in range(4)]


def _seg(model, exported, backend, precision='fp32'):
    return Segmenter(
        model,
        SegmenterConfig(
            input_size=SIZE, backend=backend, precision=precision, export_dir=exported.path
        ),
    )


def test_resolve_backend_rules():
    cpu = torch.device('cpu')
    assert resolve_backend('torch', 'fp32', cpu)[:2] == ('torch', 'fp32')
    # auto never picks a compiled backend or a lower precision without a passing record
    assert resolve_backend('auto', 'auto', cpu)[:2] == ('torch', 'fp32')
    if installed('openvino'):
        from vsda_ros.inference.backends import native_bf16

        record = {
            'openvino/bf16': {'within_limits': True},
            'openvino/fp32': {'within_limits': True},
        }
        assert resolve_backend('auto', 'auto', cpu, record)[:2] == (
            'openvino',
            'bf16' if native_bf16() else 'fp32',
        )
        assert resolve_backend('openvino', 'auto', cpu, record)[1] == (
            'bf16' if native_bf16() else 'fp32'
        )
        assert (
            resolve_backend('openvino', 'auto', cpu, {'openvino/bf16': {'within_limits': False}})[1]
            == 'fp32'
        )
    with pytest.raises(ValueError, match='unknown backend'):
        resolve_backend('tensorflow', 'fp32', cpu)
    with pytest.raises(ValueError, match='unknown precision'):
        resolve_backend('torch', 'fp8', cpu)
    with pytest.raises(BackendUnavailable, match='fp32 only'):
        resolve_backend('torch', 'bf16', cpu)
    if installed('onnxruntime'):
        with pytest.raises(BackendUnavailable, match='bf16'):
            resolve_backend('onnxruntime', 'bf16', cpu)


def test_package_imports_without_backends():
    """The core imports with openvino/onnxruntime/onnx hidden (lazy imports)."""
    code = (
        'import sys\n'
        'for m in ("openvino", "onnxruntime", "onnx", "onnxscript"): sys.modules[m] = None\n'
        'import vsda_ros.inference, vsda_ros.inference.backends, vsda_ros.inference.export\n'
        'import vsda_ros.apps.bench, vsda_ros.temporal.keyframe\n'
        'from vsda_ros.inference.backends import installed\n'
        'print("ok")\n'
    )
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'ok' in r.stdout, r.stderr


def test_torch_backend_is_the_model_itself(tiny):
    seg = Segmenter(tiny, SegmenterConfig(input_size=SIZE))
    assert seg.model is tiny and (seg.backend, seg.precision) == ('torch', 'fp32')


@needs_compiled
@pytest.mark.parametrize('backend', COMPILED)
def test_contract_matches_torch(tiny, exported, backend):
    seg = _seg(tiny, exported, backend)
    assert isinstance(seg.model, CompiledModel) and seg.backend == backend
    x = torch.rand(1, 3, SIZE[1], SIZE[0], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        f_ref = tiny.forward_features(x)
        f = seg.model.forward_features(x)
        assert f.shape == f_ref.shape and f.dtype == torch.float32
        assert (f - f_ref).abs().max() < 1e-3
        h_ref = tiny.logits_from_features(f_ref, x.shape[-2:])
        h = seg.model.logits_from_features(f_ref, x.shape[-2:])
        assert h.shape == h_ref.shape and (h - h_ref).abs().max() < 1e-3
        y_ref, y = tiny(x), seg.logits(x)
        assert y.shape == y_ref.shape and (y - y_ref).abs().max() < 1e-3
    with pytest.raises(ValueError, match='exported for'):
        seg.model.forward(torch.zeros(1, 3, 32, 32))


@needs_compiled
@pytest.mark.parametrize('backend', COMPILED)
@pytest.mark.parametrize('strategy', ['per_frame', 'fusion', 'keyframe'])
def test_strategies_run_on_backend(tiny, exported, frames, backend, strategy):
    """Every strategy runs unchanged on a compiled backend and agrees with torch."""
    cfg = StrategyConfig(keyframe_interval=2)
    ref = build_strategy(strategy, Segmenter(tiny, SegmenterConfig(input_size=SIZE)), cfg)
    run = build_strategy(
        strategy, _seg(tiny, exported, backend), StrategyConfig(keyframe_interval=2)
    )
    for i, img in enumerate(frames):
        a, b = ref.step(img, stamp=i / 15), run.step(img, stamp=i / 15)
        assert b.labels.shape == img.shape[:2] and a.keyframe == b.keyframe
        assert (a.labels == b.labels).mean() > 0.99


@pytest.mark.skipif(not installed('openvino'), reason='openvino not installed')
def test_openvino_bf16_runs(tiny, exported, frames):
    seg = _seg(tiny, exported, 'openvino', 'bf16')
    assert seg.precision == 'bf16'
    assert seg.segment(frames[0]).labels.shape == frames[0].shape[:2]


@needs_compiled
def test_cache_export_when_no_folder(tiny, tmp_path, monkeypatch):
    """Without an export folder the graphs are exported into VSDA_CACHE_DIR once."""
    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path))
    seg = Segmenter(tiny, SegmenterConfig(input_size=(48, 32), backend=COMPILED[0]))
    assert seg.export_info.path.parent == tmp_path / 'compiled'
    mtime = (seg.export_info.path / 'full.onnx').stat().st_mtime_ns
    again = Segmenter(tiny, SegmenterConfig(input_size=(48, 32), backend=COMPILED[0]))
    assert (again.export_info.path / 'full.onnx').stat().st_mtime_ns == mtime
    with pytest.raises(FileNotFoundError, match='int8'):
        Segmenter(tiny, SegmenterConfig(input_size=(48, 32), backend=COMPILED[0], precision='int8'))


@pytest.mark.skipif(
    True,
    reason='no GPU on these machines: the CUDA / TensorRT execution '
    'providers (device cuda, backend onnxruntime) are exercised only where '
    'onnxruntime-gpu and a GPU are present',
)
def test_cuda_providers():  # pragma: no cover
    from vsda_ros.inference.backends import ort_providers

    assert ort_providers(torch.device('cuda'))[0] in (
        'TensorrtExecutionProvider',
        'CUDAExecutionProvider',
    )


@needs_compiled
@pytest.mark.parametrize('backend', COMPILED)
def test_real_weights_fp32_agreement(real_data, backend, tmp_path, monkeypatch):
    """espnet-camvid at 240×180 on 3 real frames: fp32 argmax agreement ≥ 99.9 % with torch."""
    from vsda_ros.data.sources import FrameSource
    from vsda_ros.models.zoo import load_model

    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path))
    torch.set_num_threads(2)
    model = load_model('espnet-camvid', download=False, progress=False)
    ref = Segmenter(model, SegmenterConfig(input_size=(240, 180)))
    seg = Segmenter(model, SegmenterConfig(input_size=(240, 180), backend=backend))
    images = [f.image for f in list(FrameSource(real_data / 'camvid' / 'val'))[:3]]
    agree = [(ref.segment(im).labels == seg.segment(im).labels).mean() for im in images]
    assert min(agree) >= 0.999, agree
