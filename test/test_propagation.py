"""Keyframe propagation pieces: DIS flow, warping, DMNet, CFNet and the FCM (CPU, fast)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vsda_ros.temporal.correction import CFNet, DMNet, fcm, gflops
from vsda_ros.temporal.flow import DISFlow, flow_to_tensor, warp

SHIFT = (3, 2)   # content moves by +3 px in x, +2 px in y from src to dst


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
    dst = np.roll(src, shift=(SHIFT[1], SHIFT[0]), axis=(0, 1))   # dst(p) = src(p − shift)
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
    dst = torch.roll(src, shifts=(dy, dx), dims=(2, 3))   # dst(p) = src(p − (dx, dy))
    flow = torch.empty(1, 2, 40, 50)
    flow[:, 0], flow[:, 1] = -dx, -dy
    out = warp(src, flow)
    assert torch.allclose(out[..., 5:-5, 5:-5], dst[..., 5:-5, 5:-5], atol=1e-5)


def test_warp_resizes_flow() -> None:
    src = _to_tensor(_textured(40, 60, seed=2))
    dst = torch.roll(src, shifts=(2, 4), dims=(2, 3))
    half = torch.empty(1, 2, 20, 30)
    half[:, 0], half[:, 1] = -2.0, -1.0            # pixels of the half-resolution grid
    out = warp(src, half)                          # → (−4, −2) px on the 40×60 grid
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
    half = fcm(fw, fc, torch.full((2, 1, 5, 6), 0.5))   # resized to 10×12
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
        dm(prev, cur, return_logit=True), torch.ones(2, 1, 16, 20))
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
