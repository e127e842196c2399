"""Keyframe propagation pieces: DIS flow, warping, DMNet, CFNet and the FCM (CPU, fast)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vsda_ros.temporal.correction import CFNet, DMNet, fcm, gflops
from vsda_ros.temporal.flow import DISFlow, flow_to_tensor, warp

SHIFT = (3, 2)  # content moves by +3 px in x, +2 px in y from src to dst


def _textured(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """H×W×3 uint8 RGB smooth random texture (trackable by DIS)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 255.0
    return img.astype(np.uint8)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope='module')
def pair() -> tuple[np.ndarray, np.ndarray]:
    src = _textured()
    dst = np.roll(src, shift=(SHIFT[1], SHIFT[0]), axis=(0, 1))  # dst(p) = src(p − shift)
    return src, dst


@pytest.mark.parametrize('preset', ['ultrafast', 'balanced'])
def test_dis_flow_recovers_shift_and_matches_warp(pair, preset) -> None:
    src, dst = pair
    flow = DISFlow(preset)(src, dst)
    assert flow.shape == (*src.shape[:2], 2) and flow.dtype == np.float32
    inner = flow[10:-10, 10:-10]
    # dst(p) = src(p − shift) ⇒ backward flow = −shift
    assert abs(np.median(inner[..., 0]) + SHIFT[0]) < 0.5
    assert abs(np.median(inner[..., 1]) + SHIFT[1]) < 0.5

    s, d = _to_tensor(src), _to_tensor(dst)
    warped = warp(s, flow_to_tensor(flow))
    err_warped = (warped - d)[..., 10:-10, 10:-10].abs().mean()
    err_plain = (s - d)[..., 10:-10, 10:-10].abs().mean()
    assert err_warped < 0.25 * err_plain


def test_dis_flow_size_and_errors(pair) -> None:
    src, dst = pair
    flow = DISFlow('fast', size=(80, 60))(src, dst)
    assert flow.shape == (60, 80, 2)
    assert abs(np.median(flow[5:-5, 5:-5, 0]) + SHIFT[0] / 2) < 0.5
    with pytest.raises(ValueError):
        DISFlow('turbo')
    with pytest.raises(ValueError):
        DISFlow()(src, dst[:-1])
    with pytest.raises(ValueError):
        DISFlow()(src.astype(np.float32), dst)
    with pytest.raises(ValueError):
        DISFlow()(src[:8, :8], dst[:8, :8])


def test_warp_zero_flow_is_identity() -> None:
    x = torch.randn(2, 5, 13, 17)
    out = warp(x, torch.zeros(2, 2, 13, 17))
    assert torch.allclose(out, x, atol=1e-5)
    # a half-resolution zero flow as well (resized internally)
    assert torch.allclose(warp(x, torch.zeros(1, 2, 7, 9)), x, atol=1e-5)


def test_warp_integer_translation() -> None:
    src = _to_tensor(_textured(40, 50, seed=1))
    dx, dy = 4, -3
    dst = torch.roll(src, shifts=(dy, dx), dims=(2, 3))  # dst(p) = src(p − (dx, dy))
    flow = torch.empty(1, 2, 40, 50)
    flow[:, 0], flow[:, 1] = -dx, -dy
    out = warp(src, flow)
    assert torch.allclose(out[..., 5:-5, 5:-5], dst[..., 5:-5, 5:-5], atol=1e-5)


def test_warp_resizes_flow() -> None:
    src = _to_tensor(_textured(40, 60, seed=2))
    dst = torch.roll(src, shifts=(2, 4), dims=(2, 3))
    half = torch.empty(1, 2, 20, 30)
    half[:, 0], half[:, 1] = -2.0, -1.0  # pixels of the half-resolution grid
    out = warp(src, half)  # → (−4, −2) px on the 40×60 grid
    assert torch.allclose(out[..., 5:-5, 5:-5], dst[..., 5:-5, 5:-5], atol=1e-4)
    with pytest.raises(ValueError):
        warp(src, torch.zeros(1, 3, 40, 60))


