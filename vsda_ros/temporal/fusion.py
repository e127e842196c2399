"""``fusion``: the current frame's class scores fused with the previous frame's.

Each frame runs the full network once (B×C×h×w logits at the network input size); the
previous frame's *unfused* logits are cached (already shrunk to the block's working size), so
the extra cost per frame is only the
:class:`~vsda_ros.temporal.fusion_block.FusionBlock`. The first frame of a stream (and the one
after a reset) is plain per-frame. An untrained score-only block passes the current scores
through, so the strategy then equals ``per_frame`` exactly.

An image-guided block (:class:`~vsda_ros.temporal.guided_fusion.GuidedFusionBlock`,
``uses_images``) also gets the frames' guide features (computed once per frame from the network
input, the previous frame's cached); a ``recurrent`` one is fed the previous *fused* scores.
"""

from __future__ import annotations

import time
from typing import Protocol, cast

import numpy as np
import torch
from torch import nn

from vsda_ros.frames import Segmentation
from vsda_ros.inference import Segmenter
from vsda_ros.temporal.strategy import Strategy, StrategyConfig


class _BlockMethods(Protocol):
    """The fusion block's methods used here besides its call (``shrink`` on
    :class:`~vsda_ros.temporal.fusion_block.FusionBlock` and
    :class:`~vsda_ros.temporal.guided_fusion.GuidedFusionBlock`, ``guide`` on the latter)."""

    def shrink(self, x: torch.Tensor) -> torch.Tensor: ...

    def guide(self, x: torch.Tensor) -> torch.Tensor: ...


class Fusion(Strategy):
    """Adjacent-frame score fusion (flow-free, deformable alignment)."""

    name = 'fusion'

    def __init__(
        self, segmenter: Segmenter, config: StrategyConfig | None, block: nn.Module
    ) -> None:
        super().__init__(segmenter, config)
        self.block = block.to(segmenter.device).eval()
        self._prev: torch.Tensor | None = None  # previous frame's logits at the block size
        self._prev_guide: torch.Tensor | None = None
        self._guided = bool(getattr(self.block, 'uses_images', False))
        self._recurrent = bool(getattr(self.block, 'recurrent', False))

    def _reset(self) -> None:
        self._prev = self._prev_guide = None

    @torch.inference_mode()
    def _step(self, image: np.ndarray) -> Segmentation:
        seg = self.segmenter
        t0 = time.perf_counter()
        x = seg.preprocess(image)
        t1 = time.perf_counter()
        logits = seg.logits(x)
        t2 = time.perf_counter()
        block = cast(_BlockMethods, self.block)
        small = block.shrink(logits)
        if self._guided:
            guide = block.guide(x)
            fused = (
                logits
                if self._prev is None
                else self.block(logits, self._prev, guide, self._prev_guide, cur_small=small)
            )
            self._prev_guide = guide
        else:
            fused = (
                logits if self._prev is None else self.block(logits, self._prev, cur_small=small)
            )
        self._prev = block.shrink(fused) if self._recurrent else small
        if seg.device.type == 'cuda':
            torch.cuda.synchronize(seg.device)
        t3 = time.perf_counter()
        labels, confidence = seg.postprocess(fused, image.shape[:2])
        t4 = time.perf_counter()
        return Segmentation(
            labels,
            confidence,
            timings_ms={
                'preprocess': (t1 - t0) * 1e3,
                'inference': (t2 - t1) * 1e3,
                'fusion': (t3 - t2) * 1e3,
                'postprocess': (t4 - t3) * 1e3,
            },
        )
