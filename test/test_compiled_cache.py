"""The compiled-model cache and export folders are verified when used (issue 24 item 1).

Real damaged files, not mocks: 4 KB of random bytes in the middle of a cached ONNX graph
(inside its weights) and of a cached OpenVINO blob, and a truncated graph. A damaged cache
entry is reported (a WARN naming the file) and rebuilt, and the rebuilt masks equal a fresh
cache's; a damaged user export folder is one clear error naming the file and the command that
rebuilds it; cache folders are created for a shared cache (not 0700). A random ESPNet at 64×48
with the espnet-camvid meta, as in test_backends.py.
"""

from __future__ import annotations

import copy
import logging
import os
import stat

import numpy as np
import pytest
import torch

from vsda_ros.inference import Segmenter, SegmenterConfig
from vsda_ros.inference.backends import installed

COMPILED = [b for b in ('openvino', 'onnxruntime') if installed(b)]
needs_ov = pytest.mark.skipif(not installed('openvino'), reason='openvino not installed')
SIZE = (64, 48)


@pytest.fixture(scope='module')
def tiny():
    """A random ESPNet with the espnet-camvid meta and non-trivial BatchNorm statistics."""
    from vsda_ros.models.zoo import ZOO, build

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build(copy.deepcopy(ZOO['espnet-camvid'].meta)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope='module')
def frames():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(3)]


@pytest.fixture(scope='module')
def pristine(tiny, frames, tmp_path_factory):
    """A cache made once (graphs exported, OpenVINO blobs compiled) and each backend's masks
    from it; tests damage copies of it."""
    root = tmp_path_factory.mktemp('pristine') / 'cache'
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('VSDA_CACHE_DIR', str(root))
        masks = {b: _masks(tiny, frames, b)[1] for b in COMPILED}
    return root, masks


@pytest.fixture
def cache(pristine, tmp_path, monkeypatch):
    """A private copy of the pristine cache as VSDA_CACHE_DIR."""
    import shutil

    shutil.copytree(pristine[0], tmp_path / 'cache')
    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path / 'cache'))
    return tmp_path / 'cache'


def _masks(model, frames, backend, export_dir=None):
    seg = Segmenter(model, SegmenterConfig(input_size=SIZE, backend=backend, export_dir=export_dir))
    return seg, [seg.segment(f).labels for f in frames]


def _scramble(path, n=4096):
    """``n`` random bytes written over the middle of ``path`` (size unchanged)."""
    data = bytearray(path.read_bytes())
    assert len(data) > 2 * n, f'{path} is too small to damage in the middle'
    mid = len(data) // 2
    data[mid : mid + n] = np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _warned_about(caplog, path) -> bool:
    return any(str(path) in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)


@pytest.mark.parametrize('backend', COMPILED)
@pytest.mark.parametrize('damage', ['scramble', 'truncate'])
def test_damaged_cached_graph_warns_and_rebuilds(
    tiny, frames, pristine, cache, caplog, backend, damage
):
    seg, fresh = _masks(tiny, frames, backend)
    assert all((a == b).all() for a, b in zip(fresh, pristine[1][backend], strict=False))
    graph = seg.export_info.path / 'full.onnx'
    if damage == 'scramble':
        _scramble(graph)
    else:
        graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        again, masks = _masks(tiny, frames, backend)
    assert _warned_about(caplog, graph), [r.getMessage() for r in caplog.records]
    assert all((a == b).all() for a, b in zip(fresh, masks, strict=False))
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # rebuilt once: the next start is quiet
        _masks(tiny, frames, backend)
    assert not _warned_about(caplog, graph)


@needs_ov
def test_damaged_openvino_blob_warns_and_recompiles(tiny, frames, pristine, cache, caplog):
    fresh = pristine[1]['openvino']
    blobs = sorted(cache.rglob('*.blob'), key=lambda p: p.stat().st_size)
    assert blobs, 'no compiled OpenVINO blob was cached'
    blob = blobs[-1]
    _scramble(blob)
    with caplog.at_level(logging.WARNING):
        _, masks = _masks(tiny, frames, 'openvino')
    assert _warned_about(caplog, blob), [r.getMessage() for r in caplog.records]
    assert all((a == b).all() for a, b in zip(fresh, masks, strict=False))


@pytest.mark.parametrize('backend', COMPILED)
def test_damaged_user_export_is_one_clear_error(tiny, frames, cache, tmp_path, backend):
    """Also: the compiled model of a user's folder is cached, not written into the folder."""
    from vsda_ros.inference.export import export_onnx

    folder = tmp_path / 'my_export'
    export_onnx(tiny, SIZE, folder)
    listing = sorted(folder.rglob('*'))
    _masks(tiny, frames[:1], backend, folder)  # intact: runs
    assert sorted(folder.rglob('*')) == listing
    graph = folder / 'full.onnx'
    _scramble(graph)
    before = graph.read_bytes()
    with pytest.raises(RuntimeError) as err:
        _masks(tiny, frames[:1], backend, folder)
    text = str(err.value)
    assert str(graph) in text and 'vsda export' in text and '\n' not in text, text
    assert graph.read_bytes() == before  # a user's export is never rewritten


@pytest.mark.skipif(not COMPILED, reason='neither openvino nor onnxruntime')
def test_cache_folders_are_not_private(tiny, frames, tmp_path, monkeypatch):
    cache = tmp_path / 'cache'
    monkeypatch.setenv('VSDA_CACHE_DIR', str(cache))
    old = os.umask(0o022)
    try:
        seg, _ = _masks(tiny, frames[:1], COMPILED[0])
    finally:
        os.umask(old)
    entry = seg.export_info.path
    for folder in (cache, cache / 'compiled', entry):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
    for f in entry.iterdir():
        if f.is_file():
            assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
