"""Whole-network adaptation recipes (``vsda adapt --recipe source|tps|i2vda|vat_vst|tsl``).

Each recipe is tested for the property that defines it on tiny synthetic data (a toy
conv+BN network, synthetic panning scenes), and the training loop end to end on the real ESPNet
architecture (random weights, 64×48 crops): checkpoints load with ``load_model``, runs are
deterministic and resume exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uda_synthetic import canvas, random_espnet_checkpoint, tiny_model, write_sequence
from vsda_ros.adaptation.config import RECIPES, AdaptConfig
from vsda_ros.adaptation.source_data import LabelledSource, source_lut
from vsda_ros.adaptation.uda.common import (
    IGNORE,
    StrongAugment,
    batch_flow,
    ce_loss,
    confident_labels,
    ema_update,
    lsgan_d_loss,
    lsgan_g_loss,
    to_tensor,
)
from vsda_ros.adaptation.uda.i2vda import I2vdaRecipe, interpolate, interpolation_weights
from vsda_ros.adaptation.uda.source import SourceRecipe
from vsda_ros.adaptation.uda.tps import cross_frame_pseudo_labels
from vsda_ros.adaptation.uda.tsl import TslRecipe, crop, spatial_teacher, weather_degrade
from vsda_ros.adaptation.uda.vat_vst import VatVstRecipe, aggregate_probabilities
from vsda_ros.temporal.flow import DISFlow

torch.set_num_threads(1)


def _cfg(recipe: str, **kw) -> AdaptConfig:
    base = dict(recipe=recipe, target=['unused'], seed=0, batch=1, crop=(64, 48), threads=1)
    base.update(kw)
    cfg = AdaptConfig(**base)
    cfg.validate()
    return cfg


def _with_source(recipe: str, **kw) -> AdaptConfig:
    return _cfg(recipe, source='src', source_labels='lab', **kw)


def _u8(x: torch.Tensor) -> list[np.ndarray]:
    return [
        np.ascontiguousarray(a)
        for a in x.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    ]


# -- shared machinery -----------------------------------------------------------------------------


def test_recipe_registry_matches_the_config():
    from vsda_ros.adaptation.recipes import RECIPE_CLASSES

    assert tuple(RECIPE_CLASSES) == RECIPES


def test_batchnorm_statistics_stay_frozen_while_the_network_trains():
    model = tiny_model(4)
    recipe = SourceRecipe(model, _with_source('source'))
    recipe.train_mode()
    assert model.training and model.net.conv1.training and not model.net.bn.training
    mean, var = model.net.bn.running_mean.clone(), model.net.bn.running_var.clone()
    w = model.net.conv1.weight.clone()
    img, _ = canvas(0, 48, 64)
    labels = np.random.default_rng(0).integers(0, 4, (48, 64)).astype(np.uint8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss, _ = recipe.loss([], ([img, img[:, ::-1].copy()], [labels, labels]))
    loss.backward()
    opt.step()
    assert torch.equal(model.net.bn.running_mean, mean)
    assert torch.equal(model.net.bn.running_var, var)
    assert not torch.equal(model.net.conv1.weight, w)
    assert model.net.bn.weight.grad is not None  # affine BN weights still train


def test_ema_update_math():
    teacher, student = tiny_model(4, seed=1), tiny_model(4, seed=2)
    t0 = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        student.net.bn.running_mean.add_(1.0)
    ema_update(teacher, student, 0.9)
    for name, p in teacher.named_parameters():
        expected = 0.9 * t0[name] + 0.1 * dict(student.named_parameters())[name]
        torch.testing.assert_close(p, expected)
    assert torch.equal(teacher.net.bn.running_mean, student.net.bn.running_mean)


def test_strong_augment_moves_labels_with_their_image():
    aug = StrongAugment(scale=0.5, jitter=0.0, blur=0.0)
    cols = (np.arange(96) // 8).astype(np.uint8)  # 12 vertical bands of 8 px
    rows = (np.arange(64) // 8).astype(np.uint8)[:, None]
    labels = torch.from_numpy((cols[None] + 12 * rows).astype(np.int64))[None]  # unique ids
    image = (labels.float() / 255.0)[:, None].repeat(1, 3, 1, 1)
    params = aug.draw(np.random.default_rng(3), 1, 64, 96)
    y = aug.labels(labels, params)
    x = aug.images(image, params)
    from_image = (x[:, 0] * 255).round().long()
    assert (from_image == y).float().mean() > 0.85  # bilinear edges aside, identical
    assert not torch.equal(y, labels)  # the geometry did change


def test_confident_labels_and_ce_ignore():
    prob = torch.tensor([[[[0.9, 0.4]], [[0.1, 0.6]]]])  # 1×2×1×2: two classes, two pixels
    assert confident_labels(prob, 0.7).tolist() == [[[0, IGNORE]]]
    # class balance: the rare, unconfident class keeps its most confident half
    prob = torch.tensor(
        [[[[0.95, 0.9, 0.3, 0.4, 0.2, 0.1]], [[0.05, 0.1, 0.7, 0.6, 0.8, 0.9]]]]
    )  # class 1 at 0.6..0.9
    assert confident_labels(prob, 0.95).tolist() == [[[0] + [IGNORE] * 5]]
    balanced = confident_labels(prob, 0.95, class_balance=0.5).tolist()
    assert balanced == [[[0, IGNORE, IGNORE, IGNORE, 1, 1]]]
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    none = torch.full((1, 4, 4), IGNORE)
    loss = ce_loss(logits, none)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.count_nonzero(logits.grad) == 0


# -- source ---------------------------------------------------------------------------------------


def test_source_recipe_fits_the_labels_and_skips_void(tmp_path):
    write_sequence(
        tmp_path / 'img', 4, size=(64, 48), step=9, prefix='src', seed=5, labels=tmp_path / 'lab'
    )
    src = LabelledSource.load(tmp_path / 'img', tmp_path / 'lab', num_classes=11, height=48)
    assert len(src) == 4 and all(lab.max() <= 10 or IGNORE in lab for lab in src.labels)
    assert (src.labels[0] == IGNORE).any() and not (src.labels[0] == 11).any()  # void → ignore
    model = tiny_model(11)
    recipe = SourceRecipe(model, _with_source('source'))
    batch = (src.images[:2], src.labels[:2])
    y = torch.from_numpy(np.stack(batch[1])).long()
    keep = y != IGNORE

    def accuracy():
        with torch.no_grad():
            pred = model(to_tensor(batch[0], 'cpu')).argmax(1)
        return float((pred == y)[keep].float().mean())

    before = accuracy()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        recipe.train_mode()
        loss, logs = recipe.loss([], batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert accuracy() > max(0.8, before + 0.2)


def test_cityscapes_layout_source_becomes_train_ids(tmp_path):
    import cv2

    img, _ = canvas(9, 48, 64)
    ids = np.full((48, 64), 7, np.uint8)  # label id 7 = road → train id 0
    ids[:10] = 23  # sky → 10
    ids[-5:] = 4  # a void id → ignore
    (tmp_path / 'img').mkdir()
    (tmp_path / 'gt').mkdir()
    cv2.imwrite(str(tmp_path / 'img' / 'aachen_000000_000019_leftImg8bit.png'), img)
    cv2.imwrite(str(tmp_path / 'gt' / 'aachen_000000_000019_gtFine_labelIds.png'), ids)
    src = LabelledSource.load(tmp_path / 'img', tmp_path / 'gt', num_classes=19, height=48)
    lab = src.labels[0]
    assert lab[20, 5] == 0 and lab[0, 0] == 10 and lab[-1, 0] == IGNORE
    cams = LabelledSource.load(
        tmp_path / 'img', tmp_path / 'gt', num_classes=11, source_map='cityscapes-camvid', height=48
    )
    assert cams.labels[0][20, 5] == 3 and cams.labels[0][0, 0] == 0  # road, sky in CamVid ids
    images, labels = src.sample(np.random.default_rng(0), 2, (32, 24))
    assert images[0].shape == (24, 32, 3) and labels[0].shape == (24, 32)


def test_source_maps():
    lut = source_lut('camvid-cityscapes', 19)
    assert lut[3] == 0 and lut[0] == 10 and lut[8] == 13 and lut[11] == IGNORE
    assert source_lut(None, 11)[10] == 10 and source_lut(None, 11)[11] == IGNORE
    with pytest.raises(ValueError, match='classes'):
        source_lut('camvid-cityscapes', 11)


# -- tps ------------------------------------------------------------------------------------------


def _translated_pair():
    """prev and cur crops of one scene with cur(p) = prev(p + (−3, −2))."""
    img, _ = canvas(1, 70, 110)
    prev = img[4:52, 5:69]
    cur = img[2:50, 2:66]
    return (
        to_tensor([np.ascontiguousarray(prev)], 'cpu'),
        to_tensor([np.ascontiguousarray(cur)], 'cpu'),
    )


def test_tps_pseudo_label_is_the_shifted_previous_prediction():
    model = tiny_model(4)
    prev, cur = _translated_pair()
    with torch.no_grad():
        conf, lab = torch.softmax(model(prev), 1).max(1)
    thr = float(conf.median())
    flow = torch.zeros(1, 2, 48, 64)
    flow[:, 0], flow[:, 1] = -3.0, -2.0
    pseudo, _ = cross_frame_pseudo_labels(model, prev, cur, flow, thr)
    expected = torch.full_like(lab, IGNORE)
    shifted_lab, shifted_conf = lab[:, :-2, :-3], conf[:, :-2, :-3]
    expected[:, 2:, 3:] = torch.where(
        shifted_conf >= thr, shifted_lab, torch.full_like(shifted_lab, IGNORE)
    )
    assert torch.equal(pseudo, expected)
    assert 0.2 < float((pseudo != IGNORE).float().mean()) < 0.6  # both cases present

    # the same with real DIS flow: the recipe's path
    dis = batch_flow(DISFlow('fast'), cur, prev)
    assert abs(float(dis[0, 0].median()) + 3) < 0.5 and abs(float(dis[0, 1].median()) + 2) < 0.5
    pseudo_dis, _ = cross_frame_pseudo_labels(model, prev, cur, dis, 0.0)
    expected_all, _ = cross_frame_pseudo_labels(model, prev, cur, flow, 0.0)
    inner = (slice(None), slice(6, -6), slice(6, -6))
    assert float((pseudo_dis[inner] == expected_all[inner]).float().mean()) > 0.9


# -- i2vda ----------------------------------------------------------------------------------------


def _panning_pair(shift: int = 6):
    img, _ = canvas(2, 60, 120)
    x0 = to_tensor([np.ascontiguousarray(img[:, 10:90])], 'cpu')
    x1 = to_tensor([np.ascontiguousarray(img[:, 10 + shift : 90 + shift])], 'cpu')
    return img, x0, x1


def test_i2vda_interpolated_frame_endpoints_and_midpoint():
    img, x0, x1 = _panning_pair(6)
    dis = DISFlow('fast')
    f10, f01 = batch_flow(dis, x1, x0), batch_flow(dis, x0, x1)
    for t, expected in ((0.0, x0), (1.0, x1)):  # exact endpoints, whatever the flow
        ft0, ft1, alpha, _, _ = interpolation_weights(f10, f01, t)
        torch.testing.assert_close(
            interpolate(x0, x1, ft0, ft1, alpha), expected, atol=1e-5, rtol=0
        )
    # with the true flows (I1(p) = I0(p + 6)), t = ½ is the scene shifted by 3 px
    f10 = torch.zeros(1, 2, 60, 80)
    f10[:, 0] = 6.0
    f01 = -f10
    ft0, ft1, alpha, v0, v1 = interpolation_weights(f10, f01, 0.5)
    mid = interpolate(x0, x1, ft0, ft1, alpha)
    truth = to_tensor([np.ascontiguousarray(img[:, 13:93])], 'cpu')
    assert bool((v0 | v1).all()) and not bool(v0.all()) and not bool(v1.all())
    torch.testing.assert_close(mid, truth, atol=1e-4, rtol=0)  # each edge from its frame
    assert not torch.allclose(mid, x0, atol=0.05)


def test_i2vda_proxy_refreshes_at_L_then_every_K():
    model = tiny_model(4)
    recipe = I2vdaRecipe(model, _with_source('i2vda', proxy_launch=5, proxy_interval=10))
    for i in range(30):
        with torch.no_grad():
            model.net.conv2.bias.add_(1.0)  # the network keeps changing
        before = recipe.proxy.net.conv2.bias.clone()
        recipe.begin_step(i)
        assert recipe.proxy_active() == (i >= 5)
        same = torch.equal(recipe.proxy.net.conv2.bias, model.net.conv2.bias)
        assert same == (i in (5, 15, 25))
        if i not in (5, 15, 25):
            assert torch.equal(recipe.proxy.net.conv2.bias, before)
    assert recipe.refreshed_at == [5, 15, 25]
    # without a source set there is nothing to learn before the proxy: L = 0
    free = I2vdaRecipe(tiny_model(4), _cfg('i2vda', proxy_launch=5, proxy_interval=10))
    for i in range(21):
        free.begin_step(i)
    assert free.refreshed_at == [0, 10, 20]


def test_lsgan_targets():
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    assert float(lsgan_d_loss(ones, zeros)) == 0.0  # source → 1, target → 0
    assert float(lsgan_d_loss(zeros, ones)) == 1.0
    assert float(lsgan_g_loss(ones)) == 0.0  # target should look like source
    assert float(lsgan_g_loss(zeros)) == 1.0


def test_i2vda_adversarial_term_trains_the_network_not_the_discriminator():
    img, x0, x1 = _panning_pair(4)
    clips = [[_u8(x0)[0], _u8(x1)[0]]]
    src_img, src_lab = canvas(3, 60, 80)
    source = ([src_img], [np.where(src_lab < 4, src_lab, IGNORE).astype(np.uint8)])

    def grads(adv_weight):
        model = tiny_model(4)
        torch.manual_seed(0)
        recipe = I2vdaRecipe(
            model, _with_source('i2vda', proxy_launch=0, proxy_interval=5, adv_weight=adv_weight)
        )
        recipe.train_mode()
        recipe.begin_step(0)
        loss, logs = recipe.loss(clips, source)
        loss.backward()
        assert {'proxy', 'source', 'adv', 'disc'} <= set(logs)
        return (
            [p.grad.clone() for p in recipe.disc.parameters()],
            model.net.conv1.weight.grad.clone(),
        )

    d0, n0 = grads(0.0)
    d1, n1 = grads(10.0)
    for a, b in zip(d0, d1, strict=False):
        torch.testing.assert_close(a, b)  # D sees only its own loss
    assert not torch.allclose(n0, n1)  # the network gets the adversarial term


# -- vat_vst --------------------------------------------------------------------------------------


def test_vst_aggregated_pseudo_label_of_a_static_clip_is_the_single_frame_one():
    model = tiny_model(4)
    recipe = VatVstRecipe(model, _cfg('vat_vst', clip_frames=3))
    recipe.begin_step(0)  # no source: VST from the start
    img, _ = canvas(4, 48, 64)
    x = to_tensor([img], 'cpu')
    with torch.no_grad():
        prob = torch.softmax(recipe.labeller(x), 1)
    recipe.cfg.confidence = float(prob.max(1).values.median())
    single = confident_labels(prob, recipe.cfg.confidence)
    labels = recipe.aggregated_labels([x, x.clone(), x.clone()])
    assert torch.equal(labels, single)
    assert (labels != IGNORE).any() and (labels == IGNORE).any()
    # neighbours do count: a different neighbour changes the averaged probabilities
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
        q = torch.softmax(model(1 - x), 1)
    agg = aggregate_probabilities(
        [q, p, q], [torch.zeros(1, 2, 48, 64), None, torch.zeros(1, 2, 48, 64)]
    )
    torch.testing.assert_close(agg, (2 * q + p) / 3)


def test_vst_aggregation_warps_neighbours_onto_the_middle_frame():
    model = tiny_model(4)
    img, _ = canvas(8, 48, 80)
    xs = [to_tensor([np.ascontiguousarray(img[:, 2 * k : 2 * k + 64])], 'cpu') for k in range(3)]
    with torch.no_grad():
        probs = [torch.softmax(model(x), 1) for x in xs]
    flows = [torch.zeros(1, 2, 48, 64), None, torch.zeros(1, 2, 48, 64)]
    flows[0][:, 0], flows[2][:, 0] = 2.0, -2.0  # middle(p) = first(p + 2) = last(p − 2)
    agg = aggregate_probabilities(probs, flows)
    inner = (..., slice(1, -1), slice(4, -4))  # the conv net is shift-equivariant here
    torch.testing.assert_close(agg[inner], probs[1][inner], atol=1e-5, rtol=0)
    unwarped = aggregate_probabilities(
        probs, [torch.zeros(1, 2, 48, 64), None, torch.zeros(1, 2, 48, 64)]
    )
    assert (unwarped[inner] - probs[1][inner]).abs().max() > 0.05
    # the recipe's path with DIS flow
    recipe = VatVstRecipe(model, _cfg('vat_vst', clip_frames=3, confidence=0.0))
    recipe.begin_step(0)
    labels = recipe.aggregated_labels(xs)
    single = probs[1].argmax(1)
    assert float((labels[inner] == single[inner]).float().mean()) > 0.9


def test_vat_switches_to_vst_at_the_configured_iteration():
    model = tiny_model(4)
    recipe = VatVstRecipe(
        model, _with_source('vat_vst', clip_frames=2, vst_start=2, confidence=0.3)
    )
    img, lab = canvas(5, 48, 100)
    clips = [[np.ascontiguousarray(img[:, k * 3 : k * 3 + 64]) for k in range(2)]]
    source = (
        [np.ascontiguousarray(img[:, 30:94])],
        [np.where(lab[:, 30:94] < 4, lab[:, 30:94], IGNORE).astype(np.uint8)],
    )
    opt = torch.optim.AdamW(
        [g for grp in recipe.param_groups(1e-2) for g in grp['params']], lr=1e-2
    )
    stages, disc_states = [], []
    for i in range(4):
        recipe.train_mode()
        recipe.begin_step(i)
        if i == 2:
            assert all(
                torch.equal(a, b)
                for a, b in zip(recipe.labeller.parameters(), model.parameters(), strict=False)
            )
        loss, logs = recipe.loss(clips, source)
        opt.zero_grad()
        loss.backward()
        opt.step()
        stages.append(('adv' in logs, 'vst' in logs))
        disc_states.append([p.detach().clone() for p in recipe.disc.parameters()])
    assert stages == [(True, False), (True, False), (False, True), (False, True)]
    assert recipe.switched_at == 2
    assert not all(torch.equal(a, b) for a, b in zip(disc_states[0], disc_states[1], strict=False))
    assert all(torch.equal(a, b) for a, b in zip(disc_states[1], disc_states[3], strict=False))


# -- tsl ------------------------------------------------------------------------------------------


def test_spatial_teacher_output_covers_exactly_the_students_crop():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 64), indexing='ij')
    frame = torch.stack([xx, yy, 0.5 + 0.3 * torch.sin(3 * xx + 2 * yy)])[None]
    seen = []

    def identity(x):  # a "network" whose logits are its input
        seen.append(tuple(x.shape[-2:]))
        return x

    box = (20, 9, 24, 18)
    out = spatial_teacher(identity, frame, box, 2.0)
    assert seen == [(36, 48)]  # the crop at twice the resolution
    assert out.shape[-2:] == (18, 24)
    inner = (..., slice(1, -1), slice(1, -1))
    torch.testing.assert_close(out[inner], crop(frame, box)[inner], atol=2e-3, rtol=0)
    shifted = crop(frame, (21, 9, 24, 18))
    assert (out[inner] - shifted[inner]).abs().max() > 1e-2
    seen.clear()
    out = spatial_teacher(identity, frame, box, (2.0, 1.5))  # anisotropic zoom
    assert seen == [(27, 48)] and out.shape[-2:] == (18, 24)
    torch.testing.assert_close(out[inner], crop(frame, box)[inner], atol=5e-3, rtol=0)


def test_tsl_weather_only_reaches_the_student_and_teachers_follow_by_ema():
    model = tiny_model(4)
    cfg = _cfg('tsl', crop=(64, 48), tsl_crop=(32, 24), confidence=0.0, ema=0.9)
    recipe = TslRecipe(model, cfg, degrade=lambda frames, rng: [np.zeros_like(f) for f in frames])
    teacher_in, student_in = [], []
    recipe.teacher.register_forward_pre_hook(lambda m, a: teacher_in.append(a[0].clone()))
    model.register_forward_pre_hook(lambda m, a: student_in.append(a[0].clone()))
    img, _ = canvas(6, 48, 80)
    clip = [np.ascontiguousarray(img[:, 0:64]), np.ascontiguousarray(img[:, 3:67])]
    recipe.train_mode()
    loss, logs = recipe.loss([clip], None)
    prev, cur = to_tensor([clip[0]], 'cpu'), to_tensor([clip[1]], 'cpu')
    assert torch.equal(teacher_in[0], torch.cat([cur, prev]))  # clean full frames
    assert all(float(t.abs().sum()) > 0 for t in teacher_in)  # never degraded
    assert teacher_in[1].shape[-2:] == (48, 64)  # 32×24 crop, zoom 2
    assert len(student_in) == 1 and student_in[0].shape == (2, 3, 24, 32)
    assert float(student_in[0].abs().sum()) == 0.0  # weather-only input
    loss.backward()
    assert recipe.fusion.fuse.weight.grad is not None  # fusion block trains
    assert model.net.conv1.weight.grad is not None  # and the network
    t0 = [p.clone() for p in recipe.teacher_fusion.parameters()]
    with torch.no_grad():
        for p in recipe.fusion.parameters():
            p.add_(1.0)
    recipe.after_step()
    for t, before, s in zip(
        recipe.teacher_fusion.parameters(), t0, recipe.fusion.parameters(), strict=False
    ):
        torch.testing.assert_close(t, 0.9 * before + 0.1 * s)


def test_tsl_trains_the_image_guided_block_on_the_degraded_crops(tmp_path):
    from vsda_ros.models.checkpoint import save_checkpoint
    from vsda_ros.temporal.guided_fusion import GuidedFusionBlock
    from vsda_ros.temporal.modules import TemporalModules, make_module

    model = tiny_model(4)
    init = make_module(
        'fusion', variant='guided', num_classes=4, scale=0.25, num_deform=0, frame_gate=True
    )
    with torch.no_grad():
        init.temperature.fill_(3.0)
    ckpt = save_checkpoint(model, tmp_path / 'init.pt', TemporalModules(fusion=init).to_extra())
    cfg = _cfg(
        'tsl',
        crop=(64, 48),
        tsl_crop=(32, 24),
        confidence=0.0,
        fusion_scale=0.25,
        fusion_variant='guided',
        fusion_num_deform=0,
        fusion_frame_gate=True,
        fusion_frame_cues=True,
        fusion_init=str(ckpt),
        fusion_lr=1e-3,
    )
    recipe = TslRecipe(model, cfg)
    assert {g['name']: g['lr'] for g in recipe.param_groups(3e-5)} == {
        'network': 3e-5,
        'fusion': 1e-3,
    }
    assert isinstance(recipe.fusion, GuidedFusionBlock) and recipe.fusion.frame_cues
    assert float(recipe.fusion.temperature.detach()) == 3.0  # warm-started
    guided = []
    recipe.fusion.register_forward_pre_hook(lambda m, a: guided.append(a[2].shape))
    img, _ = canvas(6, 48, 80)
    clip = [np.ascontiguousarray(img[:, 0:64]), np.ascontiguousarray(img[:, 3:67])]
    recipe.train_mode()
    loss, _ = recipe.loss([clip], None)
    assert guided and guided[0][-2:] == (6, 8)  # the 32×24 crop's guide
    loss.backward()
    assert recipe.fusion.encoder[0].weight.grad is not None
    assert recipe.fusion.frame_head[-1].weight.grad is not None
    assert isinstance(recipe.export().fusion, GuidedFusionBlock)


def test_tsl_weather_degradation_is_temporal_and_seeded():
    degrade = weather_degrade(['fog', 'night'], (0.5, 0.9))
    img, _ = canvas(7, 48, 64)
    frames = [img, img.copy()]
    a = degrade(frames, np.random.default_rng(1))
    b = degrade(frames, np.random.default_rng(1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=False))
    assert not np.array_equal(a[0], img) and a[0].shape == img.shape


# -- the training loop end to end -----------------------------------------------------------------


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp('uda')
    write_sequence(root / 'target', 8, size=(96, 72), step=2, prefix='tgt', seed=11)
    write_sequence(
        root / 'source',
        4,
        size=(96, 72),
        step=20,
        prefix='src',
        seed=12,
        labels=root / 'source_labels',
    )
    write_sequence(
        root / 'val', 3, size=(96, 72), step=2, prefix='val', seed=13, labels=root / 'val_labels'
    )
    return {'root': root, 'model': str(random_espnet_checkpoint(root / 'base.pt'))}


def _train_cfg(synthetic, recipe, out, **kw):
    r = synthetic['root']
    base = dict(
        recipe=recipe,
        model=synthetic['model'],
        target=[str(r / 'target')],
        source=str(r / 'source'),
        source_labels=str(r / 'source_labels'),
        out=str(out),
        iterations=2,
        batch=1,
        crop=(64, 48),
        height=72,
        threads=1,
        seed=4,
        save_every=1,
        confidence=0.0,
        proxy_launch=1,
        proxy_interval=1,
        vst_start=1,
        clip_frames=2,
        lr=1e-3,
        val=str(r / 'val'),
        val_labels=str(r / 'val_labels'),
        eval_every=1,
        val_size=(64, 48),
    )
    base.update(kw)
    return AdaptConfig(**base)


@pytest.mark.parametrize('recipe', ['source', 'tps', 'i2vda', 'vat_vst', 'tsl'])
def test_recipe_trains_and_writes_a_checkpoint_load_model_reads(recipe, synthetic, tmp_path):
    from vsda_ros.adaptation.train import weights_digest
    from vsda_ros.inference import Segmenter, SegmenterConfig
    from vsda_ros.models.zoo import load_model
    from vsda_ros.temporal.factory import build_strategy
    from vsda_ros.temporal.modules import TemporalModules

    out = tmp_path / f'{recipe}.pt'
    summary = train_quiet(_train_cfg(synthetic, recipe, out))
    assert summary['iterations'] == 2 and all(np.isfinite(summary['losses']))
    adapted, base = load_model(str(out)), load_model(synthetic['model'])
    assert adapted.meta.provenance['adapt_recipe'] == recipe
    assert weights_digest(adapted) == summary['weights_sha256'] != weights_digest(base)
    evals = summary['evaluations']
    assert [e['iteration'] for e in evals] == [0, 1, 2]
    assert all(0 <= e['per_frame_miou'] <= 100 for e in evals)
    mods = TemporalModules.from_checkpoint(out)
    assert mods.loaded() == (['fusion'] if recipe == 'tsl' else [])
    if recipe == 'tsl':
        assert 'fusion_miou' in evals[-1]
        strategy = build_strategy(
            'fusion', Segmenter(adapted, SegmenterConfig((64, 48))), None, mods
        )
        frame = np.zeros((72, 96, 3), np.uint8)
        assert strategy.step(frame).labels.shape == (72, 96)


def train_quiet(cfg):
    from vsda_ros.adaptation.train import train

    return train(cfg, progress=False)


def test_same_seed_same_losses_and_exact_resume(synthetic, tmp_path, monkeypatch):
    kw = dict(iterations=3, eval_every=0, val=None, val_labels=None)
    a = train_quiet(_train_cfg(synthetic, 'tps', tmp_path / 'a.pt', **kw))
    b = train_quiet(_train_cfg(synthetic, 'tps', tmp_path / 'b.pt', **kw))
    assert a['losses'] == b['losses'] and a['weights_sha256'] == b['weights_sha256']
    c = train_quiet(_train_cfg(synthetic, 'tps', tmp_path / 'c.pt', seed=5, **kw))
    assert c['losses'] != a['losses']
    # an interrupted run (killed while starting iteration 3) resumes to the same result
    from vsda_ros.adaptation.uda.tps import TpsRecipe

    original = TpsRecipe.begin_step

    def crash(self, i):
        if i == 2:
            raise KeyboardInterrupt
        original(self, i)

    monkeypatch.setattr(TpsRecipe, 'begin_step', crash)
    with pytest.raises(KeyboardInterrupt):
        train_quiet(_train_cfg(synthetic, 'tps', tmp_path / 'd.pt', **kw))
    monkeypatch.setattr(TpsRecipe, 'begin_step', original)
    d = train_quiet(_train_cfg(synthetic, 'tps', tmp_path / 'd.pt', **kw))
    assert d['losses'] == a['losses'] and d['weights_sha256'] == a['weights_sha256']


def test_config_validation_for_the_new_recipes():
    with pytest.raises(ValueError, match='labelled source'):
        AdaptConfig(recipe='source').validate()
    with pytest.raises(ValueError, match='go together'):
        AdaptConfig(recipe='tps', target=['x'], source='a').validate()
    with pytest.raises(ValueError, match='train_base'):
        AdaptConfig(recipe='tps', target=['x'], train_base=False).validate()
    with pytest.raises(ValueError, match='train_base'):
        AdaptConfig(recipe='fusion', target=['x'], train_base=True).validate()
    with pytest.raises(ValueError, match='source_map'):
        AdaptConfig(recipe='tps', target=['x'], source_map='nope').validate()
    cfg = AdaptConfig(recipe='tsl', target=['x'], train_base=False)
    cfg.validate()
    assert not cfg.trains_base and AdaptConfig(recipe='tps').learning_rate == 5e-5
    assert AdaptConfig(recipe='davss').learning_rate == 2e-3
