"""The deformable fusion block: shapes, exact pass-through when untrained, trainability, FLOPs.

CPU only, random inputs, no data needed.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import deform_conv2d

from vsda_ros.temporal.fusion_block import FusionBlock, deform_conv_sampled, fusion_flops

C = 11


def _pair(b: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, C, h, w, generator=g), torch.randn(b, C, h, w, generator=g)


def _perturb_fusion(block: FusionBlock) -> None:
    """Give the aligned channels of the fusion conv a non-zero weight (as training would)."""
    with torch.no_grad():
        block.fuse.weight[:, C:] += 0.1 * torch.randn_like(block.fuse.weight[:, C:])


@pytest.mark.parametrize('b,h,w', [(2, 45, 61), (1, 64, 48), (2, 9, 7), (1, 1, 3)])
@pytest.mark.parametrize('scale', [0.25, 0.5, 1.0])
def test_untrained_block_returns_cur_exactly(b: int, h: int, w: int, scale: float) -> None:
    torch.manual_seed(0)
    block = FusionBlock(C, scale=scale).eval()
    cur, prev = _pair(b, h, w)
    out = block(cur, prev)
    assert out.shape == (b, C, h, w)
    assert torch.equal(out, cur)


def test_output_shape_and_block_size() -> None:
    block = FusionBlock(C, hidden=16, num_deform=2)
    cur, prev = _pair(2, 45, 61)
    _perturb_fusion(block)
    assert block(cur, prev).shape == (2, C, 45, 61)
    assert block.block_size(45, 61) == (11, 15)
    assert block.block_size(2, 2) == (1, 1)


def test_fusion_conv_is_identity_on_init() -> None:
    block = FusionBlock(C)
    w = block.fuse.weight[:, :, 0, 0]
    assert torch.equal(w[:, :C], torch.eye(C))
    assert torch.equal(w[:, C:], torch.zeros(C, C))
    assert torch.equal(block.fuse.bias, torch.zeros(C))
    for conv in block.offsets:
        assert not conv.weight.any() and not conv.bias.any()
    assert '_pass_through' not in block.state_dict()


def test_prev_changes_output_once_fusion_uses_it() -> None:
    torch.manual_seed(0)
    block = FusionBlock(C).eval()
    cur, prev = _pair(1, 40, 52)
    assert torch.equal(block(cur, prev), block(cur, prev + 1.0))  # untrained: prev is ignored
    _perturb_fusion(block)
    assert not torch.allclose(block(cur, prev), block(cur, prev + 1.0))


def test_gradients_reach_deform_and_offset_convs() -> None:
    torch.manual_seed(0)
    block = FusionBlock(C, num_deform=2)
    _perturb_fusion(block)
    cur, prev = _pair(2, 32, 40)
    block(cur, prev).square().mean().backward()
    trainable = [n for n, _ in block.named_parameters() if not n.startswith('context.')]
    assert any(n.startswith('offsets.') for n in trainable)
    assert any(n.startswith('deforms.') for n in trainable)
    for name, p in block.named_parameters():
        assert p.grad is not None, name
        if name in trainable:
            assert p.grad.abs().sum() > 0, name
        else:  # the context only reaches the output through the zero-initialised offset convs
            assert not p.grad.any(), name


def test_context_conv_trains_after_one_step() -> None:
    torch.manual_seed(0)
    block = FusionBlock(C, num_deform=2)
    _perturb_fusion(block)
    cur, prev = _pair(2, 32, 40)
    opt = torch.optim.SGD(block.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        block(cur, prev).square().mean().backward()
        opt.step()
    assert block.offsets[0].weight.any()
    assert block.context[0].weight.grad.abs().sum() > 0


def test_two_conv_offset_predictor() -> None:
    """offset_hidden > 0: still exactly pass-through untrained, the offsets start at zero,
    every offset-predictor conv trains, and a checkpoint round trip restores it."""
    from vsda_ros.temporal.modules import TemporalModules, make_module

    torch.manual_seed(0)
    block = make_module('fusion', num_classes=C, num_deform=2, scale=0.5, offset_hidden=8)
    cur, prev = _pair(2, 24, 32)
    assert torch.equal(block.eval()(cur, prev), cur)
    offsets: list[torch.Tensor] = []
    block(cur, prev, offsets=offsets)
    assert len(offsets) == 2 and not any(o.any() for o in offsets)
    block.train()
    _perturb_fusion(block)
    opt = torch.optim.SGD(block.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        block(cur, prev).square().mean().backward()
        opt.step()
    for pred in block.offsets:
        assert isinstance(pred, torch.nn.Sequential)
        assert pred[0].weight.grad.abs().sum() > 0 and pred[2].weight.any()
    back = TemporalModules.from_extra(TemporalModules(fusion=block).to_extra()).fusion
    assert back.offset_hidden == 8
    assert torch.equal(back(cur, prev), block.eval()(cur, prev))
    with pytest.raises(ValueError):
        FusionBlock(C, offset_hidden=-1)


def test_bad_inputs_raise() -> None:
    block = FusionBlock(C)
    cur, prev = _pair(1, 8, 8)
    with pytest.raises(ValueError):
        block(cur, prev[:, :, :4])
    with pytest.raises(ValueError):
        block(cur[:, :5], prev[:, :5])
    with pytest.raises(ValueError):
        FusionBlock(C, scale=0)
    with pytest.raises(ValueError):
        fusion_flops(block, C + 1, 8, 8)


def test_extra_repr() -> None:
    text = repr(FusionBlock(C, scale=0.5))
    assert 'num_classes=11' in text and 'scale=0.5' in text


def test_fusion_flops_positive_and_small() -> None:
    block = FusionBlock(C, scale=0.25)
    gflops = fusion_flops(block, C, 360, 480)
    assert gflops > 0
    # reference: a single 3×3 conv 32→32 at full 360×480
    conv = torch.nn.Conv2d(32, 32, 3, padding=1)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        conv(torch.zeros(1, 32, 360, 480))
    reference = counter.get_total_flops() / 1e9
    assert gflops < reference / 4
    # the deformable convs are included analytically: 4 × 2·11·11·9·90·120
    assert gflops * 1e9 >= 4 * 2 * C * C * 9 * 90 * 120
    # ... once each: one (offset conv, deformable conv) step adds exactly their two counts
    one = fusion_flops(FusionBlock(C, num_deform=1, scale=0.25), C, 360, 480)
    none = fusion_flops(FusionBlock(C, num_deform=0, scale=0.25), C, 360, 480)
    step = 2 * (2 * C) * 27 * 9 * 90 * 120 + 2 * C * C * 9 * 90 * 120
    assert (one - none) * 1e9 == pytest.approx(step, rel=1e-9)


@pytest.mark.parametrize('b,h,w', [(1, 45, 60), (2, 7, 5), (1, 2, 2)])
def test_sampled_deform_conv_equals_torchvision(b: int, h: int, w: int) -> None:
    """The CPU path is torchvision's modulated deformable conv: values and all gradients,
    with offsets large enough to sample outside the map (zero padding) and at fractions."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(b, C, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    off = (4 * torch.randn(b, 18, h, w, generator=g, dtype=torch.float64)).requires_grad_()
    mask = torch.rand(b, 9, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(C, C, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(C, generator=g, dtype=torch.float64, requires_grad=True)
    ref = deform_conv2d(x, off, weight, bias, padding=1, mask=mask)
    got = deform_conv_sampled(x, off, mask, weight, bias)
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)
    up = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    grads_ref = torch.autograd.grad((ref * up).sum(), (x, mask, weight, bias))
    grads_got = torch.autograd.grad((got * up).sum(), (x, mask, weight, bias))
    for a, r in zip(grads_got, grads_ref, strict=False):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)


