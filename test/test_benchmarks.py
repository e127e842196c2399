"""The benchmark scripts run end to end on a few real CamVid frames."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / 'benchmarks'


def _load(name: str = 'propagation_ablation'):
    spec = importlib.util.spec_from_file_location(name, BENCH / f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_propagation_ablation_on_real_frames(real_data, tmp_path, capsys):
    out = tmp_path / 'abl.json'
    assert (
        _load().main(
            [
                '--source',
                str(real_data / 'camvid' / 'val'),
                '--labels',
                str(real_data / 'camvid' / 'valannot'),
                '--size',
                '240x180',
                '--max-frames',
                '5',
                '--max-distance',
                '2',
                '--oracle',
                '--out',
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert set(res['miou']) == {'per_frame', 'chain', 'compose', 'skip', 'oracle_s4', 'oracle_s8'}
    for curve in res['miou'].values():
        assert set(curve) == {'1', '2'} and all(0 < v <= 100 for v in curve.values())
    # one warping step of the same features: chain and compose are the same computation at d=1
    assert res['miou']['chain']['1'] == pytest.approx(res['miou']['compose']['1'], abs=1e-6)
    assert 'car' in res['per_class_iou_at_max_distance']['chain']
    assert 'mIoU by distance' in capsys.readouterr().out


def test_propagation_ablation_refuses_bad_arguments(real_data):
    with pytest.raises(SystemExit):
        _load().main(
            [
                '--source',
                str(real_data / 'camvid' / 'val'),
                '--labels',
                str(real_data / 'camvid' / 'valannot'),
                '--max-distance',
                '0',
            ]
        )


def test_fusion_upper_bound_on_real_frames(real_data, tmp_path):
    out = tmp_path / 'fub.json'
    assert (
        _load('fusion_upper_bound').main(
            [
                '--source',
                str(real_data / 'camvid' / 'val'),
                '--labels',
                str(real_data / 'camvid' / 'valannot'),
                '--size',
                '240x180',
                '--max-frames',
                '4',
                '--scales',
                '0.25',
                '--blends',
                '0,0.5',
                '--out',
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert len(res['runs']) == 2 * 3 and res['per_frame']['network_ms_p50'] > 0
    for r in res['runs']:
        assert r['block_ms_p50'] > 0 and 0 < r['miou'] <= 100 and 0 < r['tc'] <= 100
        if r['blend'] == 0:  # no blending is exactly per_frame, whatever the alignment
            assert r['miou'] == pytest.approx(res['per_frame']['miou'], abs=1e-9)
            assert r['tc'] == pytest.approx(res['per_frame']['tc'], abs=1e-9)
    with pytest.raises(SystemExit):
        _load('fusion_upper_bound').main(['--source', 'x', '--labels', 'y', '--scales', 'a'])


def test_alignment_vs_flow_figures():
    """Zero offsets score exactly as no alignment; offsets equal to the flow have error 0."""
    import torch

    from vsda_ros.temporal.modules import make_module

    alignment_vs_flow = _load('fusion_upper_bound').alignment_vs_flow
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(1, 5, 32, 48, generator=g) for _ in range(3)]
    flow = torch.zeros(1, 2, 32, 48)
    flow[:, 0], flow[:, 1] = 4.0, -2.0  # Δx, Δy at full size = (1, −0.5) block px at 1/4
    flows = [None, flow, flow]
    block = make_module('fusion', num_classes=5, scale=0.25).eval()

    def run():
        offsets = [[] for _ in logits]
        aligned = [None] + [
            block(logits[t], logits[t - 1], return_aligned=True, offsets=offsets[t])[1]
            for t in (1, 2)
        ]
        return alignment_vs_flow(block, logits, aligned, offsets, flows)

    r = run()
    assert r['epe'] == r['epe_none'] == pytest.approx(float(np.hypot(1.0, 0.5)))
    assert r['agree'] == r['agree_none']
    with torch.no_grad():  # centre tap (channels 8, 9 = dy, dx) follows it
        block.offsets[0].bias[8], block.offsets[0].bias[9] = -0.5, 1.0
    assert run()['epe'] == pytest.approx(0.0, abs=1e-6)


def test_fusion_upper_bound_with_a_trained_block(real_data, tmp_path):
    """--temporal-weights adds the block as trained and its learned alignment at each blend;
    a pass-through block (as trained) is per_frame exactly."""
    import torch

    from vsda_ros.models.checkpoint import save_checkpoint
    from vsda_ros.models.zoo import load_model
    from vsda_ros.temporal.modules import TemporalModules, make_module

    block = make_module('fusion', num_classes=11, scale=0.25)
    with torch.no_grad():
        block.offsets[0].weight.normal_(0, 0.1)  # a non-trivial alignment
    weights = save_checkpoint(
        load_model('espnet-camvid'),
        tmp_path / 'fb.pt',
        extra=TemporalModules(fusion=block).to_extra(),
    )
    out = tmp_path / 'fub.json'
    assert (
        _load('fusion_upper_bound').main(
            [
                '--source',
                str(real_data / 'camvid' / 'val'),
                '--labels',
                str(real_data / 'camvid' / 'valannot'),
                '--size',
                '240x180',
                '--max-frames',
                '4',
                '--scales',
                '0.25',
                '--blends',
                '0,0.5',
                '--temporal-weights',
                str(weights),
                '--out',
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    trained = [r for r in res['runs'] if r['align'] in ('block', 'learned')]
    assert [(r['align'], r['blend']) for r in trained] == [
        ('block', None),
        ('learned', 0.0),
        ('learned', 0.5),
    ]
    for r in trained[:2]:
        assert r['miou'] == pytest.approx(res['per_frame']['miou'], abs=1e-9)
        assert r['tc'] == pytest.approx(res['per_frame']['tc'], abs=1e-9)
    vs_flow = res['runs'][-1]
    assert vs_flow['align'] == 'learned_vs_flow'
    assert vs_flow['epe'] != vs_flow['epe_none'] and 0 <= vs_flow['agree'] <= 100
    with pytest.raises(SystemExit):  # a checkpoint without a fusion block
        _load('fusion_upper_bound').main(
            [
                '--source',
                str(real_data / 'camvid' / 'val'),
                '--labels',
                str(real_data / 'camvid' / 'valannot'),
                '--max-frames',
                '2',
                '--temporal-weights',
                str(save_checkpoint(load_model('espnet-camvid'), tmp_path / 'plain.pt')),
            ]
        )
