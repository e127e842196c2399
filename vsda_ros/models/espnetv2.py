"""ESPNetv2 (s = 2.0) for semantic segmentation, written to load the published Cityscapes weights.

Mehta et al., "ESPNetv2: A Light-weight, Power Efficient, and General Purpose Convolutional
Neural Network", CVPR 2019. Module and parameter names follow the published state dict
(``espnetv2_s_2.0_city_1024x512.pth``), so it loads with ``strict=True``.

Shapes (input B×3×H×W, already normalised with the ImageNet mean/std on RGB in [0, 1]):

- encoder: e1 B×32×H/2×W/2, e2 B×128×H/4, e3 B×256×H/8, e4 B×512×H/16 (each side ``ceil``-halved);
- decoder: pyramid pooling at 1/16 → 64 ch, then three gated skip merges at 1/8 (64 ch),
  1/4 (48 ch) and 1/2 (32 ch); :meth:`ESPNetv2.forward_features` returns the last merge,
  B×32×H/2×W/2, and :meth:`ESPNetv2.forward_head` maps it to B×``num_outputs``×H/2×W/2 logits.

Any input size works: each upsampled decoder map is resized (bilinear, align_corners=True) to
its skip's exact size instead of a fixed ×2.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from vsda_ros.models import layers

BN_EPS = 1e-5


def _conv(
    cin: int,
    cout: int,
    k: int,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = False,
) -> nn.Conv2d:
    """k×k convolution with "same" padding ((k − 1) / 2 · dilation)."""
    return nn.Conv2d(
        cin,
        cout,
        k,
        stride,
        padding=(k - 1) // 2 * dilation,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )


def _up(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode='bilinear', align_corners=True)


class CBR(nn.Module):
    """conv → BN → PReLU (keys ``conv``, ``bn``, ``act``); ``act=False`` gives conv → BN."""

    def __init__(
        self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv = _conv(cin, cout, k, stride, groups=groups)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.PReLU(cout) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


BR = functools.partial(layers.BR, eps=BN_EPS)  # BN → PReLU with this network's eps


class DWConv(nn.Module):
    """Depthwise 3×3 dilated convolution (key ``conv``)."""

    def __init__(self, ch: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv = _conv(ch, ch, 3, stride, dilation, groups=ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _seq_cbr(cin: int, cout: int, k: int, groups: int = 1) -> nn.Sequential:
    """The decoder's conv/BN/PReLU as an indexed Sequential (keys ``0``, ``1``, ``2``)."""
    return nn.Sequential(
        _conv(cin, cout, k, groups=groups), nn.BatchNorm2d(cout, eps=BN_EPS), nn.PReLU(cout)
    )


def _seq_br(ch: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(ch, eps=BN_EPS), nn.PReLU(ch))


class Named(nn.Module):
    """Holds one Sequential under a fixed attribute name (``cbr`` or ``br``) for key parity."""

    def __init__(self, name: str, body: nn.Module) -> None:
        super().__init__()
        self._name = name
        self.add_module(name, body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self._name)(x)


