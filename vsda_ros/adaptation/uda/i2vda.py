"""``i2vda``: image-to-video domain adaptation (source *images*, target *video*).

Three parts:

- **temporal augmentation**: from two consecutive target frames I₀, I₁ and their flows, an
  intermediate frame at a random time t ∈ [0, 1] is synthesised,
  ``I_t = α·W(I₀, F_t→0) + (1 − α)·W(I₁, F_t→1)``, with the linear-motion approximations
  ``F_t→0 ≈ t·F_1→0`` and ``F_t→1 ≈ (1 − t)·F_0→1`` and α = (1 − t)·v₀ / ((1 − t)·v₀ + t·v₁)
  (v = not occluded by the forward–backward flow check, and inside the image; α = 1 − t where
  neither frame is usable);
  ``I_0`` is exactly I₀ and ``I_1`` exactly I₁;
- **proxy pseudo-labels**: a proxy network (a frozen copy of the network, first made at
  iteration L = ``proxy_launch`` and refreshed at L + K, L + 2K, … with K = ``proxy_interval``)
  predicts I₀ and I₁; its softmax maps are carried to time t the same way, and the pseudo-label
  of ``I_t`` keeps only pixels visible in one of the frames (occlusion mask) whose normalised
  entropy is below ``entropy_threshold`` (entropy mask). Without a source set there is nothing
  to learn before the proxy exists, so L is taken as 0;
- **output-level adversarial alignment** (with a source set): a least-squares GAN patch
  discriminator tells source softmax maps (label 1) from target ones (label 0); the network is
  trained with weight ``adv_weight`` to make target outputs look like source ones; plus the
  supervised source term.
"""

from __future__ import annotations

import torch

from vsda_ros.adaptation.uda.common import (
    AdversarialRecipe,
    batch_flow,
    ce_loss,
    confident_labels,
    copy_weights,
    fb_consistent,
    frozen_call,
    frozen_copy,
    inside,
    labels_tensor,
    lsgan_d_loss,
    lsgan_g_loss,
    normalised_entropy,
    to_tensor,
)
from vsda_ros.temporal.flow import warp


