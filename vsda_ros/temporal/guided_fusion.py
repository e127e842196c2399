"""Image-guided adjacent-frame fusion: class scores aligned with offsets predicted from images.

The score-only :class:`~vsda_ros.temporal.fusion_block.FusionBlock` predicts its deformable
offsets from class-score maps alone, and at its working size it never learned the motion (its
offsets were further from optical flow than zero offsets). This block keeps the design — the
previous frame's **class scores** are aligned by a modulated deformable convolution and merged
with the current scores — but its offsets are predicted from **low-level image features of both
frames**:

1. ``guide(x)``: a two-conv encoder (stride 2) turns the network input (B×3×H×W in [0, 1])
   into unit-length G-channel features at the block size h×w (plus the image itself at h×w).
   It is computed once per frame; the strategy caches the previous frame's.
2. ``motion``: a local correlation (cosine similarity, displacements up to ``radius`` block
   pixels each way) between the two frames' features; a soft-argmax over it gives a first
   motion estimate, and three 3×3 convs over [correlation, current features] refine it. The
   result is a dense (Δx, Δy) field in block pixels, on the current frame's grid, pointing
   into the previous frame (the :func:`~vsda_ros.temporal.flow.warp` convention). No optical
   flow is computed at run time; in training, DIS flow on the clean pair is distilled into it
   (``vsda adapt --recipe fusion`` with ``fusion_variant: guided``).
3. ``align``: ``num_deform`` deformable steps (3×3, torchvision's ``deform_conv2d`` function,
   on the CPU :func:`~vsda_ros.temporal.fusion_block.deform_conv_sampled`); the first step's
   offsets are the motion field on every tap plus a learned per-tap residual predicted from
   [current scores, motion-aligned previous scores]; later steps add only residuals. At
   initialisation the steps are a pure bilinear warp of the previous scores by the motion.
4. ``gate``: a per-pixel weight ``w`` in (0, 1) from cues of how much each frame can be trusted
   (normalised entropy of both score maps, their disagreement, the photometric error of the
   warped previous image, the correlation peak), starting at ``blend`` everywhere. The output is
   ``cur + up(w · (aligned − cur_s))``.
5. ``frame_cues`` (with ``frame_gate``): the frame's weight also gets a term from **frame
   statistics of both images** (:func:`frame_statistics`, computed by :meth:`guide`:
   brightness, contrast, gradient and Laplacian energy, colourfulness, saturated fraction at 1/3
   of the input, and gradient and Laplacian energy of the input itself, where sensor noise
   shows): their change from the previous frame tells *which* frame a transient hit (fog and
   glare lower the contrast and the high frequencies, noise raises them, night lowers the
   brightness), so a hit frame can take more of the previous scores and the clean frame after
   it less. The cues come from the images only, so the term does not depend on the
   network's calibration (a block transfers between models).
6. ``pixel_mask`` (with ``frame_gate``): the frame's weight is multiplied per pixel by a mask in
   (0, 1) from the per-pixel cues (starting at 0.998 everywhere): it can only take *less* of
   the previous frame, where the warp fails (moving objects, disocclusions).

With ``recurrent`` the strategy feeds the *fused* scores (at the block size) to the next frame
instead of the unfused ones, so one clean frame carries on through a damaged neighbour.

Unlike the score-only block this one is never a pass-through: it is meant to be trained.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import DeformConv2d

from vsda_ros.temporal.flow import warp
from vsda_ros.temporal.fusion_block import conv_bias, conv_weight, deform_conv_sampled

_K = 3
_TAPS = _K * _K


def correlation(a: Tensor, b: Tensor, radius: int) -> Tensor:
    """Local correlation volume.

    Args:
        a, b: B×G×h×w features (same shape).
        radius: r ≥ 0; displacements (dy, dx) in [−r, r]², row-major (dy outer).
    Returns:
        B×(2r+1)²×h×w; channel ``(dy + r)·(2r+1) + (dx + r)`` is ``Σ_g a(p)·b(p + (dy, dx))``
        (zero where ``p + (dy, dx)`` is outside the image).
    Raises ``ValueError`` for shapes that differ or a negative radius.
    """
    if a.shape != b.shape or a.dim() != 4 or radius < 0:
        raise ValueError(
            f'correlation: expected two equal B×G×h×w tensors and radius ≥ 0, got '
            f'{tuple(a.shape)}, {tuple(b.shape)}, {radius}'
        )
    h, w = a.shape[-2:]
    k = 2 * radius + 1
    padded = F.pad(b, [radius] * 4)
    # one shifted product per displacement: the same sums as an unfold of b, without its
    # G·k²×h·w buffer (16× faster at the block's sizes on the CPU: 0.7 against 11 ms)
    return torch.cat(
        [
            (a * padded[:, :, dy : dy + h, dx : dx + w]).sum(1, keepdim=True)
            for dy in range(k)
            for dx in range(k)
        ],
        1,
    )


FRAME_STATS = 8


def _gradient_energy(gray: Tensor) -> tuple[Tensor, Tensor]:
    """B×1×H×W → (B,) mean gradient magnitude (|∂x| + |∂y|) and (B,) mean |Laplacian|."""
    gx = (gray[..., :, 1:] - gray[..., :, :-1]).abs().mean((1, 2, 3))
    gy = (gray[..., 1:, :] - gray[..., :-1, :]).abs().mean((1, 2, 3))
    lap = (
        (
            4 * gray[..., 1:-1, 1:-1]
            - gray[..., :-2, 1:-1]
            - gray[..., 2:, 1:-1]
            - gray[..., 1:-1, :-2]
            - gray[..., 1:-1, 2:]
        )
        .abs()
        .mean((1, 2, 3))
    )
    return gx + gy, lap


def frame_statistics(img: Tensor, full: Tensor | None = None) -> Tensor:
    """Frame statistics, each a log so that changes are ratios.

    Args:
        img: B×3×H×W image in [0, 1] (H, W ≥ 3), e.g. at 1/3 of the input.
        full: optional B×3×H'×W' image at full resolution (the network input), for the two
            high-frequency statistics that downscaling averages away (sensor noise).
    Returns:
        B×6 (B×8 with ``full``): mean brightness, brightness spread (contrast), mean gradient
        magnitude, mean |Laplacian|, colourfulness (mean of max − min over the channels), the
        fraction of saturated pixels (brightness > 0.95, + 0.01); then the gradient and
        Laplacian energy of ``full``.
    Raises ``ValueError`` for a tensor that is not B×3×H×W with H, W ≥ 3.
    """
    for t in (img, full):
        if t is not None and (t.dim() != 4 or t.shape[1] != 3 or min(t.shape[-2:]) < 3):
            raise ValueError(f'frame_statistics: expected B×3×H×W (H, W ≥ 3), got {tuple(t.shape)}')
    gray = _luminance(img)
    grad, lap = _gradient_energy(gray)
    colour = (img.amax(1) - img.amin(1)).mean((1, 2))
    stats = [
        gray.mean((1, 2, 3)) + 0.01,
        gray.std((1, 2, 3)) + 0.01,
        grad + 1e-3,
        lap + 1e-3,
        colour + 0.01,
        (gray > 0.95).float().mean((1, 2, 3)) + 0.01,
    ]
    if full is not None:
        stats += [v + 1e-3 for v in _gradient_energy(_luminance(full))]
    return torch.stack(stats, 1).log()


def _luminance(img: Tensor) -> Tensor:
    return (0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2]).unsqueeze(1)


def normalised_entropy(logits: Tensor) -> Tensor:
    """B×C×h×w logits → B×1×h×w entropy of their softmax over log C (0 = certain, 1 = flat)."""
    logp = F.log_softmax(logits, 1)
    return -(logp.exp() * logp).sum(1, keepdim=True) / math.log(logits.shape[1])


class GuidedFusionBlock(nn.Module):
    """Fuse the current logits with the previous frame's, aligned by image-guided offsets.

    Args:
        num_classes: C.
        scale: working scale; the block works at ``round(H*scale)×round(W*scale)`` (≥ 2 px).
        guide_ch: G, channels of the image features the motion is estimated from.
        radius: correlation radius in block pixels.
        motion_hidden: channels of the motion refinement convs.
        num_deform: deformable steps; 0 = the previous scores are warped by the motion field
            alone (what the steps compute at initialisation, without their learned weights).
        blend: the gate's initial weight on the aligned previous scores, in (0, 1).
        recurrent: the strategy passes the fused scores on to the next frame (stored with the
            block; :class:`~vsda_ros.temporal.fusion.Fusion` reads it).
        variant: always ``'guided'`` (how checkpoints tell the two blocks apart).
        frame_gate: one gate weight per frame (the sigmoid of the mean of the per-pixel gate
            logits) instead of one per pixel: the blend follows how damaged the frame is, not
            which pixels are uncertain.
        frame_cues: add the frame-statistics term to the frame's gate logit (needs
            ``frame_gate``); its last layer starts at zero (the block is then the one without).
        pixel_mask: multiply the frame's weight by a per-pixel mask (needs ``frame_gate``).

    Raises ``ValueError`` for out-of-range arguments (``frame_cues`` or ``pixel_mask`` without
    ``frame_gate``).
    """

    _disp_x: Tensor  # buffers, registered in __init__
    _disp_y: Tensor

    uses_images = True

    def __init__(
        self,
        num_classes: int,
        scale: float = 1 / 6,
        guide_ch: int = 16,
        radius: int = 3,
        motion_hidden: int = 32,
        num_deform: int = 1,
        blend: float = 0.4,
        recurrent: bool = True,
        variant: str = 'guided',
        frame_gate: bool = False,
        frame_cues: bool = False,
        pixel_mask: bool = False,
    ) -> None:
        super().__init__()
        if variant != 'guided':
            raise ValueError(f"variant must be 'guided', got {variant!r}")
        if num_classes < 1 or guide_ch < 1 or motion_hidden < 1 or num_deform < 0 or radius < 0:
            raise ValueError(
                'num_classes, guide_ch, motion_hidden must be ≥ 1, num_deform and '
                f'radius ≥ 0, got {num_classes}, {guide_ch}, {motion_hidden}, '
                f'{num_deform}, {radius}'
            )
        if not 0 < scale <= 1 or not 0 < blend < 1:
            raise ValueError(f'scale must be in (0, 1] and blend in (0, 1), got {scale}, {blend}')
        if (frame_cues or pixel_mask) and not frame_gate:
            raise ValueError(
                'frame_cues and pixel_mask need frame_gate (they act on the one weight per frame)'
            )
        c = num_classes
        self.num_classes, self.scale, self.radius = c, scale, radius
        self.guide_ch, self.frame_cues = guide_ch, bool(frame_cues)
        self.pixel_mask = bool(pixel_mask)
        self.num_deform, self.blend, self.recurrent = num_deform, blend, bool(recurrent)
        self.frame_gate = bool(frame_gate)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, guide_ch, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(guide_ch, guide_ch, 3, padding=1),
        )
        taps = (2 * radius + 1) ** 2
        self.temperature = nn.Parameter(torch.tensor(2.0))
        self.motion = nn.Sequential(
            nn.Conv2d(taps + guide_ch, motion_hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(motion_hidden, motion_hidden, 3, padding=2, dilation=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(motion_hidden, 2, 3, padding=1),
        )
        self.offsets = nn.ModuleList(
            nn.Conv2d(2 * c, 3 * _TAPS, _K, padding=1) for _ in range(num_deform)
        )
        self.deforms = nn.ModuleList(DeformConv2d(c, c, _K, padding=1) for _ in range(num_deform))
        self.gate = nn.Sequential(
            nn.Conv2d(5, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 1, 1)
        )
        # frame term: [stats(cur) − stats(prev), stats(cur), mean photometric error, mean peak]
        self.frame_head = (
            nn.Sequential(
                nn.Linear(2 * FRAME_STATS + 2, 16), nn.ReLU(inplace=True), nn.Linear(16, 1)
            )
            if frame_cues
            else None
        )
        self.mask = (
            nn.Sequential(nn.Conv2d(5, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 1, 1))
            if pixel_mask
            else None
        )
        r = torch.arange(-radius, radius + 1, dtype=torch.float32)
        self.register_buffer(
            '_disp_y', r.repeat_interleave(2 * radius + 1).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            '_disp_x', r.repeat(2 * radius + 1).view(1, -1, 1, 1), persistent=False
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Motion refinement, offset residuals, the gate's last conv and the frame term's last
        layer start at zero (motion = the soft-argmax, the steps a pure warp, the gate ``blend``
        everywhere), the pixel mask at sigmoid(6) = 0.998; each deformable conv starts as the
        identity on its centre tap (2·I, cancelling the 0.5 mask)."""
        last: tuple[nn.Module, ...] = (self.frame_head[-1],) if self.frame_head is not None else ()
        if self.mask is not None:
            last += (self.mask[-1],)
        for conv in (self.motion[-1], *self.offsets, self.gate[-1], *last):
            nn.init.zeros_(conv_weight(conv))
            nn.init.zeros_(conv_bias(conv))
        if self.mask is not None:
            conv_bias(self.mask[-1]).fill_(6.0)  # sigmoid(6) = 0.998
        conv_bias(self.gate[-1]).fill_(math.log(self.blend / (1 - self.blend)))
        for deform in self.deforms:
            nn.init.zeros_(conv_weight(deform))
            conv_weight(deform)[:, :, _K // 2, _K // 2] = 2.0 * torch.eye(self.num_classes)
            nn.init.zeros_(conv_bias(deform))

    # -- sizes ------------------------------------------------------------------------------
    def block_size(self, h: int, w: int) -> tuple[int, int]:
        """``round(h*scale)×round(w*scale)``, at least 2 px a side."""
        return max(2, round(h * self.scale)), max(2, round(w * self.scale))

    def shrink(self, x: Tensor) -> Tensor:
        """B×C×H×W → B×C×h×w at the block size (bilinear, align_corners=False)."""
        small = self.block_size(*x.shape[-2:])
        if x.shape[-2:] == small:
            return x
        return F.interpolate(x, size=small, mode='bilinear', align_corners=False)

    # -- the pieces -------------------------------------------------------------------------
    def guide(self, x: Tensor) -> Tensor:
        """B×3×H×W image in [0, 1] (the network input) → B×(G[+8]+3)×h×w: unit-length features
        (G), with ``frame_cues`` the :func:`frame_statistics` of the image at twice the block
        size and of ``x`` (8 constant channels), and the image (3) at the block size, for
        :meth:`forward` (cache the previous frame's)."""
        h, w = self.block_size(*x.shape[-2:])
        img2 = F.interpolate(
            x, size=(2 * h, 2 * w), mode='bilinear', align_corners=False, antialias=True
        )
        feat = F.normalize(self.encoder(img2 - 0.5), dim=1)
        img = F.avg_pool2d(img2, 2)
        if not self.frame_cues:
            return torch.cat([feat, img], 1)
        stats = frame_statistics(img2, x)[..., None, None].expand(-1, -1, h, w)
        return torch.cat([feat, stats, img], 1)

    def motion_field(self, cur_guide: Tensor, prev_guide: Tensor) -> tuple[Tensor, Tensor]:
        """The motion field and the correlation volume it was read from.

        Returns:
            ``(motion, corr)``: motion B×2×h×w (Δx, Δy) in block pixels, where each pixel of the
            current frame was in the previous one (the :func:`~vsda_ros.temporal.flow.warp`
            convention); corr B×(2r+1)²×h×w, the normalised cosine correlation per displacement
            (r = ``radius``).
        """
        g = self.guide_ch
        fc, fp = cur_guide[:, :g], prev_guide[:, :g]
        corr = correlation(fc, fp, self.radius)
        # per pixel, over the displacements: zero mean, unit spread (the raw cosines are all
        # near 1 where the frames are smooth, which hides the peak)
        corr = (corr - corr.mean(1, keepdim=True)) / (corr.std(1, keepdim=True) + 1e-3)
        p = torch.softmax(corr * self.temperature, 1)
        coarse = torch.cat(
            [(p * self._disp_x).sum(1, keepdim=True), (p * self._disp_y).sum(1, keepdim=True)], 1
        )
        return coarse + self.motion(torch.cat([corr, fc], 1)), corr

    def align(self, cur_s: Tensor, prev_s: Tensor, motion: Tensor) -> Tensor:
        """B×C×h×w previous scores aligned to the current frame by the deformable steps
        (``num_deform`` 0: warped by the motion field alone, bilinear)."""
        if self.num_deform == 0:
            return warp(prev_s, motion)
        base = motion.flip(1).repeat(1, _TAPS, 1, 1)  # (dy, dx) per tap
        aligned = prev_s
        for i, (offset_conv, deform) in enumerate(zip(self.offsets, self.deforms, strict=False)):
            guide = warp(aligned, motion) if i == 0 else aligned
            om = offset_conv(torch.cat([cur_s, guide], 1))
            offset = om[:, : 2 * _TAPS] + (base if i == 0 else 0)
            mask = om[:, 2 * _TAPS :].sigmoid()
            if aligned.device.type == 'cpu':
                aligned = deform_conv_sampled(
                    aligned, offset, mask, conv_weight(deform), conv_bias(deform)
                )
            else:
                aligned = deform(aligned, offset, mask)
        return aligned

    def forward(
        self,
        cur: Tensor,
        prev: Tensor,
        cur_guide: Tensor,
        prev_guide: Tensor,
        cur_small: Tensor | None = None,
        aux: dict | None = None,
    ) -> Tensor:
        """Fuse the current logits with the previous frame's.

        Args:
            cur: B×C×H×W logits of the current frame.
            prev: B×C×h×w previous scores at the block size (or B×C×H×W, shrunk here).
            cur_guide, prev_guide: :meth:`guide` of the two frames' network inputs.
            cur_small: ``shrink(cur)`` if the caller has it.
            aux: if a dict, receives ``motion`` (B×2×h×w), ``aligned`` (B×C×h×w) and ``gate``
                (B×1×h×w) for training and diagnostics.
        Returns:
            B×C×H×W fused logits ``cur + up(w·(aligned − cur_s))``.
        Raises ``ValueError`` for inputs of the wrong shape.
        """
        size = cur.shape[-2:]
        if cur.dim() != 4 or cur.shape[1] != self.num_classes or prev.shape[:2] != cur.shape[:2]:
            raise ValueError(
                f'expected cur and prev B×{self.num_classes}×H×W, got '
                f'{tuple(cur.shape)} and {tuple(prev.shape)}'
            )
        cur_s = self.shrink(cur) if cur_small is None else cur_small
        prev_s = prev if prev.shape[-2:] == cur_s.shape[-2:] else self.shrink(prev)
        if (
            prev_s.shape != cur_s.shape
            or cur_guide.shape[-2:] != cur_s.shape[-2:]
            or prev_guide.shape != cur_guide.shape
        ):
            raise ValueError(
                f'block-size mismatch: scores {tuple(cur_s.shape)} / '
                f'{tuple(prev_s.shape)}, guides {tuple(cur_guide.shape)} / '
                f'{tuple(prev_guide.shape)}'
            )
        motion, corr = self.motion_field(cur_guide, prev_guide)
        aligned = self.align(cur_s, prev_s, motion)
        photo = (cur_guide[:, -3:] - warp(prev_guide[:, -3:], motion)).abs().mean(1, True)
        cues = torch.cat(
            [
                normalised_entropy(cur_s),
                normalised_entropy(aligned),
                (torch.softmax(cur_s, 1) - torch.softmax(aligned, 1)).abs().sum(1, True),
                photo * 4.0,
                corr.amax(1, keepdim=True),
            ],
            1,
        )
        z = self.gate(cues)
        if self.frame_gate:  # one weight per frame: the mean of the per-pixel logits
            z = z.mean((2, 3), keepdim=True)
            if self.frame_head is not None:
                stats = slice(self.guide_ch, self.guide_ch + FRAME_STATS)
                s_cur, s_prev = cur_guide[:, stats, 0, 0], prev_guide[:, stats, 0, 0]
                pooled = cues[:, 3:].mean((2, 3))  # photometric, peak
                term = self.frame_head(torch.cat([s_cur - s_prev, s_cur, pooled], 1))
                z = z + term[..., None, None]
            z = z.expand(-1, -1, *cur_s.shape[-2:])
        w = torch.sigmoid(z)
        if self.mask is not None:
            w = w * torch.sigmoid(self.mask(cues))
        delta = w * (aligned - cur_s)
        if aux is not None:
            aux.update(motion=motion, aligned=aligned, gate=w)
        if delta.shape[-2:] != size:
            delta = F.interpolate(delta, size=size, mode='bilinear', align_corners=False)
        return cur + delta

    def extra_repr(self) -> str:
        return (
            f'num_classes={self.num_classes}, scale={self.scale:.4f}, radius={self.radius}, '
            f'num_deform={self.num_deform}, blend={self.blend}, recurrent={self.recurrent}, '
            f'frame_gate={self.frame_gate}, frame_cues={self.frame_cues}, '
            f'pixel_mask={self.pixel_mask}'
        )
