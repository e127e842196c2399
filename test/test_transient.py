"""Transient degradations (``vsda_ros.weather.transient``) and ``vsda eval --transient``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from vsda_ros.weather import (
    TRANSIENT_KINDS,
    TRANSIENT_ONLY_KINDS,
    WEATHER_KINDS,
    TransientSequence,
    TransientSpec,
    WeatherSpec,
    apply_transient,
    apply_weather,
    parse_transient,
    parse_transient_list,
)


def scene(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A textured RGB frame: bright sky on top, mid-grey checkerboard below, some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.float32([90, 95, 85]) + 70 * ((yy // 6 + xx // 6) % 2)[..., None]
    img[: h // 4] = np.float32([150, 190, 235])
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def camvid_frame(real_data) -> np.ndarray:
    from vsda_ros.data.sources import read_rgb

    return read_rgb(sorted((real_data / 'camvid' / 'val').glob('*.png'))[0])


# -- parsing -------------------------------------------------------------------------------------


def test_parse_good_inputs_and_text_form():
    spec = parse_transient('rain:0.6:0.3')
    assert spec == TransientSpec('rain', 0.6, 0.3)
    assert str(spec) == 'transient:rain:0.6:0.3' and spec.label == 'rain:0.6 transient p0.3'
    assert parse_transient(str(spec)) == spec  # the str form parses back
    assert parse_transient(' WIPER : 1 : 1 ') == TransientSpec('wiper', 1.0, 1.0)
    assert parse_transient('jpeg:0:0.5').intensity == 0.0
    assert [s.kind for s in parse_transient_list('all:0.6:0.3')] == list(WEATHER_KINDS)
    assert {(s.intensity, s.prob) for s in parse_transient_list('all:0.6:0.3')} == {(0.6, 0.3)}
    assert parse_transient_list('exposure:0.5:0.2,jpeg:0.9:0.1') == [
        TransientSpec('exposure', 0.5, 0.2),
        TransientSpec('jpeg', 0.9, 0.1),
    ]
    assert TRANSIENT_KINDS == WEATHER_KINDS + ('wiper', 'exposure', 'jpeg')
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.prob = 0.5


@pytest.mark.parametrize(
    'text, message',
    [
        ('hail:0.5:0.2', "unknown transient kind 'hail'"),
        ('rain:1.5:0.2', 'intensity 1.5 is outside [0, 1]'),
        ('rain:-0.1:0.2', 'outside [0, 1]'),
        ('rain:0.5:0', 'probability 0 is outside (0, 1]'),
        ('rain:0.5:1.2', 'probability 1.2 is outside (0, 1]'),
        ('rain:abc:0.2', 'not a number'),
        ('rain:0.5:nan', 'outside (0, 1]'),
        ('rain', 'expected KIND:INTENSITY:PROB'),
        ('rain:0.6', 'expected KIND:INTENSITY:PROB'),
        ('rain:0.6:0.3:0.1', 'expected KIND:INTENSITY:PROB'),
        ('rain::0.3', 'expected KIND:INTENSITY:PROB'),
        ('', 'expected KIND:INTENSITY:PROB'),
    ],
)
def test_parse_bad_inputs_one_line_errors(text, message):
    for parse in (parse_transient, parse_transient_list):
        with pytest.raises(ValueError) as err:
            parse(text)
        assert message in str(err.value) and '\n' not in str(err.value)


def test_unknown_kind_lists_the_known_ones_and_all_needs_the_list_parser():
    with pytest.raises(ValueError) as err:
        parse_transient('hail:0.5:0.2')
    assert all(k in str(err.value) for k in TRANSIENT_KINDS) and 'all' in str(err.value)
    with pytest.raises(ValueError, match='parse_transient_list'):
        parse_transient('all:0.6:0.3')
    with pytest.raises(ValueError, match=r'outside \(0, 1\] in .all:0.6:2.'):
        parse_transient_list('all:0.6:2')
    with pytest.raises(ValueError, match='unknown transient kind'):
        TransientSpec('hail', 0.5, 0.5)
    with pytest.raises(ValueError, match='must be a number'):
        TransientSpec('rain', True, 0.5)


# -- the sequence --------------------------------------------------------------------------------


def run(
    spec: TransientSpec, frames: list[np.ndarray], seed: int = 0
) -> tuple[list[np.ndarray], list[bool]]:
    seq = TransientSequence(spec, seed=seed)
    return [seq(f) for f in frames], seq.hits


def test_same_seed_same_hits_and_bytes_different_kind_different_pattern():
    frames = [scene(24, 32, i) for i in range(60)]
    spec = TransientSpec('rain', 0.6, 0.3)
    out_a, hits_a = run(spec, frames)
    out_b, hits_b = run(spec, frames)
    assert hits_a == hits_b and any(hits_a) and not all(hits_a)
    assert all(np.array_equal(a, b) for a, b in zip(out_a, out_b, strict=False))
    _, hits_fog = run(TransientSpec('fog', 0.6, 0.3), frames)
    _, hits_seed = run(spec, frames, seed=1)
    assert hits_fog != hits_a and hits_seed != hits_a
    # the hit pattern depends on (seed, kind) only: any intensity hits the same frames, and a
    # lower probability hits a subset of them
    _, hits_strong = run(TransientSpec('rain', 0.9, 0.3), frames)
    _, hits_rare = run(TransientSpec('rain', 0.6, 0.1), frames)
    assert hits_strong == hits_a
    assert all(a for a, r in zip(hits_a, hits_rare, strict=False) if r)
    assert sum(hits_rare) < sum(hits_a)


def test_reset_replays_the_sequence():
    frames = [scene(24, 32, i) for i in range(12)]
    seq = TransientSequence(TransientSpec('jpeg', 0.8, 0.5), seed=3)
    first = [seq(f) for f in frames]
    hits = list(seq.hits)
    seq.reset()
    assert seq.frame_index == 0 and seq.hits == []
    again = [seq(f) for f in frames]
    assert seq.hits == hits
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=False))


@pytest.mark.parametrize('prob', [0.1, 0.3, 0.7])
def test_hit_rate_is_near_prob(prob):
    frame = scene(8, 8)
    seq = TransientSequence(TransientSpec('noise', 0.5, prob), seed=0)
    for _ in range(400):
        seq(frame)
    rate = np.mean(seq.hits)
    assert abs(rate - prob) < 4 * np.sqrt(prob * (1 - prob) / 400), rate  # 4 standard errors


def test_prob_one_hits_every_frame():
    _, hits = run(TransientSpec('exposure', 0.5, 1.0), [scene(8, 8)] * 50)
    assert all(hits)


@pytest.mark.parametrize('kind', TRANSIENT_KINDS)
def test_unhit_frames_are_bit_identical_and_hit_frames_change(kind):
    frames = [scene(32, 48, i) for i in range(30)]
    before = [f.copy() for f in frames]
    out, hits = run(TransientSpec(kind, 0.8, 0.4), frames, seed=2)
    assert any(hits) and not all(hits)
    for f, b, o, hit in zip(frames, before, out, hits, strict=False):
        assert np.array_equal(f, b)  # the input is never modified
        assert o.dtype == np.uint8 and o.shape == f.shape and o is not f
        if hit:
            assert not np.array_equal(o, f)
        else:
            assert np.array_equal(o, f)


def test_bad_frames_and_specs_raise():
    with pytest.raises(ValueError, match='TransientSpec'):
        TransientSequence(WeatherSpec('rain', 0.5))
    with pytest.raises(ValueError, match='seed'):
        TransientSequence(TransientSpec('rain', 0.5, 0.5), seed=-1)
    seq = TransientSequence(TransientSpec('rain', 0.5, 0.5))
    with pytest.raises(ValueError, match='uint8'):
        seq(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match='H×W×3'):
        seq(np.zeros((8, 8), np.uint8))
    assert seq.frame_index == 0  # a rejected frame is not counted


# -- the effects ---------------------------------------------------------------------------------


@pytest.mark.parametrize('kind', TRANSIENT_KINDS)
def test_intensity_zero_is_an_exact_copy(kind):
    img = scene()
    out = apply_transient(img, kind, 0.0, seed=5)
    assert np.array_equal(out, img) and out is not img
    _, hits = run(TransientSpec(kind, 0.0, 1.0), [img])
    assert hits == [True]


@pytest.mark.parametrize('kind', WEATHER_KINDS)
def test_weather_kinds_are_the_single_frame_weather(kind):
    img = scene()
    assert np.array_equal(
        apply_transient(img, kind, 0.6, seed=4), apply_weather(img, WeatherSpec(kind, 0.6), seed=4)
    )


def _changed(a: np.ndarray, b: np.ndarray, by: int = 20) -> float:
    """Fraction of pixels where some channel moved by more than ``by``."""
    return float((np.abs(a.astype(np.int16) - b).max(2) > by).mean())


@pytest.mark.parametrize('kind', TRANSIENT_ONLY_KINDS)
def test_new_effects_change_a_real_frame(real_data, kind):
    img = camvid_frame(real_data)
    for x in (0.6, 1.0):
        for seed in range(4):
            out = apply_transient(img, kind, x, seed)
            assert out.dtype == np.uint8 and out.shape == img.shape
            assert _changed(out, img) > 0.005, (kind, x, seed)
            assert np.array_equal(out, apply_transient(img, kind, x, seed))


def test_new_effects_grow_with_intensity():
    img = scene(96, 128)
    for kind in TRANSIENT_ONLY_KINDS:
        means = [
            np.mean(
                [
                    np.abs(apply_transient(img, kind, x, s).astype(np.int16) - img).mean()
                    for s in range(6)
                ]
            )
            for x in (0.2, 0.6, 1.0)
        ]
        assert means[0] < means[1] < means[2], (kind, means)


def test_exposure_jumps_both_ways():
    from vsda_ros.weather.fields import luminance, to_linear

    img = scene(48, 64)
    base = luminance(to_linear(img)).mean()
    ratios = [
        luminance(to_linear(apply_transient(img, 'exposure', 0.6, s))).mean() / base
        for s in range(12)
    ]
    assert any(r > 1.5 for r in ratios) and any(r < 0.6 for r in ratios)
    assert all(r > 1.5 or r < 0.6 for r in ratios)


def test_jpeg_quality_and_damaged_rows():
    from vsda_ros.weather.effects import MACROBLOCK, jpeg_quality

    assert jpeg_quality(0.0) == 95 and jpeg_quality(1.0) == 2
    assert [jpeg_quality(x) for x in (0.3, 0.6)] == sorted(
        [jpeg_quality(x) for x in (0.3, 0.6)], reverse=True
    )
    img = scene(96, 128)
    # at 1.0 some macroblock rows are replaced wholesale: some 16-row band far off the input
    out = apply_transient(img, 'jpeg', 1.0, seed=0)
    band_err = [
        np.abs(out[y : y + MACROBLOCK].astype(np.int16) - img[y : y + MACROBLOCK]).mean()
        for y in range(0, 96, MACROBLOCK)
    ]
    low = apply_transient(img, 'jpeg', 0.3, seed=0)
    low_err = [
        np.abs(low[y : y + MACROBLOCK].astype(np.int16) - img[y : y + MACROBLOCK]).mean()
        for y in range(0, 96, MACROBLOCK)
    ]
    assert max(band_err) > 2 * max(low_err)


def test_preview_grid_shows_the_transient_kinds(tmp_path):
    import cv2

    from vsda_ros.weather.preview import render_grid

    out = render_grid(
        scene(48, 64),
        tmp_path / 'grid.png',
        intensities=(0.5, 1.0),
        kinds=TRANSIENT_ONLY_KINDS,
        cell_width=64,
    )
    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape[0] > 3 * 48


# -- the report ----------------------------------------------------------------------------------


def _clip(labels: list, images: list):
    from vsda_ros.evaluation.temporal import Clip

    return Clip(images, labels, 10.0, 3, ['a', 'b', 'c'], ignore_index=3)


def test_hit_split_scores_hit_and_unhit_frames_apart():
    from vsda_ros.evaluation.report import hit_split

    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 3, (8, 8)).astype(np.uint8) for _ in range(5)]
    hits = [False, True, False, True, False]
    preds = [lab if not h else (lab + 1) % 3 for lab, h in zip(labels, hits, strict=False)]
    images = [scene(8, 8)] * 5
    out = hit_split(preds, _clip(labels, images), hits)
    assert out == {'hit_frames': 2, 'hit_labelled_frames': 2, 'miou_hit': 0.0, 'miou_unhit': 100.0}
    sparse = [labels[0], None, None, None, labels[4]]  # no labelled frame was hit
    out = hit_split(preds, _clip(sparse, images), hits)
    assert out['hit_frames'] == 2 and out['hit_labelled_frames'] == 0
    assert out['miou_hit'] is None and out['miou_unhit'] == 100.0
    out = hit_split(preds, _clip([None] * 5, images), hits)
    assert out == {'hit_frames': 2, 'hit_labelled_frames': 0}  # no labels: no mIoU keys
    with pytest.raises(ValueError):
        hit_split(preds[:3], _clip(labels, images), hits)


def _row(weather, strategy, miou, **kw):
    return {
        'weather': weather,
        'strategy': strategy,
        'miou': miou,
        'agreement': 90.0,
        'tc': 80.0,
        'mean_ms': 10.0,
        'fps': 10.0,
        'keyframe_ratio': 1.0,
        'dropped': 0,
        'frames': 6,
        'latency_ms': {'p50': 10.0, 'p95': 11.0, 'p99': 12.0},
        **kw,
    }


def test_rows_tables_and_plots_label_transient_runs(tmp_path):
    from vsda_ros.evaluation.plots import _intensity_lines, plot_report
    from vsda_ros.evaluation.report import markdown, run_label, run_row

    res = {'strategy': 'per_frame', 'miou': 40.0}
    row = run_row(
        dict(res),
        TransientSpec('rain', 0.6, 0.3),
        [10.0],
        True,
        {'hit_frames': 2, 'hit_labelled_frames': 2, 'miou_hit': 30.0, 'miou_unhit': 45.0},
    )
    assert row['weather'] == 'transient:rain:0.6:0.3' and row['weather_mode'] == 'transient'
    assert row['transient_prob'] == 0.3 and row['weather_kind'] == 'rain'
    assert run_label(row) == 'rain:0.6 transient p0.3'
    assert run_row(dict(res), None, [1.0])['weather_mode'] == 'clean'
    assert run_row(dict(res), WeatherSpec('fog', 0.6), [1.0], True)['weather_mode'] == 'temporal'
    assert run_row(dict(res), WeatherSpec('fog', 0.6), [1.0], False)['weather_mode'] == 'iid'
    assert 'transient_prob' not in run_row(dict(res), WeatherSpec('fog', 0.6), [1.0])

    trans = dict(
        weather_kind='rain',
        intensity=0.6,
        weather_mode='transient',
        transient_prob=0.3,
        hit_frames=2,
        hit_labelled_frames=2,
        miou_hit=30.0,
        miou_unhit=45.0,
    )
    runs = [
        _row(None, 'per_frame', 50.0, weather_kind=None, intensity=0.0, weather_mode='clean'),
        _row(
            'rain:0.6',
            'per_frame',
            35.0,
            weather_kind='rain',
            intensity=0.6,
            weather_mode='temporal',
        ),
        _row('transient:rain:0.6:0.3', 'per_frame', 40.0, **trans),
        _row(
            'transient:wiper:0.8:0.2',
            'per_frame',
            47.0,
            **{**trans, 'weather_kind': 'wiper', 'intensity': 0.8, 'transient_prob': 0.2},
        ),
    ]
    report = {
        'model': 'm',
        'source': 's',
        'frames': 6,
        'labelled_frames': 6,
        'mode': 'offline',
        'temporal_modules': [],
        'keyframe_interval': 5,
        'weather_temporal': True,
        'seed': 0,
        'runs': runs,
    }
    md = markdown(report)
    assert '| rain:0.6 transient p0.3 | 40.00 |' in md  # robustness table
    assert '## Transient degradations' in md
    assert '| rain:0.6 transient p0.3 | per_frame | 2/6 (2) | 40.00 | 30.00 | 45.00 | 50.00 |' in md
    assert 'transient:rain' not in md  # always the human label
    lines = dict(_intensity_lines(runs, 'rain', 'per_frame', 'miou'))
    assert lines == {'': [(0.0, 50.0), (0.6, 35.0)], ' transient p0.3': [(0.0, 50.0), (0.6, 40.0)]}
    assert dict(_intensity_lines(runs, 'wiper', 'per_frame', 'miou')) == {
        ' transient p0.2': [(0.0, 50.0), (0.8, 47.0)]
    }
    written = plot_report(
        {**report, 'runs': [{**r, 'per_class_iou': {'a': 1.0}} for r in runs]}, tmp_path
    )
    assert (tmp_path / 'miou_vs_intensity.png') in written


def test_bad_transient_on_the_command_line_exits_2(tmp_path, capsys):
    from vsda_ros.cli import main

    rc = main(
        [
            'eval',
            '--backend',
            'torch',
            '--source',
            str(tmp_path / 'nowhere'),
            '--transient',
            'hail:0.5:0.2',
            '--out',
            str(tmp_path / 'out'),
            '--quiet',
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "unknown transient kind 'hail'" in err and err.count('\n') == 1


def test_run_eval_transient_rows(real_data, tmp_path):
    """A short real run: clean + rain:0.6:0.5 on six labelled CamVid frames, per_frame."""
    from vsda_ros.apps.eval import EvalConfig, run_eval

    spec = TransientSpec('rain', 0.6, 0.5)
    seed = next(
        s
        for s in range(50)  # a seed that hits some of six frames
        if 2 <= sum(run(spec, [scene(8, 8)] * 6, seed=s)[1]) <= 4
    )
    expected = run(spec, [scene(8, 8)] * 6, seed=seed)[1]
    cfg = EvalConfig(
        model='espnet-camvid',
        source=str(real_data / 'camvid' / 'val'),
        labels=str(real_data / 'camvid' / 'valannot'),
        out=tmp_path,
        strategies=['per_frame'],
        max_frames=6,
        transients=['rain:0.6:0.5'],
        seed=seed,
        progress=False,
    )
    r = run_eval(cfg)
    clean, tr = json.loads((tmp_path / 'report.json').read_text())['runs']
    assert clean == json.loads(json.dumps(r['runs'][0]))
    assert clean['weather_mode'] == 'clean' and 'hit_frames' not in clean
    assert tr['weather'] == 'transient:rain:0.6:0.5' and tr['weather_kind'] == 'rain'
    assert tr['weather_mode'] == 'transient' and tr['intensity'] == 0.6
    assert tr['transient_prob'] == 0.5 and tr['frames'] == 6
    assert tr['hit_frames'] == sum(expected) == tr['hit_labelled_frames']
    assert 0 < tr['miou_hit'] <= 100 and 0 < tr['miou_unhit'] <= 100
    assert tr['miou'] < clean['miou'] and tr['agreement'] < 100.0
    md = (tmp_path / 'report.md').read_text()
    assert 'rain:0.6 transient p0.5' in md and '## Transient degradations' in md
    for name in ('miou_vs_intensity.png', 'samples.png', 'per_class_iou.png'):
        assert (tmp_path / name).stat().st_size > 1000, name


class RecordingRunner:
    """A :class:`~vsda_ros.apps.eval.ClipRunner` that runs per_frame in process and
    records the clips it is given, as ``vsda eval --live``'s runner would receive them."""

    def __init__(self, strategy) -> None:
        self.strategy = strategy
        self.clips: list = []
        self.predictions: list = []

    def run(self, strategy, clip, clean_images=None, progress=True, desc=''):
        from vsda_ros.evaluation.temporal import evaluate_strategy

        res = evaluate_strategy(self.strategy, clip, progress=False, flow_images=clean_images)
        self.clips.append(clip)
        self.predictions.append(list(res['predictions']))
        return {**res, 'dropped': 0}


