"""Flow-free adjacent-frame fusion of class scores with a stack of deformable convolutions.

The block follows the "fusion block of deformable convolutions" used for video segmentation
in adverse weather: the previous frame's class scores are aligned to the current frame by a few
modulated deformable convolutions whose offsets are predicted from both frames (no optical
flow), and a 1×1 convolution fuses the aligned scores with the current ones.

The previous frame's *unfused* logits are cached by the caller (the ``fusion`` strategy in
:mod:`vsda_ros.temporal.fusion`), so the only extra cost per frame is this block, which runs at
a reduced resolution (``scale``, 0.25 by default).

The untrained block equals the per-frame prediction *exactly*, at full resolution: the fusion
conv starts as a pass-through of the current scores and the block only adds an upsampled
residual, which is then exactly zero (see :meth:`FusionBlock.forward`).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import DeformConv2d

_K = 3  # kernel size of the context, offset and deformable convs
_TAPS = _K * _K
CENTRE_TAP = _TAPS // 2  # index of the kernel's centre tap (taps are row-major)


def summed_offsets(offsets: list[Tensor]) -> Tensor:
    """The deformable steps' offsets added up per tap: the total displacement each tap of
    the stack samples the previous scores at (for smooth offsets).

    Args:
        offsets: each step's B×2K²×h×w (dy, dx) offsets, as collected by
            ``FusionBlock.forward(..., offsets=[])`` (at least one).
    Returns:
        B×K²×2×h×w, (dy, dx) per tap.
    """
    b, _, h, w = offsets[0].shape
    return torch.stack(offsets).sum(0).view(b, _TAPS, 2, h, w)


def conv_weight(conv: nn.Module) -> Tensor:
    """``conv.weight`` as the tensor it is (``nn.Module`` attribute access is typed loosely)."""
    return cast(Tensor, conv.weight)


def conv_bias(conv: nn.Module) -> Tensor:
    """``conv.bias`` of a conv that has one, as a tensor (see :func:`conv_weight`)."""
    return cast(Tensor, conv.bias)


def deform_conv_sampled(
    x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None
) -> Tensor:
    """``torchvision.ops.deform_conv2d`` for a K×K kernel, stride 1, padding K//2, dilation 1,
    one group and one offset group, computed with one ``grid_sample`` and one matmul.

    torchvision's CPU kernel is 2–4× slower than this at the fusion block's sizes
    (C = 11, 45×60 … 90×120, 2 threads), so :class:`FusionBlock` uses this on the CPU; the
    result is the same function (tested against torchvision to float rounding, values and
    gradients).

    Sampling follows torchvision exactly: tap ``t = i*K + j`` of output pixel (y, x) reads
    ``x`` bilinearly at ``(y + i - K//2 + offset[:, 2t], x + j - K//2 + offset[:, 2t+1])``,
    with zeros outside the image (``grid_sample`` with ``align_corners=True`` and zero
    padding treats out-of-range corners the same way), and is scaled by ``mask[:, t]``.

    Args:
        x: B×Cin×H×W input (H, W >= 2).
        offset: B×2K²×H×W (dy, dx) per tap.
        mask: B×K²×H×W modulation.
        weight: Cout×Cin×K×K, K odd.
        bias: Cout or None.
    Returns:
        B×Cout×H×W.

    Raises ``ValueError`` for H or W below 2, an even kernel or mismatched shapes.
    """
    b, c, h, w = x.shape
    o, ci, kh, kw = weight.shape
    taps = kh * kw
    if (
        h < 2
        or w < 2
        or kh != kw
        or kh % 2 == 0
        or ci != c
        or offset.shape != (b, 2 * taps, h, w)
        or mask.shape != (b, taps, h, w)
    ):
        raise ValueError(
            f'deform_conv_sampled: unsupported shapes x {tuple(x.shape)}, offset '
            f'{tuple(offset.shape)}, mask {tuple(mask.shape)}, weight '
            f'{tuple(weight.shape)} (needs H, W >= 2 and an odd square kernel)'
        )
    r = torch.arange(kh, dtype=x.dtype, device=x.device) - kh // 2
    tap_y = r.repeat_interleave(kw).view(1, taps, 1, 1)
    tap_x = r.repeat(kh).view(1, taps, 1, 1)
    gy = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1)
    gx = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, w)
    off = offset.view(b, taps, 2, h, w)
    py = (gy + tap_y + off[:, :, 0]) * (2.0 / (h - 1)) - 1.0
    px = (gx + tap_x + off[:, :, 1]) * (2.0 / (w - 1)) - 1.0
    grid = torch.stack([px, py], dim=-1).view(b, taps * h, w, 2)
    cols = F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=True)
    cols = (cols.view(b, c, taps, h, w) * mask.view(b, 1, taps, h, w)).view(b, c * taps, h * w)
    # bmm, not matmul: matmul(2-D weight that requires grad, 3-D cols) folds cols into one
    # transposed 2-D mm, about 7× slower here
    out = torch.bmm(weight.reshape(1, o, c * taps).expand(b, -1, -1), cols).view(b, o, h, w)
    return out if bias is None else out + bias.view(1, o, 1, 1)


class FusionBlock(nn.Module):
    """Fuse the current frame's logits with the previous frame's (deformably aligned) logits.

    Args:
        num_classes: C, the channels of both score maps.
        hidden: channels of the context ``h`` computed from both frames; default C.
        num_deform: how many (offset conv, deformable conv) steps align the previous scores;
            0 fuses the unaligned previous scores.
        scale: the block works at ``round(H*scale)×round(W*scale)`` (at least 1 px).
        offset_hidden: 0 (default) = each step's offsets come from one 3×3 conv over
            [context, aligned scores], a linear function of them; > 0 = from two 3×3 convs
            with ``offset_hidden`` channels and a ReLU between them (a non-linear motion
            estimate, at extra cost).

    Raises ``ValueError`` for a non-positive ``num_classes``/``hidden``/``scale`` or a
    negative ``num_deform``/``offset_hidden``.

    Initialisation: the offset convs (with ``offset_hidden``, the second of each pair) are
    zero (offsets 0, modulation masks 0.5); each deformable conv starts as the identity
    (centre tap 2·I, bias 0, cancelling the 0.5 mask), so the aligned scores start equal to
    the previous scores; the 1×1 fusion conv starts as the identity on the current scores and
    zero on the aligned ones.
    """

    _pass_through: Tensor  # buffer, registered in __init__

    def __init__(
        self,
        num_classes: int,
        hidden: int | None = None,
        num_deform: int = 4,
        scale: float = 0.25,
        offset_hidden: int = 0,
    ) -> None:
        super().__init__()
        hidden = num_classes if hidden is None else hidden
        if num_classes < 1 or hidden < 1:
            raise ValueError(f'num_classes and hidden must be >= 1, got {num_classes}, {hidden}')
        if num_deform < 0 or offset_hidden < 0:
            raise ValueError(
                f'num_deform and offset_hidden must be >= 0, got {num_deform}, {offset_hidden}'
            )
        if not scale > 0:
            raise ValueError(f'scale must be > 0, got {scale}')
        c = num_classes
        self.num_classes, self.hidden, self.num_deform, self.scale = c, hidden, num_deform, scale
        self.offset_hidden = offset_hidden
        self.context = nn.Sequential(nn.Conv2d(2 * c, hidden, _K, padding=1), nn.ReLU(inplace=True))
        # 3 * 9 outputs: 18 (dy, dx) offsets then 9 modulation-mask logits
        self.offsets = nn.ModuleList(
            self._offset_predictor(hidden + c, offset_hidden) for _ in range(num_deform)
        )
        self.deforms = nn.ModuleList(DeformConv2d(c, c, _K, padding=1) for _ in range(num_deform))
        self.fuse = nn.Conv2d(2 * c, c, 1)
        eye = torch.zeros(c, 2 * c, 1, 1)
        eye[:, :c, 0, 0] = torch.eye(c)
        self.register_buffer('_pass_through', eye, persistent=False)
        self.reset_parameters()

    @staticmethod
    def _offset_predictor(cin: int, mid: int) -> nn.Module:
        """cin → 27 channels (18 offsets, 9 mask logits): one 3×3 conv, or two with a ReLU."""
        if mid == 0:
            return nn.Conv2d(cin, 3 * _TAPS, _K, padding=1)
        return nn.Sequential(
            nn.Conv2d(cin, mid, _K, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, 3 * _TAPS, _K, padding=1),
        )

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-apply the initialisation described in the class docstring (context conv and a
        two-conv offset predictor's first conv: PyTorch's default)."""
        for pred in self.offsets:
            conv = pred[-1] if isinstance(pred, nn.Sequential) else pred
            nn.init.zeros_(conv_weight(conv))
            nn.init.zeros_(conv_bias(conv))
        for deform in self.deforms:
            nn.init.zeros_(conv_weight(deform))
            conv_weight(deform)[:, :, _K // 2, _K // 2] = 2.0 * torch.eye(self.num_classes)
            nn.init.zeros_(conv_bias(deform))
        self.fuse.weight.copy_(self._pass_through)
        nn.init.zeros_(conv_bias(self.fuse))

    def block_size(self, h: int, w: int) -> tuple[int, int]:
        """The working size for an ``h×w`` input: ``round(h*scale)×round(w*scale)``, >= 1 px."""
        return max(1, round(h * self.scale)), max(1, round(w * self.scale))

    def align(self, h: Tensor, prev_s: Tensor, offsets: list[Tensor] | None = None) -> Tensor:
        """Align the previous scores with the deformable steps (the ``DeformConv2d`` modules'
        parameters; on the CPU computed by :func:`deform_conv_sampled`, the same function).

        Args:
            h: B×hidden×h×w context from both frames.
            prev_s: B×C×h×w previous-frame scores at the block size.
            offsets: if a list, each step's B×18×h×w (dy, dx) offsets are appended to it
                (for supervising them in training).
        Returns:
            B×C×h×w aligned previous scores (``prev_s`` itself when ``num_deform`` is 0).
        """
        aligned = prev_s
        for offset_conv, deform in zip(self.offsets, self.deforms, strict=False):
            om = offset_conv(torch.cat([h, aligned], dim=1))
            offset, mask = om[:, : 2 * _TAPS], om[:, 2 * _TAPS :].sigmoid()
            if offsets is not None:
                offsets.append(offset)
            if aligned.device.type == 'cpu' and min(aligned.shape[-2:]) >= 2:
                aligned = deform_conv_sampled(
                    aligned, offset, mask, conv_weight(deform), conv_bias(deform)
                )
            else:
                aligned = deform(aligned, offset, mask)
        return aligned

    def shrink(self, x: Tensor) -> Tensor:
        """B×C×H×W scores → B×C×h×w at the block size (bilinear, align_corners=False)."""
        small = self.block_size(*x.shape[-2:])
        if x.shape[-2:] == small:
            return x
        return F.interpolate(x, size=small, mode='bilinear', align_corners=False)

    def forward(
        self,
        cur: Tensor,
        prev: Tensor,
        return_aligned: bool = False,
        cur_small: Tensor | None = None,
        offsets: list[Tensor] | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Fuse the current logits with the previous frame's.

        Args:
            cur: B×C×H×W logits of the current frame.
            prev: B×C×H×W logits of the previous frame (same dtype and device), or already
                at the block size, B×C×h×w = ``shrink(prev)`` (the fusion strategy caches
                that, saving a resize per frame; identical result).
            return_aligned: also return the aligned previous scores (B×C×h×w at the block
                size), for training the alignment directly.
            cur_small: ``shrink(cur)`` if the caller already has it.
            offsets: passed to :meth:`align` (collects each step's offsets).
        Returns:
            B×C×H×W fused logits ``cur + up(fuse(cur_s, aligned) - cur_s)``, ``up`` being a
            bilinear resize (align_corners=False) to H×W. The residual is computed with the
            weight ``fuse.weight - pass_through`` (the same function), which is exactly zero
            at init on every backend (also with TF32 convs), so the untrained block returns
            ``cur`` bit for bit (as long as ``prev`` is finite: 0·NaN is NaN). With
            ``return_aligned``: (fused, aligned).

        Raises ``ValueError`` when the inputs are not 4-D, do not have C channels, or ``prev``
        is neither ``cur``'s shape nor the block size.
        """
        size = cur.shape[-2:]
        small = self.block_size(*size) if cur.dim() == 4 else None
        if (
            cur.dim() != 4
            or prev.dim() != 4
            or cur.shape[1] != self.num_classes
            or prev.shape[:2] != cur.shape[:2]
            or small is None
            or prev.shape[-2:] not in (size, torch.Size(small))
        ):
            raise ValueError(
                f'expected cur B×{self.num_classes}×H×W and prev of the same shape '
                f'(or at the block size), got {tuple(cur.shape)} and '
                f'{tuple(prev.shape)}'
            )
        cur_s = self.shrink(cur) if cur_small is None else cur_small
        prev_s = prev if prev.shape[-2:] == small else self.shrink(prev)
        h = self.context(torch.cat([cur_s, prev_s], dim=1))
        aligned = self.align(h, prev_s, offsets)
        # == self.fuse(cat) - cur_s, but exactly 0 while fuse.weight is the pass-through
        delta = F.conv2d(
            torch.cat([cur_s, aligned], dim=1),
            self.fuse.weight - self._pass_through,
            self.fuse.bias,
        )
        if delta.shape[-2:] != size:
            delta = F.interpolate(delta, size=size, mode='bilinear', align_corners=False)
        return (cur + delta, aligned) if return_aligned else cur + delta

    def extra_repr(self) -> str:
        return (
            f'num_classes={self.num_classes}, hidden={self.hidden}, '
            f'num_deform={self.num_deform}, scale={self.scale}, '
            f'offset_hidden={self.offset_hidden}'
        )


def fusion_flops(block: FusionBlock, c: int, h: int, w: int) -> float:
    """GFLOPs of one forward of ``block`` for B=1 inputs of C×h×w (full resolution).

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add = 2 FLOPs).
    On the CPU the deformable convs run as :func:`deform_conv_sampled`, whose matmul is
    counted (``2 * Cin * Cout * 9 * Hs * Ws``, Hs×Ws the block size). FlopCounterMode does not
    count ``torchvision::deform_conv2d`` (torch 2.14 / torchvision 0.29), so where that kernel
    runs instead this adds the same analytical figure per deformable conv. The bilinear
    sampling and the mask modulation are ignored, as are the resizes, ReLU, sigmoid and
    additions.

    Raises ``ValueError`` when ``c`` differs from the block's ``num_classes``.
    """
    if c != block.num_classes:
        raise ValueError(f'the block is for {block.num_classes} classes, not {c}')
    p = next(block.parameters())
    cur = torch.zeros(1, c, h, w, dtype=p.dtype, device=p.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        block(cur, cur.clone())
    total = counter.get_total_flops()
    hs, ws = block.block_size(h, w)
    sampled = p.device.type == 'cpu' and min(hs, ws) >= 2
    counted = any('deform_conv2d' in str(op) for op in counter.get_flop_counts()['Global'])
    if not (sampled or counted):
        total += block.num_deform * 2 * c * c * _TAPS * hs * ws
    return total / 1e9


if __name__ == '__main__':
    import time

    torch.set_num_threads(2)
    C, H, W = 11, 360, 480
    for s in (0.25, 0.5):
        blk = FusionBlock(C, scale=s).eval()
        a, b = torch.randn(1, C, H, W), torch.randn(1, C, H, W)
        with torch.inference_mode():
            for _ in range(3):
                blk(a, b)
            times = []
            for _ in range(20):
                t0 = time.perf_counter()
                blk(a, b)
                times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        print(
            f'C={C} {H}x{W} scale={s}: block {blk.block_size(H, W)}, '
            f'median {times[len(times) // 2]:.2f} ms (min {times[0]:.2f}), '
            f'{fusion_flops(blk, C, H, W):.4f} GFLOPs'
        )