class EESP(nn.Module):
    """Extremely Efficient Spatial Pyramid unit: B×cin×H×W → B×cout×H/stride×W/stride.

    Grouped 1×1 reduction to n = cout/4, four depthwise 3×3 branches with dilations from kernel
    sizes [3, 5, 7, 9] (sizes above ``r_lim`` become 3), cumulative sums of the branches
    (hierarchical feature fusion), BN+PReLU, grouped 1×1 expansion + BN. With
    ``residual=True`` the input is added when shapes match and PReLU applied; a downsampling
    unit (``residual=False``) returns the expansion directly.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int = 1,
        r_lim: int = 7,
        branches: int = 4,
        residual: bool = True,
    ) -> None:
        super().__init__()
        n = cout // branches
        sizes = sorted(k if k <= r_lim else 3 for k in range(3, 3 + 2 * branches, 2))
        self.residual = residual
        self.proj_1x1 = CBR(cin, n, 1, groups=branches)
        self.spp_dw = nn.ModuleList(DWConv(n, stride, (k - 1) // 2) for k in sizes)
        self.conv_1x1_exp = CBR(cout, cout, 1, groups=branches, act=False)
        self.br_after_cat = BR(cout)
        self.module_act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.proj_1x1(x)
        outs = [self.spp_dw[0](p)]
        for conv in self.spp_dw[1:]:
            outs.append(conv(p) + outs[-1])
        y = self.conv_1x1_exp(self.br_after_cat(torch.cat(outs, 1)))
        if not self.residual:
            return y
        if y.shape == x.shape:
            y = y + x
        return self.module_act(y)


class Downsampler(nn.Module):
    """Strided EESP + avg-pool concat, reinforced with the pooled input image.

    ``x`` B×cin×H×W, ``image`` B×3×H0×W0 (the network input) → B×cout×ceil(H/2)×ceil(W/2).
    """

    def __init__(self, cin: int, cout: int, r_lim: int) -> None:
        super().__init__()
        self.eesp = EESP(cin, cout - cin, stride=2, r_lim=r_lim, residual=False)
        self.inp_reinf = nn.Sequential(CBR(3, 3, 3), CBR(3, cout, 1, act=False))
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, 3, stride=2, padding=1)
        y = torch.cat([pooled, self.eesp(x)], 1)
        while image.shape[-2:] != y.shape[-2:]:
            image = F.avg_pool2d(image, 3, stride=2, padding=1)
        return self.act(y + self.inp_reinf(image))


class EESPNetBase(nn.Module):
    """ESPNetv2 encoder (s = 2.0): B×3×H×W → (e1 32@½, e2 128@¼, e3 256@⅛, e4 512@1/16)."""

    def __init__(self) -> None:
        super().__init__()
        self.level1 = CBR(3, 32, 3, stride=2)
        self.level2_0 = Downsampler(32, 128, r_lim=13)
        self.level3_0 = Downsampler(128, 256, r_lim=11)
        self.level3 = nn.ModuleList(EESP(256, 256, r_lim=9) for _ in range(3))
        self.level4_0 = Downsampler(256, 512, r_lim=9)
        self.level4 = nn.ModuleList(EESP(512, 512, r_lim=7) for _ in range(7))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        e1 = self.level1(x)
        e2 = self.level2_0(e1, x)
        e3 = self.level3_0(e2, x)
        for block in self.level3:
            e3 = block(e3)
        e4 = self.level4_0(e3, x)
        for block in self.level4:
            e4 = block(e4)
        return e1, e2, e3, e4


class ChannelShuffle(nn.Module):
    """Interleave ``groups`` channel groups: B×C×H×W → B×C×H×W."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class PyramidPooling(nn.Module):
    """Efficient pyramid pooling: B×cin×h×w → B×cout×h×w.

    1×1 projection to ``proj`` channels; per scale in (2, 1.5, 1, 0.5, 0.1) a depthwise 3×3 at
    that scale (sides ``max(5, ceil(side·scale))``; up-scales via bilinear then adaptive average
    pool back, down-scales via adaptive average pool then bilinear back); concat, BN+PReLU,
    channel shuffle, grouped 3×3 CBR, 1×1 conv to ``cout``; final BN+PReLU if ``last_br``.
    """

    scales = (2.0, 1.5, 1.0, 0.5, 0.1)

    def __init__(self, cin: int, proj: int, cout: int, last_br: bool = True) -> None:
        super().__init__()
        k = len(self.scales)
        self.stages = nn.ModuleList(
            nn.Conv2d(proj, proj, 3, padding=1, groups=proj, bias=False) for _ in range(k)
        )
        self.projection_layer = Named('cbr', _seq_cbr(cin, proj, 1))
        self.merge_layer = nn.Sequential(
            Named('br', _seq_br(proj * k)),
            ChannelShuffle(k),
            Named('cbr', _seq_cbr(proj * k, proj, 3, groups=proj)),
            nn.Conv2d(proj, cout, 1, bias=not last_br),
        )
        self.br = Named('br', _seq_br(cout)) if last_br else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection_layer(x)
        h, w = x.shape[-2:]
        outs = []
        for scale, stage in zip(self.scales, self.stages, strict=False):
            size = (max(5, math.ceil(h * scale)), max(5, math.ceil(w * scale)))
            if scale < 1.0:
                y = _up(stage(F.adaptive_avg_pool2d(x, size)), (h, w))
            elif scale > 1.0:
                y = F.adaptive_avg_pool2d(stage(_up(x, size)), (h, w))
            else:
                y = stage(x)
            outs.append(y)
        return self.br(self.merge_layer(torch.cat(outs, 1)))


class GatedProjection(nn.Module):
    """Skip projection B×cin×h×w → B×cout×h×w: grouped 3×3 CBR gated by a global sigmoid."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.expansion_layer = Named('cbr', _seq_cbr(cin, cout, 3, groups=math.gcd(cin, cout)))
        self.wt_layer = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expansion_layer(x) * self.wt_layer(x)


class ESPNetv2(nn.Module):
    """ESPNetv2 segmentation network (s = 2.0) on normalised input.

    Args:
        num_outputs: output channels of the classifier (20 for the Cityscapes weights:
            train ids 0..18 + background).
    """

    def __init__(self, num_outputs: int = 20) -> None:
        super().__init__()
        self.base_net = EESPNetBase()
        self.bu_dec_l1 = PyramidPooling(512, 10, 64)
        self.bu_dec_l2 = PyramidPooling(64, 10, 48)
        self.bu_dec_l3 = PyramidPooling(48, 10, 32)
        self.bu_dec_l4 = PyramidPooling(32, 10, num_outputs, last_br=False)
        self.merge_enc_dec_l2 = GatedProjection(256, 64)
        self.merge_enc_dec_l3 = GatedProjection(128, 48)
        self.merge_enc_dec_l4 = GatedProjection(32, 32)
        self.bu_br_l2 = _seq_br(64)
        self.bu_br_l3 = _seq_br(48)
        self.bu_br_l4 = _seq_br(32)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W normalised image → B×32×ceil(H/2)×ceil(W/2) decoder features."""
        e1, e2, e3, e4 = self.base_net(x)
        y = self.bu_dec_l1(e4)
        y = self.bu_br_l2(_up(y, e3.shape[-2:]) + self.merge_enc_dec_l2(e3))
        y = self.bu_dec_l2(y)
        y = self.bu_br_l3(_up(y, e2.shape[-2:]) + self.merge_enc_dec_l3(e2))
        y = self.bu_dec_l3(y)
        return self.bu_br_l4(_up(y, e1.shape[-2:]) + self.merge_enc_dec_l4(e1))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """B×32×h×w features → B×num_outputs×h×w logits (h, w = half the input size)."""
        return self.bu_dec_l4(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W normalised image → B×num_outputs×ceil(H/2)×ceil(W/2) logits."""
        return self.forward_head(self.forward_features(x))
