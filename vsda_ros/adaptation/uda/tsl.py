"""``tsl``: temporal–spatial teacher–student learning with the fusion block (the NeurIPS 2024
"End-to-End Video Semantic Segmentation in Adverse Weather using Fusion Blocks and
Temporal-Spatial Teacher-Student Learning" recipe), adapted to whole-network training here.

Per target pair (previous, current), each sampled at ``crop``:

1. a student crop box of ``tsl_crop`` (default: half of ``crop``) is drawn per sample;
2. **temporal teacher** — the EMA network + EMA fusion block on the *clean* full frames:
   ``fusion(net(current), net(previous))``, cut to the box → pseudo-labels (``confidence``);
3. **spatial teacher** — the same EMA network on the box of the clean current frame upsampled
   by ``tsl_zoom`` (one factor, or x and y factors); its logits are resized back to the box
   size (:func:`spatial_teacher`) →
   pseudo-labels: the network sees small objects larger, as with a higher-resolution camera;
4. **student** — the network on the box of both frames under *temporal* synthetic weather
   (one :class:`vsda_ros.weather.WeatherSequence` over the two frames; kind drawn from
   ``weather_kinds``, intensity from ``weather_intensity``), and the student fusion block on
   the two outputs;
5. loss = CE(student fused, temporal pseudo-labels) + ``spatial_weight`` · CE(student current
   frame, spatial pseudo-labels) (+ the source term);
6. after the step both teachers follow the student by EMA (``ema``).

The network and the fusion block train together; both are exported (the fusion block in
``extra.temporal``), so ``strategy: fusion`` in the node uses the pair. ``train_base: false``
trains only the fusion block on the frozen network.

``fusion_variant: guided`` trains the image-guided block
(:class:`~vsda_ros.temporal.guided_fusion.GuidedFusionBlock`) instead of the score-only one:
the teacher's block sees the clean frames' guide features, the student's the degraded crops';
its motion field is not taught flow here, so start it from a trained block (``fusion_init``,
e.g. ``espnet-camvid``'s shipped one: no weight depends on the classes when ``num_deform`` is
0).
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from vsda_ros.adaptation.fusion_setup import Degrade, fusion_block, weather_degrade
from vsda_ros.adaptation.uda.common import (
    NetworkRecipe,
    ce_loss,
    confident_labels,
    ema_update,
    frozen_copy,
    to_tensor,
)
from vsda_ros.temporal.guided_fusion import GuidedFusionBlock
from vsda_ros.temporal.modules import TemporalModules

Box = tuple[int, int, int, int]  # x0, y0, w, h
__all__ = ['Box', 'Degrade', 'TslRecipe', 'crop', 'spatial_teacher', 'weather_degrade']


def crop(x: torch.Tensor, box: Box) -> torch.Tensor:
    """…×H×W → …×h×w: the box (x0, y0, w, h)."""
    x0, y0, w, h = box
    return x[..., y0 : y0 + h, x0 : x0 + w]


def spatial_teacher(
    net, frame: torch.Tensor, box: Box, zoom: float | tuple[float, float]
) -> torch.Tensor:
    """Logits of ``box`` of ``frame`` (1×3×H×W) seen at ``zoom``× resolution, at the box size.

    The box is upsampled (bilinear) to ``round(h·zy)×round(w·zx)`` (``zoom`` = z or (zx, zy)),
    predicted, and the logits are area-averaged back to h×w, so output pixel (i, j) covers
    exactly the frame's pixel (y0 + i, x0 + j).
    """
    x0, y0, w, h = box
    zx, zy = (zoom, zoom) if isinstance(zoom, (int, float)) else zoom
    patch = crop(frame, box)
    size = (max(1, round(h * zy)), max(1, round(w * zx)))
    up = (
        F.interpolate(patch, size=size, mode='bilinear', align_corners=False)
        if size != (h, w)
        else patch
    )
    logits = net(up)
    return F.interpolate(logits, size=(h, w), mode='area') if size != (h, w) else logits


class TslRecipe(NetworkRecipe):
    """See the module docstring. ``degrade`` replaces the weather (tests, other corruptions)."""

    name = 'tsl'

    def __init__(self, model, cfg, rank: int = 0, degrade: Degrade | None = None) -> None:
        super().__init__(model, cfg, rank)
        self.guided = cfg.fusion_variant == 'guided'
        self.fusion = fusion_block(cfg, model.num_classes, self.device)
        self.fusion_net = self.fusion
        self.teacher = frozen_copy(model)
        self.teacher_fusion = frozen_copy(self.fusion)
        self.degrade = degrade or weather_degrade(
            list(cfg.weather_kinds), tuple(cfg.weather_intensity)
        )

    def modules(self):
        return {
            'network': self.model,
            'fusion': self.fusion,
            'teacher': self.teacher,
            'teacher_fusion': self.teacher_fusion,
        }

    def trainable(self):
        return {'network': self.model, 'fusion': self.fusion}

    def param_groups(self, lr: float) -> list[dict]:
        """The network at ``lr``, the fusion block at ``fusion_lr`` (when set)."""
        groups = super().param_groups(lr)
        for g in groups:
            if g['name'] == 'fusion' and self.cfg.fusion_lr is not None:
                g['lr'] = float(self.cfg.fusion_lr)
        return groups

    def wrap(self, fn) -> None:
        super().wrap(fn)
        self.fusion_net = fn(self.fusion)

    def student_size(self, w: int, h: int) -> tuple[int, int]:
        cw, ch = self.cfg.tsl_crop
        return (min(cw, w) if cw > 0 else max(1, w // 2), min(ch, h) if ch > 0 else max(1, h // 2))

    def draw_boxes(self, batch: int, w: int, h: int) -> list[Box]:
        cw, ch = self.student_size(w, h)
        return [
            (int(self.rng.integers(0, w - cw + 1)), int(self.rng.integers(0, h - ch + 1)), cw, ch)
            for _ in range(batch)
        ]

    def loss(self, clips, source):
        cfg, dev = self.cfg, self.device
        prev, cur = (to_tensor([c[k] for c in clips], dev) for k in (0, 1))
        b, _, h, w = cur.shape
        # 1. the student's crop boxes
        boxes = self.draw_boxes(b, w, h)
        with torch.no_grad():
            # 2. temporal teacher on the clean full frames, cut to the boxes
            t_cur, t_prev = self.teacher(torch.cat([cur, prev])).chunk(2)
            tf = self.teacher_fusion
            if self.guided:
                guided = cast(GuidedFusionBlock, tf)  # fusion_variant 'guided'
                fused = tf(t_cur, t_prev, guided.guide(cur), guided.guide(prev))
            else:
                fused = tf(t_cur, t_prev)
            prob_t = torch.cat(
                [crop(fused[i : i + 1], box) for i, box in enumerate(boxes)]
            ).softmax(1)
            # 3. spatial teacher on the zoomed clean boxes
            prob_s = torch.cat(
                [
                    spatial_teacher(self.teacher, cur[i : i + 1], box, cfg.zoom_xy)
                    for i, box in enumerate(boxes)
                ]
            ).softmax(1)
        pl_t = confident_labels(prob_t, cfg.confidence, class_balance=cfg.class_balance)
        pl_s = confident_labels(prob_s, cfg.confidence, class_balance=cfg.class_balance)
        # 4. the student: the boxes of both frames under temporal weather
        degraded = []
        for i, box in enumerate(boxes):
            x0, y0, cw, ch = box
            pair = [np.ascontiguousarray(clips[i][k][y0 : y0 + ch, x0 : x0 + cw]) for k in (0, 1)]
            degraded.append(self.degrade(pair, self.rng))
        d_prev, d_cur = (to_tensor([d[k] for d in degraded], dev) for k in (0, 1))
        grad = torch.enable_grad() if self.cfg.trains_base else torch.no_grad()
        with grad:
            s_cur, s_prev = self.net(torch.cat([d_cur, d_prev])).chunk(2)
        if self.guided:
            block = cast(GuidedFusionBlock, self.fusion)  # fusion_variant 'guided'
            s_fused = self.fusion_net(s_cur, s_prev, block.guide(d_cur), block.guide(d_prev))
        else:
            s_fused = self.fusion_net(s_cur, s_prev)
        # 5. consistency with both teachers (+ source)
        loss_t = ce_loss(s_fused, pl_t)
        loss_s = ce_loss(s_cur, pl_s) if self.cfg.trains_base else torch.zeros((), device=dev)
        loss_src, logs = (
            self.source_term(source) if self.cfg.trains_base else (torch.zeros((), device=dev), {})
        )
        logs.update(
            temporal=float(loss_t.detach()),
            spatial=float(loss_s.detach()),
            pseudo_ratio=float((pl_t != 255).float().mean()),
        )
        return loss_t + cfg.spatial_weight * loss_s + loss_src, logs

    def after_step(self) -> None:
        # 6. both teachers follow the student
        ema_update(self.teacher, self.model, self.cfg.ema)
        ema_update(self.teacher_fusion, self.fusion, self.cfg.ema)

    def export_network(self):
        return self.teacher if self.cfg.export_teacher else self.model

    def export(self) -> TemporalModules:
        block = self.teacher_fusion if self.cfg.export_teacher else self.fusion
        return TemporalModules(fusion=frozen_copy(block))
