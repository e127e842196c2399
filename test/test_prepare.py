"""``vsda prepare``: builds the cache entry and the accuracy evidence ``backend: auto`` (the
default of the node and the commands) decides on, and prints the choice; a later start of the
default pipeline loads that entry instead of exporting again."""

from __future__ import annotations

import json

import pytest

from vsda_ros.cli import main
from vsda_ros.inference.backends import installed

pytestmark = pytest.mark.skipif(
    not (installed('openvino') or installed('onnxruntime')), reason='no compiled backend'
)


def test_prepare_builds_what_auto_then_loads(real_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path))
    monkeypatch.setenv('VSDA_DATA_DIR', str(real_data))
    assert main(['prepare', '--model', 'espnet-camvid', '--size', '96x64']) == 0
    out = capsys.readouterr().out
    assert out.startswith('espnet-camvid 96x64: backend ') and 'auto:' in out
    sidecars = list((tmp_path / 'compiled').glob('*_96x64/vsda_export.json'))
    assert len(sidecars) == 1
    evidence = json.loads(sidecars[0].read_text())['evidence']
    assert evidence and all(r['checks'] for r in evidence.values())

    from vsda_ros.pipeline import PipelineConfig, build_pipeline

    def no_export(*a, **k):
        raise AssertionError('the default pipeline exported again after vsda prepare')

    monkeypatch.setattr('vsda_ros.inference.export.export_onnx', no_export)
    pipe = build_pipeline(
        PipelineConfig(
            model='espnet-camvid',
            input_size=(96, 64),
            backend='auto',
            precision='auto',
            download=False,
        )
    )
    assert pipe.segmenter.backend_reason in out


def test_prepare_rejects_a_bad_size(capsys):
    assert main(['prepare', '--size', '12xq']) == 2
    assert 'size' in capsys.readouterr().err


def test_tools_prepare_what_their_node_will_load(monkeypatch):
    """vsda bench node / eval --live build the node's cache entry before starting it (a first
    export outlasts their start deadline); nothing for backend torch; the node's defaults
    (backend auto) fill what the parameters leave out."""
    from vsda_ros.ros.tools.launcher import prepare_compiled

    seen = []
    monkeypatch.setattr('vsda_ros.pipeline.build_pipeline', seen.append)
    prepare_compiled({'model': 'espnet-camvid', 'backend': 'torch'})
    assert seen == []
    prepare_compiled({'model': 'espnetv2-cityscapes', 'input_size': '1024x512'})
    (cfg,) = seen
    assert (cfg.model, cfg.input_size, cfg.backend, cfg.precision) == (
        'espnetv2-cityscapes',
        (1024, 512),
        'auto',
        'auto',
    )
    assert cfg.temporal_weights == 'none'
