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
from typing import cast

import cv2
import numpy as np
import torch
from torch import nn

from vsda_ros.frames import Segmentation
from vsda_ros.inference import Segmenter
from vsda_ros.temporal.correction import CFNet, fold_batchnorm
from vsda_ros.temporal.flow import DISFlow, flow_to_tensor, warp
from vsda_ros.temporal.rate_control import RateController, RateDecision
from vsda_ros.temporal.strategy import Strategy, StrategyConfig


class Keyframe(Strategy):
    """Keyframe + propagation; see the module docstring.

    Args:
        segmenter: the network (any backend: non-key frames call its ``logits_from_features``,
            i.e. the compiled head graph on a compiled backend).
        config: ``keyframe_interval``, ``distortion_threshold``, ``correction``,
            ``flow_preset``; a ``flow_downscale`` attribute, when the config has one, is the
            default of the argument below.
        dmnet, cfnet: trained correction modules (``None`` = plain warping).
        flow_downscale: DIS runs on the frame pair at the feature resolution divided by this
            (1 = the feature resolution); the flow is upsampled to the feature grid by
            :func:`~vsda_ros.temporal.flow.warp`. ``ValueError`` below 1.
    """

    name = 'keyframe'

    def __init__(
        self,
        segmenter: Segmenter,
        config: StrategyConfig | None,
        dmnet: nn.Module | None = None,
        cfnet: nn.Module | None = None,
        flow_downscale: int | None = None,
    ) -> None:
        super().__init__(segmenter, config)
        dev = segmenter.device
        # inference copies with BatchNorm folded into the convs (same function, fewer ops)
        self.dmnet = fold_batchnorm(dmnet).to(dev) if dmnet is not None else None
        self.cfnet = fold_batchnorm(cfnet).to(dev) if cfnet is not None else None
        if flow_downscale is None:
            flow_downscale = getattr(self.config, 'flow_downscale', 1)
        if int(flow_downscale) < 1:
            raise ValueError(f'flow_downscale must be ≥ 1, got {flow_downscale}')
        self.flow_downscale = int(flow_downscale)
        self.flow = DISFlow(self.config.flow_preset)
        self._feat: torch.Tensor | None = None  # 1×F×h×w features of the previous frame
        self._small: np.ndarray | None = None  # previous frame at feature resolution (flow)
        self._since_key = 0
        self.force_keyframe = False
        self.rate_controller: RateController | None = None
        self.rate_decision: RateDecision | None = None

    @property
    def corrects(self) -> bool:
        """Whether propagated features are corrected (DMNet + CFNet loaded and enabled)."""
        return bool(self.config.correction and self.dmnet is not None and self.cfnet is not None)

    def attach_rate_controller(self, controller: RateController | None) -> None:
        """Let ``controller`` pick ``config.keyframe_interval`` after every frame from this
        strategy's own measured step costs (``None`` detaches). The latest decision is in
        :attr:`rate_decision` (its ``reason`` is meant for ``/diagnostics``)."""
        self.rate_controller = controller
        self.rate_decision = None
        if controller is not None:
            controller.interval = int(self.config.keyframe_interval)

    def _apply_rate(self, seg: Segmentation, step_ms: float) -> None:
        """Feed this frame's cost to the rate controller and apply its interval."""
        ctrl = self.rate_controller
        if ctrl is None:
            return
        ctrl.observe('key' if seg.kind == 'key' else 'nonkey', step_ms)
        self.rate_decision = ctrl.decide(background_keys=False)
        self.config.keyframe_interval = self.rate_decision.interval

    def _reset(self) -> None:
        self._feat = self._small = None
        self._since_key = 0

    def _is_key(self) -> bool:
        return (
            self._feat is None
            or self.force_keyframe
            or self._since_key >= int(self.config.keyframe_interval)
        )

    def _step(self, image: np.ndarray) -> Segmentation:
        t_start = time.perf_counter()
        seg = self._keyframe_step(image)
        self._apply_rate(seg, (time.perf_counter() - t_start) * 1e3)
        return seg

    @torch.inference_mode()
    def _keyframe_step(self, image: np.ndarray) -> Segmentation:
        timings: dict[str, float] = {}
        x = self._preprocess(image, timings)
        distortion = None
        key = self._is_key()
        feat: torch.Tensor | None = None
        small: np.ndarray | None = None
        if not key:
            feat, dmap, small, t = self._propagate(x)
            timings.update(t)
            distortion, key = self._distortion_key(dmap)
        t_key = time.perf_counter() if key else None
        feat = self._key_features(x) if key else feat
        self._since_key = 1 if key else self._since_key + 1
        assert feat is not None  # key features, else the propagated ones
        return self._output(
            image, x, feat, small, 'key' if key else 'propagated', timings, distortion, t_key
        )

    def _preprocess(self, image: np.ndarray, timings: dict[str, float]) -> torch.Tensor:
        t0 = time.perf_counter()
        x = self.segmenter.preprocess(image)
        timings['preprocess'] = (time.perf_counter() - t0) * 1e3
        return x

    def _distortion_key(self, dmap: torch.Tensor | None) -> tuple[float | None, bool]:
        """(mean distortion or ``None``, whether it exceeds ``distortion_threshold`` > 0)."""
        if dmap is None:
            return None, False
        distortion = float(dmap.mean())
        thr = float(self.config.distortion_threshold)
        return distortion, thr > 0 and distortion > thr

    def _key_features(self, x: torch.Tensor) -> torch.Tensor:
        """The key network's features: 1×3×H×W → 1×F×h×w (``model.forward_features``)."""
        return self.segmenter.model.forward_features(x)

    def _output(
        self,
        image: np.ndarray,
        x: torch.Tensor,
        feat: torch.Tensor,
        small: np.ndarray | None,
        kind: str,
        timings: dict[str, float],
        distortion: float | None,
        t_key: float | None = None,
    ) -> Segmentation:
        """Head + postprocess of ``feat``; ``feat`` and this frame's small copy become the
        previous frame's. ``t_key``: when the key network started on this frame (its time
        is then reported as ``inference``, the head included; else the head alone as
        ``head``)."""
        seg = self.segmenter
        t1 = time.perf_counter()
        logits = seg.model.logits_from_features(feat, cast('tuple[int, int]', x.shape[-2:]))
        if seg.device.type == 'cuda':
            torch.cuda.synchronize(seg.device)
        t2 = time.perf_counter()
        if t_key is not None:
            timings['inference'] = (t2 - t_key) * 1e3
        else:
            timings['head'] = (t2 - t1) * 1e3
        self._feat = feat
        # a propagated frame already made its small copy (same feature size on a keyframe
        # decided by the distortion threshold: the stream's resolution did not change)
        self._small = small if small is not None else self._small_of(x, feat)
        t3 = time.perf_counter()
        labels, confidence = seg.postprocess(logits, image.shape[:2])
        timings['postprocess'] = (time.perf_counter() - t3) * 1e3
        return Segmentation(
            labels,
            confidence,
            timings_ms=timings,
            keyframe=kind == 'key',
            distortion=distortion,
            kind=kind,
        )

    @staticmethod
    def _small_of(x: torch.Tensor, feat: torch.Tensor) -> np.ndarray:
        """Network input 1×3×H×W in [0, 1] → h×w×3 uint8 RGB at the feature resolution."""
        h, w = feat.shape[-2:]
        image = x[0].permute(1, 2, 0).mul(255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        if image.shape[:2] == (h, w):
            return image
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)

    @staticmethod
    def _small_tensor(image: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        """h×w×3 uint8 → 1×3×h×w float in [0, 1] on ``like``'s device."""
        t = torch.from_numpy(np.ascontiguousarray(image)).to(like.device)
        return t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)

    def _flow(self, src: np.ndarray, dst: np.ndarray) -> torch.Tensor:
        """Backward flow ``src → dst`` (h×w×3 uint8 at the feature resolution) as a 1×2×h'×w'
        tensor; h'×w' = h×w / ``flow_downscale`` (``warp`` rescales it to the grid)."""
        k = self.flow_downscale
        h, w = dst.shape[:2]
        self.flow.size = None if k == 1 else (max(16, w // k), max(16, h // k))
        return flow_to_tensor(self.flow(src, dst))

    def _propagate(
        self,
        x: torch.Tensor,
        src: tuple[torch.Tensor, np.ndarray] | None = None,
        cur_small: np.ndarray | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray, dict[str, float]]:
        """Warp (and correct) earlier features onto this frame.

        Args:
            x: this frame's network input, 1×3×H×W.
            src: (features 1×F×h×w, their frame at the feature resolution h×w×3 uint8) to
                carry over; ``None`` = the previous frame's (the chain).
            cur_small: this frame at the feature resolution, if already made.

        Returns (features 1×F×h×w, distortion map 1×1×h×w or ``None``, this frame at the
        feature resolution h×w×3 uint8, stage timings).
        """
        src_feat, src_small = src if src is not None else (self._feat, self._small)
        # only called once a frame has been output (its features and small copy kept)
        assert src_feat is not None and src_small is not None
        t0 = time.perf_counter()
        h, w = src_feat.shape[-2:]
        if cur_small is None:
            cur_small = self._small_of(x, src_feat)
        flow = self._flow(src_small, cur_small).to(x.device)
        t1 = time.perf_counter()
        timings = {'flow': (t1 - t0) * 1e3}
        dmap = None
        adaptive = self.dmnet is not None and float(self.config.distortion_threshold) > 0
        if not (self.corrects or adaptive):
            feat = warp(src_feat, flow)
        else:
            # DMNet and CFNet see the frames at the feature resolution (cheap; their outputs
            # are smooth maps, upsampled to the feature grid). Features and previous image are
            # warped in one grid_sample (it samples every channel independently).
            prev_t = self._small_tensor(src_small, x)
            cur_t = self._small_tensor(cur_small, x)
            c = src_feat.shape[1]
            feat, prev_warped = warp(torch.cat((src_feat, prev_t), dim=1), flow).split(
                (c, 3), dim=1
            )
            assert self.dmnet is not None  # both corrects and adaptive need it
            dmap = self.dmnet(prev_warped, cur_t, out_size=(h, w))
            if self.corrects:  # else DMNet only decides adaptive keyframes
                assert self.cfnet is not None
                feat = cast(CFNet, self.cfnet).correct(cur_t, feat, dmap)  # FCM
        timings['warp_correct'] = (time.perf_counter() - t1) * 1e3
        return feat, dmap, cur_small, timings
