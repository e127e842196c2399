"""``vsda eval`` on the first frames of the real CamVid clip: report keys, PDA, cost, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vsda_ros.cli import main
from vsda_ros.evaluation.temporal import temporal_consistency


def test_eval_writes_report_with_pda_and_cost(real_data, tmp_path):
    out = tmp_path / 'ev'
    rc = main(
        [
            'eval',
            '--backend',
            'torch',
            '--source',
            str(real_data / 'camvid' / 'val'),
            '--labels',
            str(real_data / 'camvid' / 'valannot'),
            '--max-frames',
            '8',
            '--interval',
            '1..3',
            '--temporal-weights',
            'none',
            '--out',
            str(out),
            '--quiet',
        ]
    )
    assert rc == 0
    r = json.loads((out / 'report.json').read_text())
    assert r['temporal_modules'] == []  # 'none': not even the modules shipped for the model
    assert [run['strategy'] for run in r['runs']] == ['per_frame', 'fusion', 'keyframe']
    for run in r['runs']:
        assert {
            'miou',
            'per_class_iou',
            'tc',
            'latency_ms',
            'fps',
            'frames',
            'dropped',
            'keyframe_ratio',
            'weather',
        } <= set(run)
        assert 40 < run['miou'] < 100 and 0 < run['tc'] <= 100
    assert r['runs'][0]['miou'] == r['runs'][1]['miou']  # untrained fusion == per-frame
    assert set(r['pda']) == {'keyframe', 'warp', 'per_frame'}
    assert list(r['pda']['keyframe']) == ['0', '1', '2', '3']
    assert r['pda']['keyframe']['0'] == pytest.approx(r['pda']['per_frame']['0'])
    c = r['cost']
    assert c['nonkey_gflops'] < c['key_gflops'] and c['key_ms_p50'] > 0
    for name in ('report.md', 'pda.png', 'strategies.png'):
        assert (out / name).stat().st_size > 0


def test_eval_bad_strategy_exits_2(real_data, tmp_path, capsys):
    rc = main(
        [
            'eval',
            '--backend',
            'torch',
            '--source',
            str(real_data / 'camvid' / 'val'),
            '--strategy',
            'magic',
            '--out',
            str(tmp_path),
            '--quiet',
        ]
    )
    assert rc == 2 and 'unknown strategy' in capsys.readouterr().err


def test_temporal_consistency_is_100_for_a_static_scene_and_drops_with_flicker():
    rng = np.random.default_rng(0)
    img = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    pred = np.zeros((60, 80), np.uint8)
    pred[:, 40:] = 1
    assert temporal_consistency([pred, pred], [img, img], 2) == pytest.approx(100.0)
    flicker = pred.copy()
    flicker[:30] = 1 - flicker[:30]
    assert temporal_consistency([pred, flicker], [img, img], 2) < 60


def test_eval_reports_adaptive_keyframes_next_to_fixed_ones(real_data, tmp_path):
    """``--distortion-threshold``: the adaptive run is reported with the fixed-interval run and
    a fixed run at the matched keyframe ratio; a threshold DMNet always exceeds makes every
    frame a keyframe (so the adaptive run equals per-frame), and no DMNet is an error."""
    from vsda_ros.models.checkpoint import save_checkpoint
    from vsda_ros.models.zoo import load_model
    from vsda_ros.temporal.modules import TemporalModules, make_module

    model = load_model('espnet-camvid')
    dmnet = make_module('dmnet', width=8)
    with __import__('torch').no_grad():
        dmnet.b.fill_(10.0)  # D ≈ 1 everywhere: always "distorted"
    mods = TemporalModules(
        dmnet=dmnet, cfnet=make_module('cfnet', out_ch=12, width=8, out_stride=4, guide_ch=12)
    )
    weights = save_checkpoint(model, tmp_path / 'tm.pt', extra=mods.to_extra())
    args = [
        'eval',
        '--backend',
        'torch',
        '--source',
        str(real_data / 'camvid' / 'val'),
        '--labels',
        str(real_data / 'camvid' / 'valannot'),
        '--max-frames',
        '6',
        '--strategy',
        'per_frame,keyframe',
        '--interval',
        '3',
        '--quiet',
    ]
    out = tmp_path / 'ev'
    assert (
        main(
            args
            + [
                '--out',
                str(out),
                '--temporal-weights',
                str(weights),
                '--distortion-threshold',
                '0.5',
            ]
        )
        == 0
    )
    r = json.loads((out / 'report.json').read_text())
    a = r['adaptive']
    assert a['threshold'] == 0.5 and a['fixed']['interval'] == 3
    assert a['adaptive']['keyframe_ratio'] == 1.0 and a['fixed']['keyframe_ratio'] == 2 / 6
    assert a['fixed_matched']['interval'] == 1
    assert a['adaptive']['miou'] == pytest.approx(r['runs'][0]['miou'])
    assert 'Adaptive keyframes' in (out / 'report.md').read_text()


def test_eval_adaptive_keyframes_need_dmnet(real_data, tmp_path, capsys):
    rc = main(
        [
            'eval',
            '--backend',
            'torch',
            '--source',
            str(real_data / 'camvid' / 'val'),
            '--max-frames',
            '3',
            '--strategy',
            'keyframe',
            '--distortion-threshold',
            '0.5',
            '--quiet',
            '--temporal-weights',
            'none',
            '--out',
            str(tmp_path),
        ]
    )
    assert rc == 2 and 'trained DMNet' in capsys.readouterr().err


def test_eval_with_per_frame_listed_after_another_strategy(real_data, tmp_path):
    """Defect (seen in review): ``--strategy fusion,per_frame`` ran fusion's clean run before
    per_frame's and passed a missing agreement reference on (a TypeError); per_frame now runs
    first whatever the order given, and every strategy gets its agreement."""
    out = tmp_path / 'ev'
    rc = main(
        [
            'eval',
            '--backend',
            'torch',
            '--source',
            str(real_data / 'camvid' / 'val'),
            '--max-frames',
            '3',
            '--size',
            '64x48',
            '--strategy',
            'fusion,per_frame',
            '--out',
            str(out),
            '--quiet',
        ]
    )
    assert rc == 0
    runs = json.loads((out / 'report.json').read_text())['runs']
    assert sorted(r['strategy'] for r in runs) == ['fusion', 'per_frame']
    assert all('agreement' in r for r in runs), runs
