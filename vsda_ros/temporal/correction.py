"""Distortion-aware feature correction (DAVSS, Zhuang et al.): DMNet, CFNet and FCM.

On a propagated (non-key) frame the warped decoder features ``F_warp`` are wrong wherever the
flow was (occlusions, new content, thin objects). DAVSS repairs them with

* **DMNet** — a tiny siamese network comparing the *warped previous image* with the *current
  image*; where they disagree the warped features are likely distorted: ``D`` ∈ [0, 1];
* **CFNet** — a light encoder–decoder on the current image producing correction features
  ``F_cf`` with the same channels/resolution as the decoder features;
* **FCM** — ``F = F_warp·(1 − D) + F_cf·D``.

All images are B×3×H×W RGB in [0, 1]; both networks normalise internally with the fixed
mean 0.5 / std 0.25.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

MEAN = 0.5
STD = 0.25


def _normalise(x: Tensor, in_ch: int, name: str = 'x') -> Tensor:
    """Check B×in_ch×H×W and map [0, 1] to roughly [-2, 2]."""
    if x.dim() != 4 or x.shape[1] != in_ch:
        raise ValueError(f'{name} must be B×{in_ch}×H×W, got shape {tuple(x.shape)}')
    return (x - MEAN) / STD


def _resize(x: Tensor, size: tuple[int, int] | None) -> Tensor:
    """Bilinear resize of B×C×h×w to ``size`` = (H, W); no-op if ``None`` or already there."""
    if size is None or tuple(x.shape[-2:]) == (int(size[0]), int(size[1])):
        return x
    return F.interpolate(x, size=(int(size[0]), int(size[1])), mode='bilinear', align_corners=False)


def _check_downscale(k: int) -> int:
    if int(k) not in (1, 2, 4):
        raise ValueError(f'downscale must be 1, 2 or 4, got {k}')
    return int(k)


def _hw(x: Tensor) -> tuple[int, int]:
    """(H, W) of a …×H×W tensor."""
    return x.shape[-2], x.shape[-1]


def _shrink(x: Tensor, k: int) -> Tensor:
    """k×k average pooling (``ceil_mode``: odd sizes keep their last row/column); k = 1: x."""
    return x if k == 1 else F.avg_pool2d(x, k, ceil_mode=True)


def conv_bn_relu(
    cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """k×k conv (same padding, no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def ds_conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise-separable conv: depthwise 3×3 (stride) → BN/ReLU → pointwise 1×1 → BN/ReLU."""
    return nn.Sequential(conv_bn_relu(cin, cin, 3, stride, groups=cin), conv_bn_relu(cin, cout, 1))


class DMNet(nn.Module):
    """Distortion map network.

    A siamese extractor (shared weights) of four depthwise-separable convs — the first with
    stride 2, the rest stride 1, so **output stride 2**: feature maps B×width×⌈H/2⌉×⌈W/2⌉ —
    embeds both images; per pixel the cosine similarity ``cos`` of the two embeddings gives

        logit = a·(1 − cos) + b,        D = sigmoid(logit) ∈ [0, 1]

    with learnable scalars ``a`` (init 10) and ``b`` (init −5): identical inputs give
    ``cos = 1`` and the minimum ``D = sigmoid(b)`` ≈ 0.007 at init; the embeddings are ReLU
    outputs (non-negative), so ``cos`` ∈ [0, 1] and D ≤ sigmoid(a + b) ≈ 0.993 at init.
    Train with ``BCEWithLogitsLoss`` on ``forward(..., return_logit=True)`` against a binary
    "distorted" target (e.g. warped-prediction ≠ keyframe-prediction).

    Both images go through the extractor as one batch (in training they share the BatchNorm
    batch statistics).

    Args:
        in_ch: image channels.
        width: embedding width.
        downscale: 1, 2 or 4 (``ValueError`` otherwise): the images are average-pooled by this
            factor first, so the embeddings live at ``2·downscale`` of the input (the keyframe
            strategy feeds frames at the feature resolution; ``downscale=2`` cuts DMNet's cost
            about 4× there).

    The cosine is stabilised as ``(u·v + ε) / sqrt((|u|² + ε)(|v|² + ε))`` so that two
    all-zero embeddings (possible after ReLU) count as identical (cos = 1) rather than 0.
    """

    def __init__(self, in_ch: int = 3, width: int = 32, downscale: int = 1) -> None:
        super().__init__()
        self.in_ch = in_ch
        self.downscale = _check_downscale(downscale)
        self.features = nn.Sequential(
            ds_conv(in_ch, width, stride=2),
            ds_conv(width, width),
            ds_conv(width, width),
            ds_conv(width, width),
        )
        self.a = nn.Parameter(torch.tensor(10.0))
        self.b = nn.Parameter(torch.tensor(-5.0))
        self.eps = 1e-6

    def cosine(self, warped: Tensor, current: Tensor) -> Tensor:
        """Per-pixel cosine similarity of the two embeddings, B×1×h×w in [0, 1] (h×w: the
        input size over ``2·downscale``, rounded up).

        Raises ``ValueError`` if the inputs are not both B×in_ch×H×W of the same shape.
        """
        if warped.shape != current.shape:
            raise ValueError(
                f'warped {tuple(warped.shape)} and current {tuple(current.shape)} differ in shape'
            )
        a = _shrink(_normalise(warped, self.in_ch, 'warped'), self.downscale)
        b = _shrink(_normalise(current, self.in_ch, 'current'), self.downscale)
        # one batched pass: in training both branches share the BatchNorm batch statistics; in
        # eval (running statistics) it equals two passes and is faster on CPU (fewer ops)
        u, v = self.features(torch.cat((a, b), dim=0)).chunk(2, dim=0)
        dot = (u * v).sum(1, keepdim=True)
        norms = ((u * u).sum(1, keepdim=True) + self.eps) * (
            (v * v).sum(1, keepdim=True) + self.eps
        )
        return ((dot + self.eps) * torch.rsqrt(norms)).clamp(-1.0, 1.0)

    def forward(
        self,
        warped: Tensor,
        current: Tensor,
        out_size: tuple[int, int] | None = None,
        return_logit: bool = False,
    ) -> Tensor:
        """Distortion map of ``warped`` (previous image warped onto this frame) vs ``current``.

        Args:
            warped, current: B×3×H×W RGB in [0, 1], equal shapes (``ValueError`` otherwise).
            out_size: optional (h, w); the logit is resized bilinearly to it (D stays in [0, 1]).
            return_logit: return the pre-sigmoid logit (for ``BCEWithLogitsLoss``) instead of D.

        Returns:
            B×1×h×w (the input size over ``2·downscale``, or ``out_size``): D ∈ [0, 1], or
            the logit.
        """
        logit = _resize(self.a * (1.0 - self.cosine(warped, current)) + self.b, out_size)
        return logit if return_logit else torch.sigmoid(logit)


class CFNet(nn.Module):
    """Correction feature network: a light encoder–decoder on the current frame.

    Encoder: 3×3 conv/BN/ReLU stages with stride 2 each — stride 2 (``width`` ch), stride 4
    (``2·width``), stride 8 (``2·width``) followed by one more 3×3 conv at stride 8 for context.
    Decoder: bilinear upsampling back to ``out_stride``, at each step concatenating the encoder
    stage of the same stride and fusing with a 3×3 conv/BN/ReLU; a final 1×1 conv (with bias,
    no activation: decoder features may be signed) gives ``out_ch`` channels.

    Spatial sizes follow the stride-2 convs: stride 2 → ⌈H/2⌉×⌈W/2⌉, stride 4 → ⌈⌈H/2⌉/2⌉…,
    which matches a backbone whose first layer is a padded 3×3 stride-2 conv (ESPNet family).
    Odd sizes are fine: upsampling targets the skip tensor's exact size.

    Args:
        out_ch: channels of the decoder features to correct.
        width: base width.
        out_stride: 2, 4 or 8 (``ValueError`` otherwise).
        guide_ch: 0 = the DAVSS CFNet (current frame only). > 0: the warped features
            (``guide_ch`` = ``out_ch`` channels) are a second input, concatenated to the image,
            and the output is ``guide + residual`` with the residual's last conv initialised to
            zero — a refinement network that starts as "keep the warped features" and learns to
            fix them from the current image. Used by ``vsda adapt --recipe davss``
            (``cfnet_guided``) because a from-scratch CFNet this small is too weak to replace
            the warped features anywhere (measured, see README).
        downscale: 1, 2 or 4 (``ValueError`` otherwise): the image (and the guide) are
            average-pooled/resized by this factor first, so ``out_stride`` counts from the
            pooled image; the guide is added back at its own resolution.
    """

    def __init__(
        self,
        out_ch: int,
        width: int = 32,
        out_stride: int = 2,
        guide_ch: int = 0,
        downscale: int = 1,
    ) -> None:
        super().__init__()
        self.downscale = _check_downscale(downscale)
        if out_stride not in (2, 4, 8):
            raise ValueError(f'out_stride must be 2, 4 or 8, got {out_stride}')
        if out_ch < 1 or width < 1:
            raise ValueError(f'out_ch and width must be positive, got {out_ch}, {width}')
        if guide_ch not in (0, out_ch):
            raise ValueError(f'guide_ch must be 0 or out_ch ({out_ch}), got {guide_ch}')
        self.out_ch, self.out_stride, self.guide_ch = out_ch, out_stride, guide_ch
        w2 = 2 * width
        self.enc2 = conv_bn_relu(3 + guide_ch, width, stride=2)
        self.enc4 = conv_bn_relu(width, w2, stride=2)
        self.enc8 = nn.Sequential(conv_bn_relu(w2, w2, stride=2), conv_bn_relu(w2, w2))
        self.dec4 = conv_bn_relu(w2 + w2, w2) if out_stride <= 4 else None
        self.dec2 = conv_bn_relu(w2 + width, width) if out_stride <= 2 else None
        last = {8: w2, 4: w2, 2: width}[out_stride]
        self.head = nn.Conv2d(last, out_ch, 1)
        if guide_ch:
            assert self.head.bias is not None  # nn.Conv2d's default bias=True
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @staticmethod
    def _up_cat(x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=False)
        return torch.cat((x, skip), dim=1)

    def _output(self, x: Tensor, out_size: tuple[int, int] | None, guide: Tensor | None) -> Tensor:
        """The last conv's output at ``out_size`` (default: the guide's size, else its own):
        the correction features, or the residual for a guided CFNet."""
        inp = _shrink(_normalise(x, 3), self.downscale)
        if self.guide_ch:
            if guide is None:
                raise ValueError('this CFNet is guided: pass the warped features as guide')
            out_size = out_size or _hw(guide)
            inp = torch.cat((inp, _resize(guide, _hw(inp))), dim=1)
        s2 = self.enc2(inp)
        s4 = self.enc4(s2)
        y = self.enc8(s4)
        if self.dec4 is not None:
            y = self.dec4(self._up_cat(y, s4))
        if self.dec2 is not None:
            y = self.dec2(self._up_cat(y, s2))
        return _resize(self.head(y), out_size)

    def forward(
        self, x: Tensor, out_size: tuple[int, int] | None = None, guide: Tensor | None = None
    ) -> Tensor:
        """Correction features of the current image.

        Args:
            x: B×3×H×W RGB in [0, 1] (``ValueError`` on another layout).
            out_size: optional (h, w) to resize the output to (bilinear).
            guide: B×out_ch×h×w warped features; required iff ``guide_ch`` > 0 (then the
                output defaults to the guide's size).

        Returns:
            B×out_ch×h×w, h×w the size at ``out_stride`` (⌈H/2⌉×⌈W/2⌉ by default) or
            ``out_size``.
        """
        out = self._output(x, out_size, guide)
        if self.guide_ch:
            assert guide is not None  # _output raised otherwise
            out = out + _resize(guide, _hw(out))
        return out

    def correct(self, x: Tensor, warped_feat: Tensor, distortion: Tensor) -> Tensor:
        """FCM with this CFNet: ``fcm(warped_feat, self(x, guide=warped_feat), distortion)``.

        For a guided CFNet ``F_cf = F_warp + R``, so the FCM is ``F_warp + D·R``: computed
        that way (one fused multiply–add instead of an add and a lerp over the full feature
        map; equal up to float rounding).

        Args:
            x: B×3×H×W current image in [0, 1].
            warped_feat: B×C×h×w warped features (C = ``out_ch``).
            distortion: B×1×h'×w' map in [0, 1] (resized to h×w if needed).

        Returns:
            B×C×h×w corrected features.
        """
        if not self.guide_ch:
            return fcm(warped_feat, self(x, out_size=_hw(warped_feat)), distortion)
        residual = self._output(x, _hw(warped_feat), warped_feat)
        d = _resize(distortion.to(warped_feat.dtype), _hw(warped_feat))
        return torch.addcmul(warped_feat, d, residual)


def fcm(warped_feat: Tensor, correction_feat: Tensor, distortion: Tensor) -> Tensor:
    """Feature correction module: ``F = F_warp·(1 − D) + F_cf·D``.

    Args:
        warped_feat: B×C×h×w warped features.
        correction_feat: B×C×h×w CFNet features (same shape, ``ValueError`` otherwise).
        distortion: B×1×h'×w' (or B×h'×w') map in [0, 1]; resized bilinearly to h×w if needed.

    Returns:
        B×C×h×w corrected features.
    """
    if warped_feat.shape != correction_feat.shape:
        raise ValueError(
            f'warped features {tuple(warped_feat.shape)} and correction '
            f'features {tuple(correction_feat.shape)} differ in shape'
        )
    if warped_feat.dim() != 4:
        raise ValueError(f'features must be B×C×h×w, got shape {tuple(warped_feat.shape)}')
    d = distortion.unsqueeze(1) if distortion.dim() == 3 else distortion
    if d.dim() != 4 or d.shape[1] != 1 or d.shape[0] not in (1, warped_feat.shape[0]):
        raise ValueError(f'distortion must be B×1×h×w, got shape {tuple(distortion.shape)}')
    d = _resize(d.to(warped_feat.dtype), _hw(warped_feat))
    return torch.lerp(warped_feat, correction_feat, d)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An inference copy of ``module`` with every ``Conv2d`` → ``BatchNorm2d`` pair folded.

    Walks the module tree and, in every ``nn.Sequential`` whose first two layers are a conv
    and a BatchNorm, replaces the pair by one conv with the BatchNorm's running statistics and
    affine parameters folded in (``torch.nn.utils.fusion.fuse_conv_bn_eval``). The copy is in
    eval mode and computes the same function as ``module.eval()`` up to float rounding (about
    1e-6 relative); ``module`` itself is not changed. Fewer ops per call: DMNet and CFNet are
    small enough on a CPU that per-op overhead is a large part of their time. Other
    attributes (``vsda_args``, ``guide_ch``, ``downscale`` …) are kept.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(module).eval()

    def visit(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if (
                isinstance(child, nn.Sequential)
                and len(child) >= 2
                and isinstance(child[0], nn.Conv2d)
                and isinstance(child[1], nn.BatchNorm2d)
            ):
                setattr(
                    parent,
                    name,
                    nn.Sequential(fuse_conv_bn_eval(child[0], child[1]), *list(child)[2:]),
                )
            else:
                visit(child)

    visit(folded)
    return folded


def gflops(module: nn.Module, *inputs: Tensor) -> float:
    """GFLOPs (multiply–add = 2 FLOPs) of one ``module(*inputs)`` call, counted without grad."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*inputs)
    return counter.get_total_flops() / 1e9
