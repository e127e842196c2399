"""The image-guided fusion block: correlation, alignment, checkpoints, the strategy, the recipe,
and that the fusion strategy never computes optical flow at run time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vsda_ros.temporal.flow import warp
from vsda_ros.temporal.fusion_block import FusionBlock
from vsda_ros.temporal.guided_fusion import (
    FRAME_STATS,
    GuidedFusionBlock,
    correlation,
    frame_statistics,
)
from vsda_ros.temporal.modules import TemporalModules, make_module


def test_correlation_peaks_at_the_shift():
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(1, 8, 20, 24), dim=1)
    dy, dx, r = 1, -2, 3
    b = torch.roll(a, shifts=(dy, dx), dims=(2, 3))  # b(p + (dy, dx)) = a(p)
    corr = correlation(a, b, r)
    assert corr.shape == (1, 49, 20, 24)
    inner = corr[..., r:-r, r:-r]
    best = inner.argmax(1)
    assert bool((best == (dy + r) * (2 * r + 1) + (dx + r)).all())
    with pytest.raises(ValueError):
        correlation(a, b[:, :4], r)


def test_untrained_deformable_step_is_a_warp_by_the_motion():
    torch.manual_seed(1)
    blk = GuidedFusionBlock(5, scale=0.5, num_deform=1).eval()
    prev_s, cur_s = torch.randn(1, 5, 12, 16), torch.randn(1, 5, 12, 16)
    motion = (torch.randn(1, 2, 12, 16) * 0.5).clamp(-1, 1)
    with torch.no_grad():
        got = blk.align(cur_s, prev_s, motion)
        plain = GuidedFusionBlock(5, scale=0.5, num_deform=0).align(cur_s, prev_s, motion)
    # inside (where no sample falls off the frame: the deformable conv pads with zeros,
    # warp with the border) the two are the same bilinear sampling
    inner = (..., slice(1, -1), slice(1, -1))
    assert torch.allclose(got[inner], warp(prev_s, motion)[inner], atol=1e-5)
    assert torch.allclose(plain, warp(prev_s, motion), atol=1e-6)


def test_forward_shapes_gate_and_errors():
    torch.manual_seed(2)
    blk = GuidedFusionBlock(4, scale=0.25, num_deform=0, blend=0.3).eval()
    x0, x1 = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 48, 64)
    cur, prev = torch.randn(1, 4, 48, 64), torch.randn(1, 4, 48, 64)
    g0, g1 = blk.guide(x0), blk.guide(x1)
    assert g0.shape == (1, 16 + 3, 12, 16)
    aux: dict = {}
    with torch.no_grad():
        out = blk(cur, blk.shrink(prev), g1, g0, aux=aux)
    assert out.shape == cur.shape
    assert aux['motion'].shape == (1, 2, 12, 16) and aux['gate'].shape == (1, 1, 12, 16)
    assert torch.allclose(aux['gate'], torch.full_like(aux['gate'], 0.3), atol=1e-6)
    with pytest.raises(ValueError):
        blk(cur, prev[:, :3], g1, g0)
    with pytest.raises(ValueError):
        blk(cur, prev, g1[..., :5], g0)
    for bad in ({'blend': 1.0}, {'scale': 0.0}, {'num_deform': -1}, {'variant': 'x'}):
        with pytest.raises(ValueError):
            GuidedFusionBlock(4, **bad)


def test_frame_statistics_tell_a_degraded_frame_from_its_clean_neighbour(real_data):
    from vsda_ros.weather import WeatherSequence, WeatherSpec

    def tensor(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255

    def stats(img: np.ndarray) -> torch.Tensor:  # 1/2 scale + the full-resolution pair
        x = tensor(img)
        return frame_statistics(F.avg_pool2d(x, 2), x)[0]

    clean, nxt = _pair(real_data)
    assert stats(clean).shape == (FRAME_STATS,)
    assert frame_statistics(tensor(clean)).shape == (1, FRAME_STATS - 2)
    step = (stats(nxt) - stats(clean)).abs().max()  # consecutive clean frames: ~equal
    for kind, index, sign in (('fog', 1, -1), ('night', 0, -1), ('noise', 7, +1)):
        hit = WeatherSequence(WeatherSpec(kind, 0.6), seed=0)(clean)
        change = float(stats(hit)[index] - stats(clean)[index])
        assert change * sign > 5 * step, (kind, change, float(step))
    with pytest.raises(ValueError):
        frame_statistics(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError):
        frame_statistics(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 2, 2))


def test_frame_cues_start_as_the_frame_gate_and_move_the_weight_per_frame():
    torch.manual_seed(3)
    plain = GuidedFusionBlock(4, scale=0.25, num_deform=0, frame_gate=True).eval()
    cued = GuidedFusionBlock(4, scale=0.25, num_deform=0, frame_gate=True, frame_cues=True).eval()
    cued.load_state_dict(plain.state_dict(), strict=False)
    x0, x1 = torch.rand(2, 3, 48, 64), torch.rand(2, 3, 48, 64)
    x1[1] *= 0.3  # the second pair: a dark frame
    cur, prev = torch.randn(2, 4, 48, 64), torch.randn(2, 4, 12, 16)
    g0, g1 = cued.guide(x0), cued.guide(x1)
    assert g0.shape == (2, 16 + FRAME_STATS + 3, 12, 16)
    with torch.no_grad():
        same = torch.allclose(
            cued(cur, prev, g1, g0), plain(cur, prev, plain.guide(x1), plain.guide(x0)), atol=1e-6
        )
        cued.frame_head[-1].weight.normal_()
        aux: dict = {}
        cued(cur, prev, g1, g0, aux=aux)
    assert same
    gate = aux['gate']
    assert torch.allclose(gate, gate[:, :, :1, :1].expand_as(gate))  # one weight per frame
    assert not torch.allclose(gate[0], gate[1])
    with pytest.raises(ValueError):
        GuidedFusionBlock(4, frame_cues=True)  # needs frame_gate


def test_pixel_mask_starts_near_one_and_only_lowers_the_frame_weight():
    torch.manual_seed(4)
    blk = GuidedFusionBlock(4, scale=0.25, num_deform=0, frame_gate=True, pixel_mask=True).eval()
    x0, x1 = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 48, 64)
    cur, prev = torch.randn(1, 4, 48, 64), torch.randn(1, 4, 12, 16)
    aux: dict = {}
    with torch.no_grad():
        blk(cur, prev, blk.guide(x1), blk.guide(x0), aux=aux)
        assert torch.allclose(aux['gate'], torch.full_like(aux['gate'], 0.4 * 0.99753), atol=1e-4)
        blk.mask[-1].weight.normal_(std=3.0)
        blk.mask[-1].bias.zero_()
        blk(cur, prev, blk.guide(x1), blk.guide(x0), aux=aux)
    gate = aux['gate']
    assert float(gate.max()) <= 0.4 + 1e-6 and float(gate.std()) > 1e-3
    with pytest.raises(ValueError):
        GuidedFusionBlock(4, pixel_mask=True)  # needs frame_gate


def test_checkpoint_round_trip_and_old_checkpoints_are_score_blocks():
    guided = make_module('fusion', variant='guided', num_classes=6, scale=0.2, num_deform=0)
    with torch.no_grad():
        guided.temperature.fill_(3.5)
    back = TemporalModules.from_extra(TemporalModules(fusion=guided).to_extra()).fusion
    assert isinstance(back, GuidedFusionBlock) and back.num_deform == 0
    assert float(back.temperature) == 3.5
    old = make_module('fusion', num_classes=6)  # no variant in its args
    assert isinstance(
        TemporalModules.from_extra(TemporalModules(fusion=old).to_extra()).fusion, FusionBlock
    )
    with pytest.raises(ValueError):
        make_module('fusion', variant='optical', num_classes=6)


@pytest.fixture(scope='module')
def segmenter(real_data):
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.models.zoo import load_model

    model = load_model('espnet-camvid', download=False, progress=False)
    return Segmenter(model, SegmenterConfig(input_size=(240, 180)))


@pytest.fixture(scope='module')
def clip(real_data):
    from vsda_ros.data.sources import FrameSource

    return [f.image for f in list(FrameSource(real_data / 'camvid' / 'val'))[:4]]


@pytest.mark.parametrize('recurrent', [False, True])
def test_strategy_runs_without_optical_flow(segmenter, clip, monkeypatch, recurrent):
    """The acceptance: the fusion strategy with the guided block computes no optical flow."""
    import cv2

    from vsda_ros.temporal import flow
    from vsda_ros.temporal.factory import build_strategy

    def no_flow(*_a, **_k):
        raise AssertionError('optical flow computed at run time')

    monkeypatch.setattr(flow.DISFlow, '__call__', no_flow)
    monkeypatch.setattr(cv2, 'DISOpticalFlow_create', no_flow)
    monkeypatch.setattr(cv2, 'calcOpticalFlowFarneback', no_flow)
    block = make_module(
        'fusion',
        variant='guided',
        num_classes=segmenter.meta.num_classes,
        num_deform=0,
        recurrent=recurrent,
    )
    s = build_strategy('fusion', segmenter, modules=TemporalModules(fusion=block))
    first = s.step(clip[0], 0.0)
    assert np.array_equal(first.labels, segmenter.segment(clip[0]).labels)
    outs = [s.step(img, (i + 1) / 15) for i, img in enumerate(clip[1:])]
    assert all('fusion' in o.timings_ms for o in outs)
    assert s._prev is not None and s._prev_guide is not None
    assert not np.array_equal(outs[0].confidence, segmenter.segment(clip[1]).confidence)
    s.reset()
    assert s._prev is None and s._prev_guide is None


def _pair(real_data) -> list:
    """Two consecutive real CamVid val frames at 160×120 (RGB)."""
    import cv2

    frames = sorted((real_data / 'camvid' / 'val').iterdir())[:2]
    return [
        cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (160, 120)) for f in frames
    ]


def test_guided_recipe_trains_motion_and_gate(real_data):
    from vsda_ros.adaptation.config import AdaptConfig
    from vsda_ros.adaptation.recipes import FusionRecipe
    from vsda_ros.models.zoo import load_model

    pair = _pair(real_data)
    torch.manual_seed(0)
    cfg = AdaptConfig(
        recipe='fusion',
        target=['x'],
        fusion_variant='guided',
        fusion_scale=0.25,
        fusion_num_deform=1,
        transient_prob=0.5,
        weather_intensity=(0.5, 0.5),
    )
    recipe = FusionRecipe(load_model('espnet-camvid'), cfg)
    loss, logs = recipe.loss([pair, pair[::-1]])
    assert np.isfinite(float(loss)) and logs['flow'] > 0 and logs['anchor'] == 0.0
    loss.backward()
    blk = recipe.student
    for p in (
        blk.encoder[0].weight,
        blk.motion[-1].weight,
        blk.gate[-1].weight,
        blk.offsets[0].weight,
    ):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_guided_config_is_validated(tmp_path):
    from vsda_ros.adaptation.config import AdaptConfig

    for bad in (
        {'fusion_variant': 'flow'},
        {'fusion_blend': 0.0},
        {'transient_prob': 0.9},
        {'fusion_num_deform': -1},
        {'fusion_init': str(tmp_path / 'missing.pt')},
        {'fusion_frame_cues': True},
    ):
        with pytest.raises(ValueError):
            AdaptConfig(recipe='fusion', target=['x'], **bad).validate()


def test_motion_stage_trains_only_the_motion_field(real_data):
    from vsda_ros.adaptation.config import AdaptConfig
    from vsda_ros.adaptation.recipes import FusionRecipe
    from vsda_ros.models.zoo import load_model

    pair = _pair(real_data)
    cfg = AdaptConfig(
        recipe='fusion',
        target=['x'],
        fusion_variant='guided',
        fusion_scale=0.25,
        fusion_num_deform=0,
        fusion_stage='motion',
        transient_prob=0.5,
    )
    recipe = FusionRecipe(load_model('espnet-camvid'), cfg)
    recipe.model.forward = None  # the network must not run in this stage
    loss, logs = recipe.loss([pair, pair])
    assert set(logs) == {'epe', 'epe_degraded', 'epe_zero'} and logs['epe_zero'] > 0
    loss.backward()
    blk = recipe.student
    assert float(blk.motion[-1].weight.grad.abs().sum()) > 0
    assert blk.gate[-1].weight.grad is None
