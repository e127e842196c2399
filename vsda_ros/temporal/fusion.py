"""``fusion``: the current frame's class scores fused with the previous frame's.

Each frame runs the full network once (B×C×h×w logits at the network input size); the
previous frame's *unfused* logits are cached (already shrunk to the block's working size), so
the extra cost per frame is only the
:class:`~vsda_ros.temporal.fusion_block.FusionBlock`. The first frame of a stream (and the one
after a reset) is plain per-frame. An untrained block passes the current scores through, so the
strategy then equals ``per_frame`` exactly.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from vsda_ros.frames import Segmentation
from vsda_ros.inference import Segmenter
from vsda_ros.temporal.strategy import Strategy, StrategyConfig


class Fusion(Strategy):
    """Adjacent-frame score fusion (flow-free, deformable alignment)."""

    name = 'fusion'

    def __init__(self, segmenter: Segmenter, config: StrategyConfig | None,
                 block: nn.Module) -> None:
        super().__init__(segmenter, config)
        self.block = block.to(segmenter.device).eval()
        self._prev: torch.Tensor | None = None  # previous frame's logits at the block size

    def _reset(self) -> None:
        self._prev = None

    @torch.inference_mode()
    def _step(self, image: np.ndarray) -> Segmentation:
        seg = self.segmenter
        t0 = time.perf_counter()
        x = seg.preprocess(image)
        t1 = time.perf_counter()
        logits = seg.logits(x)
        t2 = time.perf_counter()
        small = self.block.shrink(logits)
        fused = logits if self._prev is None else self.block(logits, self._prev,
                                                              cur_small=small)
        self._prev = small
        if seg.device.type == 'cuda':
            torch.cuda.synchronize(seg.device)
        t3 = time.perf_counter()
        labels, confidence = seg.postprocess(fused, image.shape[:2])
        t4 = time.perf_counter()
        return Segmentation(labels, confidence, timings_ms={
            'preprocess': (t1 - t0) * 1e3, 'inference': (t2 - t1) * 1e3,
            'fusion': (t3 - t2) * 1e3, 'postprocess': (t4 - t3) * 1e3})
