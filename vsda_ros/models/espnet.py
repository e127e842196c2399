"""ESPNet (v1, p = 2, q = 8) for semantic segmentation, written to load the published weights.

Mehta et al., "ESPNet: Efficient Spatial Pyramid of Dilated Convolutions for Semantic
Segmentation", ECCV 2018. Module and parameter names follow the published state dicts
(``espnet_p2q8_cityscapes.pth``, ``espnet_p2q8_camvid.pth``), so they load with ``strict=True``
once the missing ``num_batches_tracked`` counters are added (see ``zoo._add_missing_bn_counters``).

Shapes (input B×3×H×W, already normalised; BGR for the published weights), C = ``num_outputs``:

- encoder: o0 16@½ (b1: 19@½ with the pooled image), b2 131@¼, b3 256@⅛ (sides ``ceil``-halved);
- decoder: 1×1 classifier at ⅛ → transposed conv to ¼, merged with a projection of b2 by an ESP
  block (C ch), transposed conv to ½, concatenated with o0 (16 ch, Cityscapes) or b1 (19 ch,
  CamVid) and fused by a 3×3 CBR: :meth:`ESPNet.forward_features` returns that, B×C×H/2×W/2;
  :meth:`ESPNet.forward_head` is the final transposed conv → B×C×2·ceil(H/2)×2·ceil(W/2).

Any input size works: each ×2 transposed-conv output is cropped to its skip's size (it is at
most one pixel larger, and cropping keeps the stride-2 pixel alignment of training).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from vsda_ros.models import layers

BN_EPS = 1e-3
BR = functools.partial(layers.BR, eps=BN_EPS)  # BN → PReLU with this network's eps


class CBR(nn.Module):
    """k×k conv (no bias, "same" padding) → BN → PReLU (keys ``conv``, ``bn``, ``act``)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Conv(nn.Module):
    """Plain k×k conv, no bias, padding (k − 1) / 2 · dilation (key ``conv``)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            cin, cout, k, stride, padding=(k - 1) // 2 * dilation, dilation=dilation, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ESPBlock(nn.Module):
    """Efficient Spatial Pyramid block: B×cin×H×W → B×cout×H/s×W/s (s = 2 if ``down``).

    Reduce to n = cout // 5 channels (1×1, or 3×3 stride 2 when downsampling), apply five 3×3
    convs with dilations 1, 2, 4, 8, 16 (the first gets the ``cout − 4n`` leftover channels),
    concatenate d1 with the cumulative sums d2, d2+d4, …, add the input when ``residual`` and
    the shapes match, then BN+PReLU. Keys: ``bn.bn``/``bn.act`` for the regular block,
    ``bn``/``act`` for the downsampling one.
    """

    def __init__(self, cin: int, cout: int, down: bool = False, residual: bool = True) -> None:
        super().__init__()
        n = cout // 5
        self.down = down
        self.residual = residual and not down
        self.c1 = Conv(cin, n, 3, stride=2) if down else Conv(cin, n, 1)
        self.d1 = Conv(n, cout - 4 * n, 3, dilation=1)
        self.d2 = Conv(n, n, 3, dilation=2)
        self.d4 = Conv(n, n, 3, dilation=4)
        self.d8 = Conv(n, n, 3, dilation=8)
        self.d16 = Conv(n, n, 3, dilation=16)
        if down:
            self.bn: nn.Module = nn.BatchNorm2d(cout, eps=BN_EPS)
            self.act = nn.PReLU(cout)
        else:
            self.bn = BR(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.c1(x)
        s1 = self.d2(r)
        s2 = s1 + self.d4(r)
        s3 = s2 + self.d8(r)
        s4 = s3 + self.d16(r)
        y = torch.cat([self.d1(r), s1, s2, s3, s4], 1)
        if self.residual and y.shape == x.shape:
            y = y + x
        return self.act(self.bn(y)) if self.down else self.bn(y)


def _fit(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Crop (or zero-pad) ``x`` at the bottom/right to ``ref``'s spatial size."""
    dh, dw = ref.shape[-2] - x.shape[-2], ref.shape[-1] - x.shape[-1]
    return F.pad(x, (0, dw, 0, dh)) if dh or dw else x


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=2, padding=1)


class Encoder(nn.Module):
    """ESPNet-C encoder: B×3×H×W → (o0 16@½, b1 19@½, b2 131@¼, classifier C@⅛)."""

    def __init__(self, num_outputs: int, p: int = 2, q: int = 8) -> None:
        super().__init__()
        self.level1 = CBR(3, 16, 3, stride=2)
        self.b1 = BR(16 + 3)
        self.level2_0 = ESPBlock(16 + 3, 64, down=True)
        self.level2 = nn.ModuleList(ESPBlock(64, 64) for _ in range(p))
        self.b2 = BR(128 + 3)
        self.level3_0 = ESPBlock(128 + 3, 128, down=True)
        self.level3 = nn.ModuleList(ESPBlock(128, 128) for _ in range(q))
        self.b3 = BR(256)
        self.classifier = Conv(256, num_outputs, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        i1 = _pool(x)
        i2 = _pool(i1)
        o0 = self.level1(x)
        b1 = self.b1(torch.cat([o0, i1], 1))
        y0 = self.level2_0(b1)
        y = y0
        for block in self.level2:
            y = block(y)
        b2 = self.b2(torch.cat([y, y0, i2], 1))
        z0 = self.level3_0(b2)
        z = z0
        for block in self.level3:
            z = block(z)
        b3 = self.b3(torch.cat([z0, z], 1))
        return o0, b1, b2, self.classifier(b3)


def _up2(ch: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(ch, ch, 2, stride=2, bias=False)


class ESPNet(nn.Module):
    """ESPNet (p = 2, q = 8) segmentation network on normalised input.

    Args:
        num_outputs: output channels C (20 for Cityscapes: train ids 0..18 + background;
            12 for CamVid: 11 classes + void).
        b1_skip: the last skip uses the 19-channel ``b1`` output (CamVid weights) instead of
            the 16-channel ``level1`` output (Cityscapes weights).
    """

    def __init__(self, num_outputs: int = 20, b1_skip: bool = False) -> None:
        super().__init__()
        c = num_outputs
        self.b1_skip = b1_skip
        self.encoder = Encoder(c)
        self.level3_C = Conv(128 + 3, c, 1)
        self.br = nn.BatchNorm2d(c, eps=BN_EPS)
        self.conv = CBR((19 if b1_skip else 16) + c, c, 3)
        self.up_l3 = nn.Sequential(_up2(c))
        self.combine_l2_l3 = nn.Sequential(BR(2 * c), ESPBlock(2 * c, c, residual=False))
        self.up_l2 = nn.Sequential(_up2(c), BR(c))
        self.classifier = _up2(c)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W normalised image → B×C×ceil(H/2)×ceil(W/2) decoder features."""
        o0, b1, b2, logits8 = self.encoder(x)
        up3 = _fit(self.up_l3(self.br(logits8)), b2)
        y = self.combine_l2_l3(torch.cat([self.level3_C(b2), up3], 1))
        skip = b1 if self.b1_skip else o0
        y = _fit(self.up_l2(y), skip)
        return self.conv(torch.cat([y, skip], 1))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """B×C×h×w features → B×C×2h×2w logits (the input size when H and W are even)."""
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W normalised image → B×C×2·ceil(H/2)×2·ceil(W/2) logits."""
        return self.forward_head(self.forward_features(x))
