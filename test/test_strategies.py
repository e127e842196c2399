"""Temporal strategies on real CamVid frames with the real ESPNet-CamVid weights.

What defines each strategy: per_frame equals the Segmenter; an untrained fusion block equals
per_frame bit for bit; keyframe runs the network on keyframes only (and equals per_frame there),
propagates in between, follows a live interval change, and resets on stream breaks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vsda_ros.data.sources import FrameSource
from vsda_ros.temporal.factory import build_strategy
from vsda_ros.temporal.modules import TemporalModules, make_module
from vsda_ros.temporal.strategy import StrategyConfig


@pytest.fixture(scope='module')
def segmenter(real_data):
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.models.zoo import load_model

    torch.set_num_threads(2)
    model = load_model('espnet-camvid', download=False, progress=False)
    return Segmenter(model, SegmenterConfig(input_size=(240, 180)))


@pytest.fixture(scope='module')
def clip(real_data):
    frames = list(FrameSource(real_data / 'camvid' / 'val'))[:6]
    return [f.image for f in frames]


def test_per_frame_equals_segmenter(segmenter, clip):
    s = build_strategy('per_frame', segmenter)
    for img in clip[:2]:
        assert np.array_equal(s.step(img).labels, segmenter.segment(img).labels)


def test_untrained_fusion_equals_per_frame(segmenter, clip):
    s = build_strategy('fusion', segmenter)
    for i, img in enumerate(clip[:3]):
        seg = s.step(img, stamp=i / 15)
        ref = segmenter.segment(img)
        assert np.array_equal(seg.labels, ref.labels)
        assert np.array_equal(seg.confidence, ref.confidence)
        assert ('fusion' in seg.timings_ms) == (i > 0) or i == 0


def test_trained_fusion_uses_the_previous_frame(segmenter, clip):
    block = make_module('fusion', num_classes=segmenter.meta.num_classes)
    with torch.no_grad():  # weight the aligned previous scores: output must now depend on them
        w = block.fuse.weight if hasattr(block, 'fuse') else None
        conv = (
            w
            if w is not None
            else [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)][-1].weight
        )
        c = segmenter.meta.num_classes
        conv[:, c:] += 0.5 * torch.eye(c).view(c, c, 1, 1)
    s = build_strategy('fusion', segmenter, modules=TemporalModules(fusion=block))
    first = s.step(clip[0], 0.0)
    assert np.array_equal(first.labels, segmenter.segment(clip[0]).labels)  # no previous yet
    second = s.step(clip[5], 1 / 15)
    assert not np.array_equal(second.confidence, segmenter.segment(clip[5]).confidence)


def test_keyframe_schedule_and_keyframes_equal_per_frame(segmenter, clip):
    s = build_strategy('keyframe', segmenter, StrategyConfig(keyframe_interval=3))
    flags = []
    for i, img in enumerate(clip):
        seg = s.step(img, stamp=i / 15)
        flags.append(seg.keyframe)
        if seg.keyframe:
            assert np.array_equal(seg.labels, segmenter.segment(img).labels)
            assert 'inference' in seg.timings_ms
        else:
            assert {'flow', 'head'} <= set(seg.timings_ms)
            agree = (seg.labels == segmenter.segment(img).labels).mean()
            assert agree > 0.8, agree  # propagated, yet close to the per-frame answer
    assert flags == [True, False, False, True, False, False]
    s.config.keyframe_interval = 1  # a live change applies from the next frame
    assert s.step(clip[0], stamp=6 / 15).keyframe


def test_stream_break_resets_the_buffer(segmenter, clip):
    s = build_strategy('keyframe', segmenter, StrategyConfig(keyframe_interval=10, max_gap_s=0.5))
    assert s.step(clip[0], 0.0).keyframe
    assert not s.step(clip[1], 0.1).keyframe
    seg = s.step(clip[2], 5.0)  # jump
    assert seg.keyframe and 'jumped' in seg.stream_reset
    seg = s.step(clip[3], 4.0)  # backwards
    assert seg.keyframe and 'backwards' in seg.stream_reset
    small = clip[4][::2, ::2].copy()
    seg = s.step(small, 4.1)  # resolution change
    assert seg.keyframe and 'resolution' in seg.stream_reset
    assert seg.labels.shape == small.shape[:2]
    assert s.step(clip[4][::2, ::2].copy(), 4.2).stream_reset == ''


def test_bad_input_is_refused_without_touching_the_buffer(segmenter, clip):
    s = build_strategy('keyframe', segmenter)
    s.step(clip[0], 0.0)
    with pytest.raises(ValueError):
        s.step(np.zeros((10, 10), np.uint8), 0.05)
    assert not s.step(clip[1], 0.1).keyframe


def test_unknown_strategy_and_bad_config():
    with pytest.raises(ValueError, match='unknown strategy'):
        build_strategy('nope', None)
    with pytest.raises(ValueError, match='keyframe_interval'):
        StrategyConfig(keyframe_interval=0).validate()


def test_modules_round_trip_through_a_checkpoint(tmp_path, segmenter):
    from vsda_ros.models.checkpoint import save_checkpoint

    mods = TemporalModules(
        fusion=make_module('fusion', num_classes=11),
        dmnet=make_module('dmnet'),
        cfnet=make_module('cfnet', out_ch=11),
    )
    path = save_checkpoint(segmenter.model, tmp_path / 'm.pt', extra=mods.to_extra())
    back = TemporalModules.from_checkpoint(path)
    assert back.loaded() == ['fusion', 'dmnet', 'cfnet']
    for k in back.loaded():
        a, b = getattr(mods, k).state_dict(), getattr(back, k).state_dict()
        assert all(torch.equal(a[n], b[n]) for n in a)


def test_corrected_propagation_is_warp_dmnet_cfnet_fcm_then_the_head(segmenter, clip):
    """A non-key frame is exactly FCM(warp(F_prev), CFNet, DMNet) → head (with the modules as
    trained, before the strategy folds their BatchNorms)."""
    import cv2

    from vsda_ros.temporal.correction import fcm
    from vsda_ros.temporal.flow import DISFlow, flow_to_tensor, warp

    torch.manual_seed(0)
    with torch.inference_mode():
        c = segmenter.model.forward_features(torch.zeros(1, 3, 32, 32)).shape[1]
    dm = make_module('dmnet', width=8, downscale=2)
    cf = make_module('cfnet', out_ch=c, width=8, out_stride=4, guide_ch=c, downscale=2)
    for net in (dm, cf):
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    torch.nn.init.normal_(cf.head.weight, std=0.5)
    dm.b.data.fill_(0.0)  # D ≥ 0.5: the correction carries real weight
    dm.eval(), cf.eval()
    strategy = build_strategy(
        'keyframe',
        segmenter,
        StrategyConfig(keyframe_interval=5),
        TemporalModules(dmnet=dm, cfnet=cf),
    )
    key = strategy.step(clip[0], stamp=0.0)
    seg = strategy.step(clip[1], stamp=1 / 15)
    assert key.keyframe and not seg.keyframe and seg.distortion is not None

    model = segmenter.model
    with torch.inference_mode():
        x0, x1 = segmenter.preprocess(clip[0]), segmenter.preprocess(clip[1])
        f0 = model.forward_features(x0)
        h, w = f0.shape[-2:]

        def small(x):
            im = x[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).byte().numpy()
            return cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)

        s0, s1 = small(x0), small(x1)
        flow = flow_to_tensor(DISFlow(strategy.config.flow_preset)(s0, s1))
        t0, t1 = (torch.from_numpy(s).permute(2, 0, 1)[None].float() / 255 for s in (s0, s1))
        f_warp = warp(f0, flow)
        d = dm(warp(t0, flow), t1, out_size=(h, w))
        feat = fcm(f_warp, cf(t1, out_size=(h, w), guide=f_warp), d)
        labels = model.logits_from_features(feat, x1.shape[-2:])
        plain = model.logits_from_features(f_warp, x1.shape[-2:])
    ref_labels, _ = segmenter.postprocess(labels, clip[1].shape[:2])
    plain_labels, _ = segmenter.postprocess(plain, clip[1].shape[:2])
    assert abs(seg.distortion - float(d.mean())) < 1e-5
    assert (seg.labels == ref_labels).mean() > 0.999  # float rounding of the folded BN
    assert (seg.labels != plain_labels).mean() > 0.001  # and the correction did something
