"""Synthetic adverse weather (vsda_ros.weather): parsing, effects, temporal parameters, previews.

Core tests use synthetic frames so they always run; one test also checks a real CamVid frame
(skipped without ``VSDA_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

from vsda_ros.weather import (
    DEFAULT_INTENSITY,
    WEATHER_KINDS,
    WeatherSequence,
    WeatherSpec,
    apply_weather,
    parse_weather,
    parse_weather_list,
)
from vsda_ros.weather.fields import ground_plane_depth, metric_depth
from vsda_ros.weather.sequence import IntensityWalk


def make_scene(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A street-like RGB frame: a bright bluish sky on top, a textured mid-grey world below,
    with the same checkerboard contrast in every row (so contrast loss can be compared)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    checker = ((yy // 6 + xx // 6) % 2).astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[...] = np.float32([90, 95, 85]) + 70 * checker[..., None]
    img[: h // 4] = np.float32([150, 190, 235]) + 20 * checker[: h // 4, :, None]
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def textured(h: int = 96, w: int = 128) -> np.ndarray:
    """The checkerboard everywhere (no sky): equal contrast in all rows."""
    yy, xx = np.mgrid[0:h, 0:w]
    checker = ((yy // 6 + xx // 6) % 2).astype(np.float32)
    return np.repeat((60 + 120 * checker)[..., None], 3, axis=2).astype(np.uint8)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope='module')
def scene() -> np.ndarray:
    return make_scene()


# ---------------------------------------------------------------------------------------------
# spec and parsing


def test_kinds_and_spec_text():
    assert WEATHER_KINDS == ('fog', 'rain', 'snow', 'night', 'glare', 'noise')
    assert str(WeatherSpec('fog', 0.6)) == 'fog:0.6'
    assert str(WeatherSpec('rain', 1)) == 'rain:1'
    assert isinstance(WeatherSpec('rain', 1).intensity, float)
    for kind in WEATHER_KINDS:
        spec = WeatherSpec(kind, 0.35)
        assert parse_weather(str(spec)) == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        WeatherSpec('fog', 0.5).intensity = 0.7


def test_parse_weather_accepts():
    assert parse_weather('fog:0.6') == WeatherSpec('fog', 0.6)
    assert parse_weather('fog') == WeatherSpec('fog', DEFAULT_INTENSITY) == WeatherSpec('fog', 0.6)
    assert parse_weather(' Rain : 0.3 ') == WeatherSpec('rain', 0.3)
    assert parse_weather('night:0') == WeatherSpec('night', 0.0)
    assert parse_weather('glare:1') == WeatherSpec('glare', 1.0)
    for text in ('clean', 'none', ' CLEAN ', 'None'):
        assert parse_weather(text) is None
    assert parse_weather_list('clean,fog:0.6,snow') == [
        None,
        WeatherSpec('fog', 0.6),
        WeatherSpec('snow', 0.6),
    ]


@pytest.mark.parametrize(
    'text, message',
    [
        ('fog:abc', 'not a number'),
        ('fog:1.5', 'outside [0, 1]'),
        ('fog:-0.1', 'outside [0, 1]'),
        ('fog:nan', 'outside [0, 1]'),
        ('fog:', 'not a number'),
        ('hail:0.3', "unknown weather kind 'hail'"),
        ('', 'empty weather'),
        ('clean:0.5', 'takes no intensity'),
    ],
)
def test_parse_weather_rejects(text, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')):
        parse_weather(text)


def test_unknown_kind_message_lists_kinds():
    for make in (lambda: parse_weather('hail:0.3'), lambda: WeatherSpec('hail', 0.3)):
        with pytest.raises(ValueError) as err:
            make()
        assert all(k in str(err.value) for k in WEATHER_KINDS)
    with pytest.raises(ValueError, match='outside'):
        WeatherSpec('fog', 1.2)
    with pytest.raises(ValueError):
        WeatherSpec('fog', True)
    with pytest.raises(ValueError, match='weather intensity'):
        WeatherSpec('fog', 'x')


# ---------------------------------------------------------------------------------------------
# single frames


@pytest.mark.parametrize('kind', WEATHER_KINDS)
def test_intensity_zero_is_exact_copy(kind, scene):
    out = apply_weather(scene, WeatherSpec(kind, 0.0), seed=3)
    assert np.array_equal(out, scene) and not np.shares_memory(out, scene)
    for temporal in (True, False):
        seq = WeatherSequence(WeatherSpec(kind, 0.0), seed=3, temporal=temporal)
        for _ in range(3):
            frame = seq(scene)
            assert np.array_equal(frame, scene) and not np.shares_memory(frame, scene)
    assert np.array_equal(apply_weather(scene, None), scene)


@pytest.mark.parametrize('kind', WEATHER_KINDS)
def test_output_shape_dtype_and_input_untouched(kind, scene):
    original = scene.copy()
    readonly = scene.copy()
    readonly.setflags(write=False)  # any in-place write would raise
    out = apply_weather(readonly, WeatherSpec(kind, 0.7), seed=1)
    assert out.shape == scene.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, readonly)
    assert not np.array_equal(out, scene)
    seq = WeatherSequence(WeatherSpec(kind, 0.7), seed=1)
    for _ in range(2):
        frame = seq(readonly)
        assert frame.shape == scene.shape and frame.dtype == np.uint8
    non_contiguous = np.ascontiguousarray(scene[:, ::-1])[:, ::-1]
    assert np.array_equal(apply_weather(non_contiguous, WeatherSpec(kind, 0.7), seed=1), out)
    assert np.array_equal(scene, original)


@pytest.mark.parametrize(
    'bad',
    [
        np.zeros((8, 8), np.uint8),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((8, 8, 3), np.float32),
        np.zeros((0, 8, 3), np.uint8),
        [[0, 0, 0]],
    ],
)
def test_bad_images_raise(bad):
    with pytest.raises(ValueError, match='image must be'):
        apply_weather(bad, WeatherSpec('fog', 0.5))
    with pytest.raises(ValueError, match='image must be'):
        WeatherSequence(WeatherSpec('fog', 0.5))(bad)


def test_bad_spec_and_depth_raise(scene):
    with pytest.raises(ValueError, match='WeatherSpec'):
        apply_weather(scene, 'fog:0.5')
    with pytest.raises(ValueError, match='WeatherSpec'):
        WeatherSequence('fog:0.5')
    with pytest.raises(ValueError, match='depth'):
        apply_weather(scene, WeatherSpec('fog', 0.5), depth=np.ones((4, 4, 3)))
    with pytest.raises(ValueError, match='depth'):
        WeatherSequence(WeatherSpec('fog', 0.5), depth=np.ones(5))


@pytest.mark.parametrize('kind', WEATHER_KINDS)
def test_deterministic_per_seed(kind, scene):
    spec = WeatherSpec(kind, 0.6)
    a = apply_weather(scene, spec, seed=7)
    assert np.array_equal(a, apply_weather(scene, spec, seed=7))
    assert not np.array_equal(a, apply_weather(scene, spec, seed=8))


@pytest.mark.parametrize('kind', WEATHER_KINDS)
@pytest.mark.parametrize('seed', [0, 1])
def test_stronger_intensity_degrades_more(kind, seed, scene):
    d = [mad(apply_weather(scene, WeatherSpec(kind, x), seed=seed), scene) for x in (0.3, 0.6, 0.9)]
    assert d[0] > 1.0, (kind, d)
    assert d[0] < d[1] < d[2], (kind, d)


def contrast(img: np.ndarray, rows: slice) -> float:
    return float(img[rows].astype(np.float32).mean(axis=2).std())


def test_fog_reduces_far_contrast_more_than_near():
    img = textured()
    h = img.shape[0]
    top, bottom = slice(0, h // 4), slice(3 * h // 4, h)
    for x in (0.3, 0.6):
        out = apply_weather(img, WeatherSpec('fog', x), seed=2)
        keep_top = contrast(out, top) / contrast(img, top)
        keep_bottom = contrast(out, bottom) / contrast(img, bottom)
        assert keep_top < 0.6 * keep_bottom, (x, keep_top, keep_bottom)
        assert keep_bottom > 0.3
        # and fog brightens towards the airlight
        assert out[top].mean() > img[top].mean()


def test_fog_uses_given_depth():
    img = textured()
    h, w = img.shape[:2]
    depth = np.full((h, w), 300.0, np.float32)
    depth[:, : w // 2] = 2.0  # left half near
    left, right = (slice(None), slice(0, w // 2)), (slice(None), slice(w // 2, w))
    for d in (depth, depth / 300.0, depth[::2, ::2]):  # metres, relative, resized
        out = apply_weather(img, WeatherSpec('fog', 0.6), seed=0, depth=d)
        c_left = out[left].astype(np.float32).mean(axis=2).std()
        c_right = out[right].astype(np.float32).mean(axis=2).std()
        assert c_right < 0.3 * c_left, (c_left, c_right)
    sky = depth.copy()
    sky[:, w // 2 :] = np.inf  # no return = far
    out = apply_weather(img, WeatherSpec('fog', 0.6), seed=0, depth=sky)
    assert out[right].astype(np.float32).mean(axis=2).std() < 5


def test_depth_helpers():
    col = ground_plane_depth(90, 120, horizon=0.45)
    assert col.shape == (90, 1) and col.dtype == np.float32
    assert col[0, 0] > col[40, 0] > col[60, 0] > col[-1, 0] > 0  # far at top, near at bottom
    assert col[-1, 0] < 10
    d = metric_depth(np.array([[0.5, 0.0], [np.nan, 1.0]]), 2, 2)
    assert d[0, 0] == pytest.approx(500.0) and d[0, 1] == d[1, 0] == 1000.0


def test_night_darkens_and_shifts_to_blue(scene):
    means = [
        apply_weather(scene, WeatherSpec('night', x), seed=0).astype(np.float32).mean()
        for x in (0.3, 0.6, 0.9)
    ]
    assert scene.mean() > means[0] > means[1] > means[2]
    assert means[2] < 0.65 * scene.mean()
    grey = np.full((90, 120, 3), 140, np.uint8)
    for seed in range(3):
        seq = WeatherSequence(WeatherSpec('night', 0.6), seed=seed, temporal=False)
        out = seq(grey).astype(np.float32)
        lamps = seq.params['light_positions'][: seq.params['light_count']]
        yy, xx = np.mgrid[0:90, 0:120]
        dist = np.min([np.hypot(xx - x * 120, yy - y * 90) for x, y in lamps], axis=0)
        unlit = dist > 0.4 * 90  # away from the (warm) lamps
        assert unlit.sum() > 100
        blue_minus_red = (out[..., 2] - out[..., 0])[unlit]
        assert np.median(blue_minus_red) > 4, seed


def test_glare_is_brightest_at_its_source(scene):
    seq = WeatherSequence(WeatherSpec('glare', 0.8), seed=4, temporal=False)
    out = seq(scene).astype(np.float32).mean(axis=2)
    cx, cy = seq.params['center']
    h, w = out.shape
    at = out[int(cy * h), int(cx * w)]
    assert at > 240
    assert at > np.percentile(out, 90)
    far = out[int((1 - cy) * h * 0.5 + h * 0.5) - 1, int((1 - cx) * (w - 1))]
    assert at - far > 40


def spot_fraction(img: np.ndarray) -> float:
    """Fraction of pixels clearly brighter than the darkest pixel within 5 px left or right
    (streaks and flakes are narrow; haze varies smoothly, and mostly vertically)."""
    import cv2

    lum = img.astype(np.float32).mean(2)
    background = cv2.erode(lum, np.ones((1, 11), np.uint8))
    return float((lum > background + 12).mean())


def test_rain_and_snow_add_bright_structures():
    flat = np.full((120, 160, 3), 60, np.uint8)
    for kind in ('rain', 'snow'):
        cover = [
            spot_fraction(apply_weather(flat, WeatherSpec(kind, x), seed=0))
            for x in (0.3, 0.6, 0.9)
        ]
        assert 0.02 < cover[0] < cover[1] < cover[2] < 0.7, (kind, cover)
    assert spot_fraction(apply_weather(flat, WeatherSpec('fog', 0.9), seed=0)) < 0.01


def test_noise_is_zero_mean_and_scales():
    flat = np.full((64, 64, 3), 128, np.uint8)
    stds = []
    for x in (0.3, 0.9):
        out = apply_weather(flat, WeatherSpec('noise', x), seed=0).astype(np.float32)
        assert abs(out.mean() - 128) < 3
        stds.append(out.std())
    assert 1.0 < stds[0] < stds[1]


# ---------------------------------------------------------------------------------------------
# sequences


def run(spec: WeatherSpec, frames: list[np.ndarray], temporal: bool, seed: int = 0):
    seq = WeatherSequence(spec, seed=seed, temporal=temporal)
    outs, params = [], []
    for f in frames:
        outs.append(seq(f))
        params.append(seq.params)
    return outs, params


def mean_step(params: list[dict], key: str) -> float:
    vals = [np.asarray(p[key], np.float64) for p in params]
    return float(np.mean([np.abs(b - a).mean() for a, b in zip(vals, vals[1:], strict=False)]))


STATE_KEYS = {
    'fog': 'patch_offset',
    'glare': 'center',
    'night': 'light_positions',
    'rain': 'angle',
    'snow': 'wind',
}


@pytest.mark.parametrize('kind', WEATHER_KINDS)
def test_temporal_parameters_change_much_less_than_iid(kind):
    img = make_scene(24, 32)
    spec = WeatherSpec(kind, 0.6)
    _, p_t = run(spec, [img] * 30, temporal=True)
    _, p_i = run(spec, [img] * 30, temporal=False)
    keys = ['intensity'] + ([STATE_KEYS[kind]] if kind in STATE_KEYS else [])
    for key in keys:
        step_t, step_i = mean_step(p_t, key), mean_step(p_i, key)
        assert step_i > 0, (kind, key)
        assert step_t < 0.4 * step_i, (kind, key, step_t, step_i)
    lo, hi = 0.6 * 0.75, 0.6 * 1.25
    assert all(lo <= p['intensity'] <= hi for p in p_t + p_i)


@pytest.mark.parametrize('kind', ['fog', 'glare', 'snow'])
def test_temporal_frames_change_much_less_than_iid(kind):
    # (night and noise draw fresh sensor noise every frame in both modes, and rain falls fast)
    img = make_scene(48, 64)
    spec = WeatherSpec(kind, 0.7)
    diff = {}
    for temporal in (True, False):
        outs, _ = run(spec, [img] * 8, temporal)
        diff[temporal] = np.mean([mad(a, b) for a, b in zip(outs, outs[1:], strict=False)])
    assert diff[True] < 0.5 * diff[False], (kind, diff)


@pytest.mark.parametrize('kind', ['rain', 'snow'])
def test_precipitation_falls_consistently(kind):
    _, params = run(WeatherSpec(kind, 0.6), [make_scene(48, 64)] * 4, temporal=True)
    for a, b in zip(params, params[1:], strict=False):
        dy = b['positions'][:, 1] - a['positions'][:, 1]
        dx = b['positions'][:, 0] - a['positions'][:, 0]
        falling = (dy > 0) & (dy < 0.2)  # wrap-around at the bottom excluded
        assert falling.mean() > 0.8
        assert np.median(np.abs(dx[falling])) < 0.05
    _, iid = run(WeatherSpec(kind, 0.6), [make_scene(48, 64)] * 2, temporal=False)
    dy = iid[1]['positions'][:, 1] - iid[0]['positions'][:, 1]
    assert ((dy > 0) & (dy < 0.2)).mean() < 0.3


@pytest.mark.parametrize('temporal', [True, False])
def test_sequence_deterministic_and_reset(temporal, scene):
    spec = WeatherSpec('rain', 0.5)
    a, _ = run(spec, [scene] * 4, temporal, seed=5)
    b, _ = run(spec, [scene] * 4, temporal, seed=5)
    c, _ = run(spec, [scene] * 4, temporal, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=False))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=False))
    seq = WeatherSequence(spec, seed=5, temporal=temporal)
    first = [seq(scene) for _ in range(3)]
    seq.reset()
    assert seq.frame_index == 0
    assert all(np.array_equal(x, seq(scene)) for x in first)


@pytest.mark.parametrize('kind', WEATHER_KINDS)
def test_resolution_change_mid_sequence(kind):
    depth = np.linspace(1, 200, 48 * 64, dtype=np.float32).reshape(48, 64)
    for d in (None, depth):
        seq = WeatherSequence(WeatherSpec(kind, 0.6), seed=1, depth=d)
        for h, w in ((48, 64), (48, 64), (60, 90), (33, 41), (1, 1), (1, 7), (7, 1), (48, 64)):
            out = seq(make_scene(h, w))
            assert out.shape == (h, w, 3) and out.dtype == np.uint8
        assert seq.frame_index == 8


def test_params_is_a_copy(scene):
    seq = WeatherSequence(WeatherSpec('snow', 0.5), seed=0)
    seq(scene)
    p = seq.params
    p['positions'][:] = 0
    p['intensity'] = 99
    assert seq.params['intensity'] != 99 and seq.params['positions'].any()
    assert seq.params['kind'] == 'snow'


def test_intensity_walk_bounded_and_mean_reverting():
    rng = np.random.default_rng(0)
    walk = IntensityWalk(0.6)
    x, xs = 0.6, []
    for _ in range(2000):
        x = walk.step(x, rng)
        xs.append(x)
    xs = np.array(xs)
    assert xs.min() >= walk.lo and xs.max() <= walk.hi
    assert abs(xs.mean() - 0.6) < 0.03
    assert np.abs(np.diff(xs)).mean() < 0.05
    assert xs.std() > 0.02
    assert IntensityWalk(0.0).step(0.0, rng) == 0.0
    assert IntensityWalk(1.0).hi == 1.0


# ---------------------------------------------------------------------------------------------
# previews and the command line


def test_render_grid_and_sequence(tmp_path):
    import cv2

    from vsda_ros.weather.preview import render_grid, render_sequence

    img = make_scene(48, 64)
    out = render_grid(
        img,
        tmp_path / 'sub' / 'grid.png',
        intensities=(0.5, 0.9),
        kinds=('fog', 'night'),
        cell_width=64,
    )
    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape[1] > 3 * 64 and grid.shape[0] > 2 * 48
    out = render_sequence(
        [make_scene(48, 64, s) for s in range(3)],
        WeatherSpec('fog', 0.6),
        tmp_path / 'seq.png',
        cell_width=64,
    )
    strip = cv2.imread(str(out))
    assert strip is not None and strip.shape[1] > 3 * 64
    with pytest.raises(ValueError):
        render_sequence([], WeatherSpec('fog', 0.6), tmp_path / 'x.png')
    with pytest.raises(ValueError):
        render_grid(img, tmp_path / 'y.png', kinds=('hail',))


def _parser() -> argparse.ArgumentParser:
    from vsda_ros.apps.weather import add_parser

    parser = argparse.ArgumentParser(prog='vsda')
    add_parser(parser.add_subparsers(dest='command', required=True))
    return parser


def test_cli_preview(tmp_path, capsys):
    import cv2

    frames = tmp_path / 'frames'
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f'f_{i:03d}.png'), make_scene(48, 64, i)[..., ::-1])
    parser = _parser()
    args = parser.parse_args(
        [
            'weather',
            'preview',
            '--image',
            str(frames / 'f_000.png'),
            '--out',
            str(tmp_path / 'g.png'),
            '--size',
            '64x48',
            '--kinds',
            'rain,snow',
            '--intensities',
            '0.5',
            '--cell-width',
            '64',
        ]
    )
    assert args.func(args) == 0 and (tmp_path / 'g.png').is_file()
    args = parser.parse_args(
        [
            'weather',
            'preview',
            '--sequence',
            str(frames),
            '--spec',
            'glare:0.7',
            '--frames',
            '2',
            '--out',
            str(tmp_path / 's.png'),
            '--cell-width',
            '64',
            '--size',
            '',
        ]
    )
    assert args.func(args) == 0 and (tmp_path / 's.png').is_file()
    assert 'wrote' in capsys.readouterr().out
    bad = parser.parse_args(
        [
            'weather',
            'preview',
            '--sequence',
            str(frames),
            '--spec',
            'fog:abc',
            '--out',
            str(tmp_path / 'z.png'),
        ]
    )
    with pytest.raises(ValueError, match='not a number'):
        bad.func(bad)
    missing = parser.parse_args(['weather', 'preview', '--image', str(tmp_path / 'no.png')])
    with pytest.raises(FileNotFoundError):
        missing.func(missing)
    with pytest.raises(SystemExit):
        parser.parse_args(['weather', 'preview'])  # --image or --sequence needed
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parser.parse_args(['weather', 'preview', '--help'])
    assert '--sequence' in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# a real frame


@pytest.mark.data
def test_real_camvid_frame(real_data):
    from vsda_ros.data.sources import read_rgb

    files = sorted((real_data / 'camvid' / 'val').glob('*.png'))
    if not files:
        pytest.skip('no CamVid val frames')
    img = read_rgb(files[len(files) // 2])
    img = np.ascontiguousarray(img[::2, ::2])
    for kind in WEATHER_KINDS:
        d = [mad(apply_weather(img, WeatherSpec(kind, x), seed=0), img) for x in (0.3, 0.6, 0.9)]
        assert 1.0 < d[0] < d[1] < d[2], (kind, d)
    night = [apply_weather(img, WeatherSpec('night', x), seed=0).mean() for x in (0.3, 0.6, 0.9)]
    assert img.mean() > night[0] > night[1] > night[2]
    h = img.shape[0]
    out = apply_weather(img, WeatherSpec('fog', 0.5), seed=0)
    top, bottom = slice(0, h // 3), slice(2 * h // 3, h)
    keep_top = contrast(out, top) / contrast(img, top)
    keep_bottom = contrast(out, bottom) / contrast(img, bottom)
    assert keep_top < keep_bottom
