"""``tps``: Temporal Pseudo Supervision (Xing et al., CVPR 2022), cross-frame pseudo-labels.

For a target pair (previous, current):

1. the teacher (an EMA of the network; ``ema`` = 0 makes it the current network) predicts the
   *previous* frame, without gradients;
2. its softmax is warped onto the current frame with DIS optical flow (current → previous);
3. pixels whose warped confidence is below ``confidence``, or whose flow leaves the image,
   become ``IGNORE``;
4. the network sees the *strongly augmented* current frame (colour jitter, blur, crop/rescale,
   flip; the pseudo-label gets the same geometry) and is trained with cross-entropy against it;
5. plus the supervised source term when a source set is given.

The network must agree with its own (temporally propagated) answer on a harder view of the next
frame: consistency across time and across appearance.
"""

from __future__ import annotations

import torch

from vsda_ros.adaptation.uda.common import (
    NetworkRecipe,
    batch_flow,
    ce_loss,
    confident_labels,
    ema_update,
    frozen_copy,
    inside,
    to_tensor,
)
from vsda_ros.temporal.flow import warp


@torch.no_grad()
def cross_frame_pseudo_labels(
    teacher,
    prev: torch.Tensor,
    cur: torch.Tensor,  # noqa: ARG001
    flow: torch.Tensor,
    threshold: float,
    class_balance: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's prediction on ``prev`` carried to ``cur``.

    Args:
        teacher: images → logits.
        prev, cur: B×3×H×W frames.
        flow: B×2×H×W on ``cur``'s grid into ``prev`` (``cur(p) ≈ prev(p + flow(p))``).
        threshold: minimum warped confidence.
        class_balance: see :func:`~vsda_ros.adaptation.uda.common.confident_labels`.
    Returns:
        (labels B×H×W with ``IGNORE`` where unconfident or out of view, warped probabilities
        B×C×H×W).
    """
    prob = torch.softmax(teacher(prev), 1)
    warped = warp(prob, flow)
    return confident_labels(warped, threshold, inside(flow), class_balance), warped


class TpsRecipe(NetworkRecipe):
    """See the module docstring."""

    name = 'tps'

    def __init__(self, model, cfg, rank: int = 0) -> None:
        super().__init__(model, cfg, rank)
        self.teacher = frozen_copy(model)

    def modules(self):
        return {'network': self.model, 'teacher': self.teacher}

    def loss(self, clips, source):
        prev, cur = (to_tensor([c[k] for c in clips], self.device) for k in (0, 1))
        b, _, h, w = cur.shape
        # 1–3. the teacher's previous-frame prediction, warped onto the current frame
        flow = batch_flow(self.flow, cur, prev)
        pseudo, _ = cross_frame_pseudo_labels(
            self.teacher, prev, cur, flow, self.cfg.confidence, self.cfg.class_balance
        )
        # 4. the student on a strongly augmented current frame, same geometry for the labels
        params = self.augment.draw(self.rng, b, h, w)
        x_aug, y_aug = self.augment.images(cur, params), self.augment.labels(pseudo, params)
        loss_tps = ce_loss(self.net(x_aug), y_aug)
        # 5. the source term
        loss_src, logs = self.source_term(source)
        logs.update(
            tps=float(loss_tps.detach()), pseudo_ratio=float((pseudo != 255).float().mean())
        )
        return loss_tps + loss_src, logs

    def after_step(self) -> None:
        ema_update(self.teacher, self.model, self.cfg.ema)

    def export_network(self):
        return self.teacher if self.cfg.export_teacher else self.model
