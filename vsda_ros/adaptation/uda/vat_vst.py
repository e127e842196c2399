"""``vat_vst``: video adversarial training, then video self-training (after Shin et al.,
"Unsupervised Domain Adaptation for Video Semantic Segmentation").

Stage 1, VAT (iterations < ``vst_start``, needs a source set): a clip discriminator sees the
softmax maps of ``clip_frames`` consecutive frames stacked along the channels (B×T·C×H×W).
Target clips are consecutive target frames; source images have no temporal order, so a source
"clip" is T mildly augmented views of one image (a small random shift and zoom each, the first
view unchanged: :func:`pseudo_clip`). The discriminator learns source = 1, target = 0
(least-squares GAN); the network is trained with weight ``adv_weight`` to make target clips look
like source clips, plus the supervised source term on the unchanged view.

Stage 2, VST (from ``vst_start``; from the start without a source set): the network frozen at
the switch becomes the pseudo-label network. For a target clip its softmax maps of all frames
are flow-warped onto the middle frame and averaged (each pixel over the frames whose flow stays
inside the image: :func:`aggregate_probabilities`); pixels whose averaged confidence is below
``confidence`` are ignored. The network is trained on the strongly augmented middle frame
against these temporally aggregated pseudo-labels (+ the source term).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vsda_ros.adaptation.uda.common import (
    AdversarialRecipe,
    batch_flow,
    ce_loss,
    confident_labels,
    copy_weights,
    frozen_call,
    frozen_copy,
    inside,
    labels_tensor,
    lsgan_d_loss,
    lsgan_g_loss,
    to_tensor,
)
from vsda_ros.temporal.flow import warp


def aggregate_probabilities(
    probs: list[torch.Tensor], flows: list[torch.Tensor | None]
) -> torch.Tensor:
    """Average of softmax maps warped onto one frame.

    Args:
        probs: per frame B×C×H×W softmax.
        flows: per frame B×2×H×W on the reference frame's grid into that frame, or ``None`` for
            the reference frame itself (no warping).
    Returns:
        B×C×H×W: per pixel, the mean over the frames whose flow lands inside the image (the
        reference frame always counts).
    """
    total: torch.Tensor | None = None
    count: torch.Tensor | None = None
    for prob, flow in zip(probs, flows, strict=False):
        if flow is None:
            p, valid = prob, torch.ones_like(prob[:, :1])
        else:
            p, valid = warp(prob, flow), inside(flow)[:, None].to(prob.dtype)
        total = p * valid if total is None else total + p * valid
        count = valid if count is None else count + valid
    assert total is not None and count is not None  # the reference frame is in probs
    return total / count.clamp_min(1.0)


def pseudo_clip(
    x: torch.Tensor, frames: int, rng: np.random.Generator, shift: float = 0.04, zoom: float = 0.05
) -> list[torch.Tensor]:
    """``frames`` views of B×3×H×W images: the images themselves, then views shifted by up to
    ``shift`` of the size and zoomed by up to ±``zoom`` (border pixels repeated)."""
    views = [x]
    b = x.shape[0]
    for _ in range(frames - 1):
        s = 1.0 + rng.uniform(-zoom, zoom, size=b)
        tx, ty = rng.uniform(-shift, shift, size=(2, b)) * 2.0
        theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = torch.as_tensor(1.0 / s, dtype=x.dtype)
        theta[:, 1, 1] = torch.as_tensor(1.0 / s, dtype=x.dtype)
        theta[:, 0, 2] = torch.as_tensor(tx, dtype=x.dtype)
        theta[:, 1, 2] = torch.as_tensor(ty, dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        views.append(
            F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)
        )
    return views


def _stack_clip(probs: torch.Tensor, frames: int) -> torch.Tensor:
    """(T·B)×C×H×W, frame-major → B×(T·C)×H×W: each sample's frames stacked on channels."""
    tb, c, h, w = probs.shape
    return probs.view(frames, tb // frames, c, h, w).transpose(0, 1).reshape(-1, frames * c, h, w)


class VatVstRecipe(AdversarialRecipe):
    """See the module docstring."""

    name = 'vat_vst'

    def __init__(self, model, cfg, rank: int = 0) -> None:
        super().__init__(model, cfg, rank)
        self.frames = int(cfg.clip_frames)
        self._add_discriminator(model.num_classes * self.frames)
        self.labeller = frozen_copy(model)  # the VST pseudo-label network (set at the switch)
        self.switched_at: int | None = None

    def modules(self):
        return {'network': self.model, 'disc': self.disc, 'labeller': self.labeller}

    def clip_length(self) -> int:
        return self.frames

    @property
    def switch(self) -> int:
        """The first VST iteration (0 without a source set: no adversarial stage)."""
        return int(self.cfg.vst_start) if self.has_source else 0

    def stage(self) -> str:
        return 'vat' if self.iteration < self.switch else 'vst'

    def begin_step(self, iteration: int) -> None:
        super().begin_step(iteration)
        if self.iteration == self.switch:  # freeze the network as the pseudo-labeller
            copy_weights(self.labeller, self.model)
            self.switched_at = self.iteration

    @torch.no_grad()
    def aggregated_labels(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Temporally aggregated pseudo-labels of the middle frame of ``xs``."""
        m = len(xs) // 2
        probs = [torch.softmax(self.labeller(x), 1) for x in xs]
        flows = [None if k == m else batch_flow(self.flow, xs[m], x) for k, x in enumerate(xs)]
        return confident_labels(
            aggregate_probabilities(probs, flows),
            self.cfg.confidence,
            class_balance=self.cfg.class_balance,
        )

    def loss(self, clips, source):
        xs = [to_tensor([c[k] for c in clips], self.device) for k in range(self.frames)]
        if self.stage() == 'vat':
            return self._vat(xs, source)
        return self._vst(xs, source)

    def _vat(self, xs, source):
        cfg, b = self.cfg, len(source[0])
        src_views = pseudo_clip(to_tensor(source[0], self.device), self.frames, self.rng)
        if src_views[0].shape == xs[0].shape:  # one pass over both clips
            src_logits, tgt_logits = self.net(torch.cat(src_views + xs)).split(
                [b * self.frames, xs[0].shape[0] * self.frames]
            )
        else:
            src_logits, tgt_logits = self.net(torch.cat(src_views)), self.net(torch.cat(xs))
        clip_src, clip_tgt = (
            _stack_clip(torch.softmax(lg, 1), self.frames) for lg in (src_logits, tgt_logits)
        )
        loss_src = ce_loss(src_logits[:b], labels_tensor(source[1], self.device))
        loss_adv = lsgan_g_loss(frozen_call(self.disc, clip_tgt))
        loss_d = lsgan_d_loss(self.disc_net(clip_src.detach()), self.disc_net(clip_tgt.detach()))
        logs = {
            'stage': 0.0,
            'source': float(loss_src.detach()),
            'adv': float(loss_adv.detach()),
            'disc': float(loss_d.detach()),
        }
        return cfg.source_weight * loss_src + cfg.adv_weight * loss_adv + loss_d, logs

    def _vst(self, xs, source):
        m = len(xs) // 2
        pseudo = self.aggregated_labels(xs)
        b, _, h, w = xs[m].shape
        params = self.augment.draw(self.rng, b, h, w)
        loss_st = ce_loss(
            self.net(self.augment.images(xs[m], params)), self.augment.labels(pseudo, params)
        )
        loss_src, logs = self.source_term(source)
        logs.update(
            stage=1.0,
            vst=float(loss_st.detach()),
            pseudo_ratio=float((pseudo != 255).float().mean()),
        )
        return loss_st + loss_src, logs
