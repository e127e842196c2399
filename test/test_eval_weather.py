"""``vsda eval`` under weather, without labels, from a bag, and live through the node."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vsda_ros.cli import main


def _eval(real_data, out, *extra, labels=True):
    args = [
        'eval',
        '--backend',
        'torch',
        '--source',
        str(real_data / 'camvid' / 'val'),
        '--max-frames',
        '6',
        '--out',
        str(out),
        '--quiet',
        *extra,
    ]
    if labels:
        args += ['--labels', str(real_data / 'camvid' / 'valannot')]
    assert main(args) == 0
    return json.loads((out / 'report.json').read_text())


def test_weather_runs_report_and_plots(real_data, tmp_path):
    r = _eval(
        real_data,
        tmp_path,
        '--strategy',
        'per_frame,keyframe',
        '--weather',
        'fog:0.9',
        '--weather',
        'night:0.9',
    )
    runs = {(run['weather'], run['strategy']): run for run in r['runs']}
    assert list(runs) == [
        (w, s) for w in (None, 'fog:0.9', 'night:0.9') for s in ('per_frame', 'keyframe')
    ]
    clean = runs[(None, 'per_frame')]
    assert clean['agreement'] == pytest.approx(100.0) and clean['intensity'] == 0.0
    for (w, s), run in runs.items():
        assert {
            'miou',
            'per_class_iou',
            'tc',
            'agreement',
            'latency_ms',
            'fps',
            'frames',
            'dropped',
            'weather_kind',
            'intensity',
        } <= set(run)
        assert set(run['latency_ms']) == {'p50', 'p95', 'p99'}
        if w is not None:  # heavy fog and deep night must cost accuracy and agreement
            assert run['miou'] < runs[(None, s)]['miou'] - 1.0
            assert run['agreement'] < 99.0
    assert r['miou'] == clean['miou'] and r['dropped'] == 0 and r['frames'] == 6
    for name in (
        'per_class_iou.png',
        'miou_vs_intensity.png',
        'latency_hist.png',
        'samples.png',
        'strategies.png',
        'report.md',
    ):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert '## Robustness' in (tmp_path / 'report.md').read_text()


def test_without_labels_reports_agreement_only(real_data, tmp_path):
    r = _eval(real_data, tmp_path, '--strategy', 'keyframe', '--weather', 'rain:0.6', labels=False)
    assert r['labelled_frames'] == 0 and 'miou' not in r['runs'][0]
    # keyframe on clean frames vs per-frame: close but not the same (propagated frames)
    assert 50 < r['runs'][0]['agreement'] < 100
    assert r['runs'][1]['agreement'] < r['runs'][0]['agreement']


def test_weather_seed_is_deterministic(real_data, tmp_path):
    a = _eval(real_data, tmp_path / 'a', '--strategy', 'per_frame', '--weather', 'snow:0.6')
    b = _eval(real_data, tmp_path / 'b', '--strategy', 'per_frame', '--weather', 'snow:0.6')
    assert a['runs'][1]['miou'] == b['runs'][1]['miou']


def test_bad_weather_exits_2(real_data, tmp_path, capsys):
    rc = main(
        [
            'eval',
            '--backend',
            'torch',
            '--source',
            str(real_data / 'camvid' / 'val'),
            '--weather',
            'hail:0.5',
            '--out',
            str(tmp_path),
            '--quiet',
        ]
    )
    assert rc == 2 and 'hail' in capsys.readouterr().err


def test_eval_from_bag_matches_folder(real_data, tmp_path):
    """A bag made from the frames and labels scores exactly like the folder it came from."""
    from vsda_ros.data.sources import FrameSource, read_label

    frames = list(FrameSource(real_data / 'camvid' / 'val'))[:5]
    labels = [read_label(real_data / 'camvid' / 'valannot' / f.name) for f in frames]
    from vsda_ros.data.bag_writer import write_bag

    bag = tmp_path / 'clip'
    write_bag(bag, zip(frames, labels, strict=False), storage='mcap')
    folder = _eval(real_data, tmp_path / 'f', '--strategy', 'per_frame', '--max-frames', '5')
    assert (
        main(
            [
                'eval',
                '--backend',
                'torch',
                '--source',
                str(bag),
                '--labels',
                '/camera/labels',
                '--strategy',
                'per_frame',
                '--out',
                str(tmp_path / 'b'),
                '--quiet',
            ]
        )
        == 0
    )
    from_bag = json.loads((tmp_path / 'b' / 'report.json').read_text())
    assert from_bag['frames'] == 5 and from_bag['labelled_frames'] == 5
    assert from_bag['miou'] == folder['miou']
    assert from_bag['per_class_iou'] == folder['per_class_iou']


def test_live_per_frame_masks_identical_to_offline(real_data):
    """Through segmentation_node over real DDS (loopback), at a rate the model keeps up with,
    every frame gets its mask and the masks equal the offline strategy's."""
    from vsda_ros.apps.eval import EvalConfig
    from vsda_ros.evaluation.temporal import evaluate_strategy, load_clip
    from vsda_ros.inference import Segmenter
    from vsda_ros.models.zoo import load_model
    from vsda_ros.ros.tools.live_eval import LiveRunner
    from vsda_ros.temporal.factory import build_strategy

    model = load_model('espnet-camvid')
    clip = load_clip(
        str(real_data / 'camvid' / 'val'),
        str(real_data / 'camvid' / 'valannot'),
        model.meta,
        max_frames=5,
    )
    offline = evaluate_strategy(build_strategy('per_frame', Segmenter(model)), clip, False)
    cfg = EvalConfig(model='espnet-camvid', source='', out=None, rate=3.0)
    live = LiveRunner(cfg, 5).run('per_frame', clip, progress=False)
    assert live['dropped'] == 0 and live['frames'] == 5
    assert all(
        np.array_equal(a, b)
        for a, b in zip(live['predictions'], offline['predictions'], strict=False)
    )
    assert live['miou'] == offline['miou'] and live['tc'] == offline['tc']
    assert live['latency_ms']['p50'] > 0
    assert (live['backend'], live['precision']) == ('torch', 'fp32')  # as the node reports


