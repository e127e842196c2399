"""``keyframe``: DAVSS-style keyframe feature propagation with distortion-aware correction.

Every ``keyframe_interval``-th frame (and the first after a reset) runs the full network and
keeps its decoder features ``F`` (1×F×h×w, h×w = the model's feature resolution, H/2×W/2 for
the ESPNet family). Every other frame is propagated from the previous one:

1. dense optical flow previous→current at the feature resolution (OpenCV DIS), backward so that
   ``cur(p) ≈ prev(p + flow(p))``;
2. ``F_warp = warp(F_prev, flow)`` (bilinear ``grid_sample``), and the previous image warped the
   same way;
3. with DMNet + CFNet loaded: the distortion map ``D = DMNet(warped image, current image)`` in
   [0, 1], correction features ``F_cf = CFNet(current image)`` (both on the frames at the
   feature resolution, outputs resized to the feature grid), and the feature correction
   module ``F = F_warp·(1−D) + F_cf·D``; without them (or ``correction=False``) ``F = F_warp``;
4. logits = the model's own classifier head on ``F``; ``F`` becomes the next frame's ``F_prev``.

With ``distortion_threshold > 0`` a propagated frame whose mean ``D`` exceeds the threshold is
turned into a keyframe instead (adaptive keyframes); DMNet then runs also without the
correction (``correction=False``: it only decides keyframes).
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import torch
from torch import nn

from vsda_ros.frames import Segmentation
from vsda_ros.inference import Segmenter
from vsda_ros.temporal.correction import fold_batchnorm
from vsda_ros.temporal.flow import DISFlow, flow_to_tensor, warp
from vsda_ros.temporal.strategy import Strategy, StrategyConfig


class Keyframe(Strategy):
    """Keyframe + propagation; see the module docstring."""

    name = 'keyframe'

    def __init__(self, segmenter: Segmenter, config: StrategyConfig | None,
                 dmnet: nn.Module | None = None, cfnet: nn.Module | None = None) -> None:
        super().__init__(segmenter, config)
        dev = segmenter.device
        # inference copies with BatchNorm folded into the convs (same function, fewer ops)
        self.dmnet = fold_batchnorm(dmnet).to(dev) if dmnet is not None else None
        self.cfnet = fold_batchnorm(cfnet).to(dev) if cfnet is not None else None
        self.flow = DISFlow(self.config.flow_preset)
        self._feat: torch.Tensor | None = None   # 1×F×h×w features of the previous frame
        self._small: np.ndarray | None = None    # previous frame at feature resolution (flow)
        self._since_key = 0
        self.force_keyframe = False

    @property
    def corrects(self) -> bool:
        """Whether propagated features are corrected (DMNet + CFNet loaded and enabled)."""
        return bool(self.config.correction and self.dmnet is not None
                    and self.cfnet is not None)

    def _reset(self) -> None:
        self._feat = self._small = None
        self._since_key = 0

    def _is_key(self) -> bool:
        return (self._feat is None or self.force_keyframe
                or self._since_key >= int(self.config.keyframe_interval))

    @torch.inference_mode()
    def _step(self, image: np.ndarray) -> Segmentation:
        seg = self.segmenter
        model = seg.model
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        x = seg.preprocess(image)
        timings['preprocess'] = (time.perf_counter() - t0) * 1e3
        distortion = None
        key = self._is_key()
        feat = small = None
        if not key:
            feat, dmap, small, t = self._propagate(x)
            timings.update(t)
            if dmap is not None:
                distortion = float(dmap.mean())
                thr = float(self.config.distortion_threshold)
                key = thr > 0 and distortion > thr
        t1 = time.perf_counter()
        if key:
            feat = model.forward_features(x)
            self._since_key = 1
        else:
            self._since_key += 1
        logits = model.logits_from_features(feat, x.shape[-2:])
        if seg.device.type == 'cuda':
            torch.cuda.synchronize(seg.device)
        timings['inference' if key else 'head'] = (time.perf_counter() - t1) * 1e3
        self._feat = feat
        # a propagated frame already made its small copy (same feature size on a keyframe
        # decided by the distortion threshold: the stream's resolution did not change)
        self._small = small if small is not None else self._small_of(x, feat)
        t2 = time.perf_counter()
        labels, confidence = seg.postprocess(logits, image.shape[:2])
        timings['postprocess'] = (time.perf_counter() - t2) * 1e3
        return Segmentation(labels, confidence, timings_ms=timings, keyframe=key,
                            distortion=distortion)

    @staticmethod
    def _small_of(x: torch.Tensor, feat: torch.Tensor) -> np.ndarray:
        """Network input 1×3×H×W in [0, 1] → h×w×3 uint8 RGB at the feature resolution."""
        h, w = feat.shape[-2:]
        image = (x[0].permute(1, 2, 0).mul(255.0).round().clamp(0, 255)
                 .to(torch.uint8).cpu().numpy())
        if image.shape[:2] == (h, w):
            return image
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)

    @staticmethod
    def _small_tensor(image: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        """h×w×3 uint8 → 1×3×h×w float in [0, 1] on ``like``'s device."""
        t = torch.from_numpy(np.ascontiguousarray(image)).to(like.device)
        return t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)

    def _propagate(self, x: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray, dict[str, float]]:
        """Warp (and correct) the previous features onto this frame.

        Returns (features 1×F×h×w, distortion map 1×1×h×w or ``None``, this frame at the
        feature resolution h×w×3 uint8, stage timings).
        """
        t0 = time.perf_counter()
        h, w = self._feat.shape[-2:]
        cur_small = self._small_of(x, self._feat)
        flow = flow_to_tensor(self.flow(self._small, cur_small)).to(x.device)
        t1 = time.perf_counter()
        timings = {'flow': (t1 - t0) * 1e3}
        dmap = None
        adaptive = self.dmnet is not None and float(self.config.distortion_threshold) > 0
        if not (self.corrects or adaptive):
            feat = warp(self._feat, flow)
        else:
            # DMNet and CFNet see the frames at the feature resolution (cheap; their outputs
            # are smooth maps, upsampled to the feature grid). Features and previous image are
            # warped in one grid_sample (it samples every channel independently).
            prev_t = self._small_tensor(self._small, x)
            cur_t = self._small_tensor(cur_small, x)
            c = self._feat.shape[1]
            feat, prev_warped = warp(torch.cat((self._feat, prev_t), dim=1), flow).split(
                (c, 3), dim=1)
            dmap = self.dmnet(prev_warped, cur_t, out_size=(h, w))
            if self.corrects:       # else DMNet only decides adaptive keyframes
                feat = self.cfnet.correct(cur_t, feat, dmap)    # FCM
        timings['warp_correct'] = (time.perf_counter() - t1) * 1e3
        return feat, dmap, cur_small, timings