def test_dmnet_range_shape_and_ordering() -> None:
    torch.manual_seed(0)
    net = DMNet().eval()
    a = _to_tensor(_textured(45, 61, seed=3))
    b = _to_tensor(_textured(45, 61, seed=4))
    with torch.no_grad():
        same = net(a, a)
        diff = net(a, 1.0 - b)
        big = net(a, b, out_size=(45, 61))
    assert same.shape == (1, 1, 23, 31) and big.shape == (1, 1, 45, 61)
    for d in (same, diff, big):
        assert float(d.min()) >= 0.0 and float(d.max()) <= 1.0
    floor = torch.sigmoid(net.b.detach())
    assert torch.allclose(same, floor.expand_as(same), atol=1e-5)
    assert float(diff.mean()) > float(same.mean()) + 1e-3
    with torch.no_grad():
        logit = net(a, b, return_logit=True)
        assert torch.allclose(torch.sigmoid(logit), net(a, b), atol=1e-6)
    with pytest.raises(ValueError):
        net(a, b[..., :-1])


@pytest.mark.parametrize('hw', [(360, 480), (180, 240), (45, 61)])
@pytest.mark.parametrize('out_ch', [11, 32])
def test_cfnet_shapes(hw: tuple[int, int], out_ch: int) -> None:
    net = CFNet(out_ch).eval()
    h, w = hw
    with torch.no_grad():
        y = net(torch.rand(1, 3, h, w))
        z = net(torch.rand(1, 3, h, w), out_size=(7, 9))
    assert y.shape == (1, out_ch, (h + 1) // 2, (w + 1) // 2)
    assert z.shape == (1, out_ch, 7, 9)


def test_cfnet_other_strides() -> None:
    x = torch.rand(1, 3, 45, 61)
    assert CFNet(4, out_stride=4).eval()(x).shape == (1, 4, 12, 16)
    assert CFNet(4, out_stride=8).eval()(x).shape == (1, 4, 6, 8)
    with pytest.raises(ValueError):
        CFNet(4, out_stride=3)


def test_fcm_endpoints_and_resize() -> None:
    fw, fc = torch.randn(2, 8, 10, 12), torch.randn(2, 8, 10, 12)
    assert torch.equal(fcm(fw, fc, torch.zeros(2, 1, 10, 12)), fw)
    assert torch.equal(fcm(fw, fc, torch.ones(2, 1, 10, 12)), fc)
    half = fcm(fw, fc, torch.full((2, 1, 5, 6), 0.5))  # resized to 10×12
    assert torch.allclose(half, (fw + fc) / 2, atol=1e-6)
    with pytest.raises(ValueError):
        fcm(fw, fc[:, :4], torch.zeros(2, 1, 10, 12))


def test_gradients_flow_through_correction() -> None:
    torch.manual_seed(0)
    dm, cf = DMNet(), CFNet(6)
    prev, cur = torch.rand(2, 3, 32, 40), torch.rand(2, 3, 32, 40)
    fw = torch.randn(2, 6, 16, 20)
    d = dm(prev, cur)
    out = fcm(fw, cf(cur), d)
    loss = out.square().mean() + torch.nn.functional.binary_cross_entropy_with_logits(
        dm(prev, cur, return_logit=True), torch.ones(2, 1, 16, 20)
    )
    loss.backward()
    for net in (dm, cf):
        grads = [p.grad for p in net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(float(g.abs().sum()) > 0 for g in grads)


def test_gflops_positive() -> None:
    x = torch.rand(1, 3, 64, 80)
    assert gflops(CFNet(11).eval(), x) > 0
    assert gflops(DMNet().eval(), x, x) > 0


def test_guided_cfnet_starts_as_the_warped_features_and_learns_a_residual():
    import torch

    from vsda_ros.temporal.correction import CFNet

    net = CFNet(out_ch=5, width=8, guide_ch=5)
    x = torch.rand(2, 3, 45, 61)
    guide = torch.randn(2, 5, 45, 61)
    assert torch.allclose(net(x, guide=guide), guide)
    with pytest.raises(ValueError, match='guided'):
        net(x)
    net(x, guide=guide).pow(2).sum().backward()
    assert net.head.weight.grad is not None and net.head.weight.grad.abs().sum() > 0


def _randomise_batchnorm(net: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


@pytest.mark.parametrize('downscale', [2, 4])
def test_downscaled_modules_work_at_the_pooled_resolution(downscale: int) -> None:
    x, y = _to_tensor(_textured(45, 61, seed=1)), _to_tensor(_textured(45, 61, seed=2))
    dm = DMNet(width=8, downscale=downscale).eval()
    cf = CFNet(5, width=8, out_stride=2, guide_ch=5, downscale=downscale).eval()
    guide = torch.randn(1, 5, 45, 61)
    with torch.no_grad():
        pooled = -(-45 // downscale), -(-61 // downscale)  # ceil_mode pooling
        assert dm(x, y).shape == (1, 1, -(-pooled[0] // 2), -(-pooled[1] // 2))
        assert dm(x, y, out_size=(45, 61)).shape == (1, 1, 45, 61)
        # identical images still give the floor: pooling is applied to both sides alike
        assert torch.allclose(
            dm(x, x), torch.sigmoid(dm.b).expand(1, 1, *dm(x, x).shape[-2:]), atol=1e-5
        )
        # guided output lives on the guide's grid and starts as the guide
        assert torch.allclose(cf(x, guide=guide), guide)
    with pytest.raises(ValueError, match='downscale'):
        DMNet(downscale=3)
    with pytest.raises(ValueError, match='downscale'):
        CFNet(5, downscale=0)


def test_fold_batchnorm_is_the_same_function_and_leaves_the_original_alone() -> None:
    from vsda_ros.temporal.correction import fold_batchnorm
    from vsda_ros.temporal.modules import make_module

    torch.manual_seed(0)
    dm = make_module('dmnet', width=8, downscale=2)
    cf = make_module('cfnet', out_ch=5, width=8, out_stride=4, guide_ch=5, downscale=2)
    for i, net in enumerate((dm, cf)):
        _randomise_batchnorm(net, seed=i)
        torch.nn.init.normal_(net.head.weight, std=0.1) if net is cf else None
        net.eval()
    x, y = _to_tensor(_textured(45, 61, seed=1)), _to_tensor(_textured(45, 61, seed=2))
    guide = torch.randn(1, 5, 45, 61)
    fdm, fcf = fold_batchnorm(dm), fold_batchnorm(cf)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fdm.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fcf.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in dm.modules())  # original intact
    assert fdm.vsda_args == dm.vsda_args and fcf.guide_ch == 5 and fcf.downscale == 2
    with torch.no_grad():
        assert torch.allclose(fdm(x, y, return_logit=True), dm(x, y, return_logit=True), atol=1e-4)
        ref = cf(x, guide=guide)
        assert not torch.allclose(ref, guide)  # the residual is not zero
        assert torch.allclose(fcf(x, guide=guide), ref, atol=1e-5)


@pytest.mark.parametrize('guided', [False, True])
def test_cfnet_correct_is_the_fcm(guided: bool) -> None:
    torch.manual_seed(0)
    cf = CFNet(5, width=8, out_stride=4, guide_ch=5 if guided else 0, downscale=2).eval()
    torch.nn.init.normal_(cf.head.weight, std=0.3)
    x, fw = torch.rand(2, 3, 45, 61), torch.randn(2, 5, 45, 61)
    d = torch.rand(2, 1, 12, 16)
    with torch.no_grad():
        ref = fcm(fw, cf(x, out_size=(45, 61), guide=fw if guided else None), d)
        assert torch.allclose(cf.correct(x, fw, d), ref, atol=1e-5)
        assert torch.allclose(cf.correct(x, fw, torch.zeros(2, 1, 45, 61)), fw)