def test_runner_gets_the_degraded_frames_and_unhit_frames_score_as_clean(real_data, tmp_path):
    """The clips handed to a runner (the --live path) are the transient ones: un-hit frames
    bit-identical to the clean frames, hit frames degraded; with a stateless per_frame model
    ``miou_unhit`` is the clean predictions' mIoU on the same frames."""
    from vsda_ros.apps.eval import EvalConfig, run_eval
    from vsda_ros.evaluation.report import hit_split
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.models.zoo import load_model
    from vsda_ros.temporal.factory import build_strategy

    seg = Segmenter(load_model('espnet-camvid'), SegmenterConfig(input_size=(160, 120)))
    runner = RecordingRunner(build_strategy('per_frame', seg))
    cfg = EvalConfig(
        model='espnet-camvid',
        source=str(real_data / 'camvid' / 'val'),
        labels=str(real_data / 'camvid' / 'valannot'),
        out=tmp_path,
        strategies=['per_frame'],
        max_frames=6,
        size='160x120',
        transients=['exposure:0.8:0.5'],
        seed=1,
        progress=False,
    )
    r = run_eval(cfg, runner)
    clean_clip, tr_clip = runner.clips
    hits = run(TransientSpec('exposure', 0.8, 0.5), [scene(8, 8)] * 6, seed=1)[1]
    assert 0 < sum(hits) < 6 and r['runs'][1]['hit_frames'] == sum(hits)
    for c, t, hit in zip(clean_clip.images, tr_clip.images, hits, strict=False):
        assert np.array_equal(c, t) != hit
    expected = hit_split(runner.predictions[0], clean_clip, [not h for h in hits])['miou_hit']
    assert r['runs'][1]['miou_unhit'] == pytest.approx(expected)