def test_live_fusion_with_the_shipped_guided_block_equals_offline(real_data):
    """The node's default fusion block (image-guided, recurrent: each mask depends on every
    frame before it) gives the offline strategy's masks over real DDS."""
    from vsda_ros.apps.eval import EvalConfig
    from vsda_ros.evaluation.temporal import evaluate_strategy, load_clip
    from vsda_ros.inference import Segmenter
    from vsda_ros.models.zoo import load_model
    from vsda_ros.ros.tools.live_eval import LiveRunner
    from vsda_ros.temporal.factory import build_strategy
    from vsda_ros.temporal.modules import load_temporal_modules

    model = load_model('espnet-camvid')
    clip = load_clip(
        str(real_data / 'camvid' / 'val'),
        str(real_data / 'camvid' / 'valannot'),
        model.meta,
        max_frames=5,
    )
    modules = load_temporal_modules('espnet-camvid')
    assert getattr(modules.fusion, 'uses_images', False)
    offline = evaluate_strategy(
        build_strategy('fusion', Segmenter(model), modules=modules), clip, False
    )
    cfg = EvalConfig(model='espnet-camvid', source='', out=None, rate=3.0)
    live = LiveRunner(cfg, 5).run('fusion', clip, progress=False)
    assert live['dropped'] == 0 and live['frames'] == 5
    assert all(
        np.array_equal(a, b)
        for a, b in zip(live['predictions'], offline['predictions'], strict=False)
    )


def test_live_node_gets_the_backend_and_precision(monkeypatch):
    """--live --backend/--precision reach the node: the parameters the runner starts
    segmentation_node with carry them (the node is not started here)."""
    from contextlib import contextmanager

    from vsda_ros.apps.eval import EvalConfig
    from vsda_ros.ros.tools import live_eval

    given: list[dict] = []

    @contextmanager
    def fake_node_process(params, stdout=None):  # noqa: ARG001
        given.append(params)
        raise RuntimeError('not started')
        yield

    monkeypatch.setattr(live_eval, 'node_process', fake_node_process)
    cfg = EvalConfig(
        model='espnet-camvid', source='', out=None, rate=3.0, backend='openvino', precision='bf16'
    )
    with pytest.raises(RuntimeError, match='not started'):
        live_eval.LiveRunner(cfg, 5).run('keyframe', clip=None, progress=False)
    assert len(given) == 1
    assert given[0]['backend'] == 'openvino' and given[0]['precision'] == 'bf16'
    assert given[0]['strategy'] == 'keyframe' and given[0]['model'] == 'espnet-camvid'


def test_live_node_runs_on_openvino(real_data, tmp_path, monkeypatch):
    """Over real DDS, 4 frames: a node started for --backend openvino reports openvino and its
    fp32 masks agree with the torch strategy's offline."""
    from vsda_ros.apps.eval import EvalConfig
    from vsda_ros.evaluation.temporal import evaluate_strategy, load_clip
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.inference.backends import installed
    from vsda_ros.models.zoo import load_model
    from vsda_ros.ros.tools.live_eval import LiveRunner
    from vsda_ros.temporal.factory import build_strategy

    if not installed('openvino'):
        pytest.skip('openvino not installed')
    monkeypatch.setenv('VSDA_CACHE_DIR', str(tmp_path))  # the node exports its graph here
    model = load_model('espnet-camvid')
    clip = load_clip(str(real_data / 'camvid' / 'val'), None, model.meta, max_frames=4)
    seg = Segmenter(model, SegmenterConfig(input_size=(240, 180)))
    offline = evaluate_strategy(build_strategy('per_frame', seg), clip, False)
    cfg = EvalConfig(
        model='espnet-camvid',
        source='',
        out=None,
        rate=3.0,
        size='240x180',
        backend='openvino',
        precision='fp32',
    )
    live = LiveRunner(cfg, 5).run('per_frame', clip, progress=False)
    assert (live['backend'], live['precision']) == ('openvino', 'fp32')
    assert live['dropped'] == 0 and len(live['predictions']) == 4
    agree = [
        (a == b).mean() for a, b in zip(live['predictions'], offline['predictions'], strict=False)
    ]
    assert min(agree) >= 0.999, agree


def test_live_attach_to_a_running_node(real_data, tmp_path):
    """--attach: frames go to a node that was started separately (as with ros2 launch)."""
    from vsda_ros.ros.tools.launcher import node_process

    with node_process(
        {'model': 'espnet-camvid', 'publish_overlay': False, 'backend': 'torch'}
    ) as proc:
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
                '4',
                '--strategy',
                'per_frame',
                '--live',
                '--attach',
                '/',
                '--rate',
                '3',
                '--weather',
                'noise:0.5',
                '--out',
                str(tmp_path),
                '--quiet',
            ]
        )
        assert proc.poll() is None
    assert rc == 0
    r = json.loads((tmp_path / 'report.json').read_text())
    assert r['mode'] == 'live' and [run['frames'] for run in r['runs']] == [4, 4]
    assert r['runs'][0]['dropped'] == 0 and r['runs'][0]['miou'] > 40
    assert (r['backend'], r['precision']) == ('torch', 'fp32')  # what the node reports