def test_sampled_deform_conv_offset_gradient_matches_away_from_integers() -> None:
    """Bilinear sampling is not differentiable at integer positions, where the two kernels
    pick different one-sided derivatives; with fractional positions they agree."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, C, 12, 10, generator=g, dtype=torch.float64)
    off = 0.25 + 0.5 * torch.rand(1, 18, 12, 10, generator=g, dtype=torch.float64)
    off.requires_grad_()
    mask = torch.rand(1, 9, 12, 10, generator=g, dtype=torch.float64)
    weight = torch.randn(C, C, 3, 3, generator=g, dtype=torch.float64)
    ref = torch.autograd.grad(deform_conv2d(x, off, weight, None, padding=1, mask=mask).sum(), off)[
        0
    ]
    got = torch.autograd.grad(deform_conv_sampled(x, off, mask, weight, None).sum(), off)[0]
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)


def test_sampled_deform_conv_rejects_unsupported_shapes() -> None:
    x = torch.randn(1, C, 1, 5)
    with pytest.raises(ValueError, match='H, W >= 2'):
        deform_conv_sampled(
            x, torch.zeros(1, 18, 1, 5), torch.ones(1, 9, 1, 5), torch.randn(C, C, 3, 3), None
        )
    with pytest.raises(ValueError, match='unsupported shapes'):
        deform_conv_sampled(
            torch.randn(1, C, 4, 4),
            torch.zeros(1, 18, 4, 4),
            torch.ones(1, 9, 4, 4),
            torch.randn(C, C, 2, 2),
            None,
        )


def test_block_on_cpu_matches_torchvision_kernel() -> None:
    """The block's CPU path and torchvision's kernel give the same fused output."""
    torch.manual_seed(1)
    block = FusionBlock(C, scale=0.5).eval()
    _perturb_fusion(block)
    with torch.no_grad():
        for conv in block.offsets:
            conv.weight.normal_(0, 0.3)
    cur, prev = _pair(1, 40, 36)
    got = block(cur, prev)
    cur_s, prev_s = block.shrink(cur), block.shrink(prev)
    h = block.context(torch.cat([cur_s, prev_s], 1))
    aligned = prev_s
    for offset_conv, deform in zip(block.offsets, block.deforms, strict=False):
        om = offset_conv(torch.cat([h, aligned], 1))
        aligned = deform(aligned, om[:, :18], om[:, 18:].sigmoid())  # torchvision's kernel
    fused = block.fuse(torch.cat([cur_s, aligned], 1))
    ref = cur + torch.nn.functional.interpolate(
        fused - cur_s, size=cur.shape[-2:], mode='bilinear', align_corners=False
    )
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, cur, atol=1e-3)
