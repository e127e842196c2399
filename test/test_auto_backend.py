"""``backend: auto`` (issue 26 item 1): the fastest installed backend/precision whose accuracy
evidence, recorded in the export sidecar when the graphs are built, passes the limits; torch
fp32 otherwise. Live = offline holds with auto on both sides (two independent processes give
bit-identical masks on real frames).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from vsda_ros.inference import Segmenter, SegmenterConfig
from vsda_ros.inference.backends import installed

needs_compiled = pytest.mark.skipif(
    not (installed('openvino') or installed('onnxruntime')), reason='no compiled backend'
)
SIZE = (64, 48)


@pytest.fixture(scope='module')
def tiny():
    from vsda_ros.models.zoo import ZOO, build

    torch.set_num_threads(2)
    torch.manual_seed(0)
    return build(copy.deepcopy(ZOO['espnet-camvid'].meta)).eval()


def _auto(model) -> Segmenter:
    return Segmenter(model, SegmenterConfig(input_size=SIZE, backend='auto', precision='auto'))


def _sidecar(seg_or_entry) -> tuple[dict, object]:
    from vsda_ros.inference.export import SIDECAR

    path = seg_or_entry / SIDECAR
    return json.loads(path.read_text()), path


@needs_compiled
def test_failing_evidence_makes_auto_pick_torch(tiny, tmp_path, monkeypatch):
    from vsda_ros.inference.evidence import runtime_key
    from vsda_ros.inference.export import cache_entry

    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path))
    first = _auto(tiny)
    entry = cache_entry(tiny, SIZE)
    side, path = _sidecar(entry)
    record = side['evidence'][runtime_key(torch.device('cpu'))]
    assert record['checks'] and record['frames']  # recorded when the graphs were built
    assert first.backend_reason.startswith('auto:')
    from vsda_ros.inference.backends import candidates

    for b, p in candidates(torch.device('cpu')):  # every candidate's check now fails
        record['checks'].setdefault(f'{b}/{p}', {'check': 'forced'})['within_limits'] = False
    path.write_text(json.dumps(side))
    seg = _auto(tiny)
    assert (seg.backend, seg.precision) == ('torch', 'fp32')
    assert 'no compiled candidate has a passing accuracy record' in seg.backend_reason
    key = next(iter(record['checks']))  # one passing record decides again
    record['checks'][key]['within_limits'] = True
    path.write_text(json.dumps(side))
    seg = _auto(tiny)
    assert f'{seg.backend}/{seg.precision}' == key and key in seg.backend_reason


def test_explicit_torch_is_one_parameter_away(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path))
    seg = Segmenter(tiny, SegmenterConfig(input_size=SIZE, backend='torch', precision='auto'))
    assert (seg.backend, seg.precision) == ('torch', 'fp32') and seg.model is tiny
    assert not (tmp_path / 'compiled').exists()  # torch never exports


_RUN = """
import json, sys, numpy as np, torch
torch.set_num_threads(2)
from vsda_ros import PipelineConfig, build_pipeline
from vsda_ros.data.sources import FrameSource
pipe = build_pipeline(PipelineConfig(model='espnet-camvid', input_size=(240, 180),
                                     backend='auto', precision='auto', download=False,
                                     progress=False))
frames = list(FrameSource(sys.argv[1]))[:3]
seg = pipe.strategy('per_frame')
labels = [seg.step(f.image, stamp=i / 15).labels for i, f in enumerate(frames)]
np.savez(sys.argv[2], *labels)
print(json.dumps([pipe.segmenter.backend, pipe.segmenter.precision,
                  pipe.segmenter.backend_reason]))
"""


@needs_compiled
def test_auto_live_equals_offline_bit_for_bit(real_data, tmp_path):
    """Two independent processes (the first builds the cache and its evidence, the second
    loads it) choose the same backend and give identical masks on real frames."""
    import os

    env = {**os.environ, 'VSDA_CACHE_DIR': str(tmp_path / 'cache'), 'VSDA_DATA_DIR': str(real_data)}
    out = []
    for i in range(2):
        r = subprocess.run(
            [
                sys.executable,
                '-c',
                _RUN,
                str(real_data / 'camvid' / 'val'),
                str(tmp_path / f'{i}.npz'),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert out[0] == out[1], out
    assert out[0][0] != 'torch', out[0]  # real weights pass the fp32 evidence here
    a, b = np.load(tmp_path / '0.npz'), np.load(tmp_path / '1.npz')
    assert len(a.files) == 3 and all(np.array_equal(a[k], b[k]) for k in a.files)