def interpolation_weights(
    f10: torch.Tensor, f01: torch.Tensor, t: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flows and weights that carry frames 0 and 1 to time ``t``.

    Args:
        f10: B×2×H×W on frame 1's grid into frame 0 (``I₁(p) ≈ I₀(p + f10(p))``).
        f01: B×2×H×W on frame 0's grid into frame 1.
        t: time of the synthesised frame, 0 = frame 0, 1 = frame 1.
    Returns:
        (F_t→0, F_t→1, α B×1×H×W, v₀, v₁ B×H×W bool visibility of frames 0 and 1 at time t).
    """
    ft0, ft1 = t * f10, (1.0 - t) * f01
    # a frame's pixel is usable unless the forward–backward check finds it occluded; a pixel
    # whose flow leaves the other frame's view cannot be checked and is kept
    c0 = (fb_consistent(f01, f10) | ~inside(f01)).float()[:, None]
    c1 = (fb_consistent(f10, f01) | ~inside(f10)).float()[:, None]
    v0 = (warp(c0, ft0)[:, 0] > 0.5) & inside(ft0)
    v1 = (warp(c1, ft1)[:, 0] > 0.5) & inside(ft1)
    a0, a1 = (1.0 - t) * v0.float(), t * v1.float()
    den = a0 + a1
    alpha = torch.where(den > 0, a0 / den.clamp_min(1e-12), torch.full_like(den, 1.0 - t))
    return ft0, ft1, alpha[:, None], v0, v1


def interpolate(
    x0: torch.Tensor, x1: torch.Tensor, ft0: torch.Tensor, ft1: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """``α·W(x0, F_t→0) + (1 − α)·W(x1, F_t→1)`` for images or probability maps."""
    return alpha * warp(x0, ft0) + (1.0 - alpha) * warp(x1, ft1)


class I2vdaRecipe(AdversarialRecipe):
    """See the module docstring."""

    name = 'i2vda'

    def __init__(self, model, cfg, rank: int = 0) -> None:
        super().__init__(model, cfg, rank)
        self.proxy = frozen_copy(model)
        self._add_discriminator(model.num_classes)
        self.refreshed_at: list[int] = []

    def modules(self):
        return {'network': self.model, 'proxy': self.proxy, 'disc': self.disc}

    @property
    def launch(self) -> int:
        """L: the first iteration with a proxy (0 without a source set)."""
        return int(self.cfg.proxy_launch) if self.has_source else 0

    def proxy_active(self) -> bool:
        return self.iteration >= self.launch

    def begin_step(self, iteration: int) -> None:
        super().begin_step(iteration)
        # the proxy is (re)made at L, L+K, L+2K, …
        offset = self.iteration - self.launch
        if offset >= 0 and offset % int(self.cfg.proxy_interval) == 0:
            copy_weights(self.proxy, self.model)
            self.refreshed_at.append(self.iteration)

    @torch.no_grad()
    def pseudo_labels(self, x0, x1, f10, f01, t: float):
        """Proxy pseudo-labels for the frame synthesised at ``t`` (with the weights used)."""
        ft0, ft1, alpha, v0, v1 = interpolation_weights(f10, f01, t)
        prob = interpolate(
            torch.softmax(self.proxy(x0), 1), torch.softmax(self.proxy(x1), 1), ft0, ft1, alpha
        )
        keep = (v0 | v1) & (normalised_entropy(prob) < self.cfg.entropy_threshold)
        return confident_labels(prob, 0.0, keep), (ft0, ft1, alpha)

    def loss(self, clips, source):
        cfg = self.cfg
        x0, x1 = (to_tensor([c[k] for c in clips], self.device) for k in (0, 1))
        total = torch.zeros((), device=self.device)
        logs: dict[str, float] = {}
        target_logits = None
        if self.proxy_active():
            # temporal augmentation + proxy pseudo-labels on the synthesised frame
            t = float(self.rng.uniform(0.0, 1.0))
            f10, f01 = batch_flow(self.flow, x1, x0), batch_flow(self.flow, x0, x1)
            pseudo, (ft0, ft1, alpha) = self.pseudo_labels(x0, x1, f10, f01, t)
            xt = interpolate(x0, x1, ft0, ft1, alpha)
            target_logits = self.net(xt)
            loss_pl = ce_loss(target_logits, pseudo)
            total = total + loss_pl
            logs.update(
                proxy=float(loss_pl.detach()),
                t=t,
                pseudo_ratio=float((pseudo != 255).float().mean()),
            )
        if source is not None:
            # supervised source term
            xs, ys = to_tensor(source[0], self.device), labels_tensor(source[1], self.device)
            src_logits = self.net(xs)
            loss_src = ce_loss(src_logits, ys)
            if target_logits is None:
                target_logits = self.net(x0)
            # output-level LSGAN: the network makes target outputs look like source ones …
            p_src, p_tgt = torch.softmax(src_logits, 1), torch.softmax(target_logits, 1)
            loss_adv = lsgan_g_loss(frozen_call(self.disc, p_tgt))
            # … while the discriminator learns source = 1, target = 0 (on detached outputs)
            loss_d = lsgan_d_loss(self.disc_net(p_src.detach()), self.disc_net(p_tgt.detach()))
            total = total + cfg.source_weight * loss_src + cfg.adv_weight * loss_adv + loss_d
            logs.update(
                source=float(loss_src.detach()),
                adv=float(loss_adv.detach()),
                disc=float(loss_d.detach()),
            )
        if target_logits is None:  # nothing to learn this step (cannot happen: L = 0 then)
            total = total + self.net(x0).sum() * 0.0
        return total, logs
