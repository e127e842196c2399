"""The temporal-strategy contract shared by the node and the offline tools.

A strategy turns a camera's frames, one at a time and in order, into segmentations. It owns the
camera's temporal buffer (previous scores, keyframe features) and resets it itself when the
stream breaks (resolution or encoding change, stamp backwards, stamp gap above ``max_gap_s``),
so callers only ever call :meth:`Strategy.step`. One strategy object per camera; several may
share one
:class:`~vsda_ros.inference.Segmenter` (the network weights). The strategies are built by
:func:`vsda_ros.temporal.factory.build_strategy`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from vsda_ros.frames import Segmentation
from vsda_ros.inference import Segmenter
from vsda_ros.temporal.stream import StreamGuard

STRATEGY_NAMES = ('per_frame', 'fusion', 'keyframe')


@dataclass
class StrategyConfig:
    """Options of the temporal strategies (ignored where they do not apply).

    Attributes:
        keyframe_interval: ``keyframe``: run the full network every N-th frame (1 = every
            frame). Changeable between steps.
        distortion_threshold: ``keyframe``: also start a new keyframe when the mean predicted
            distortion of a propagated frame exceeds this (0 = fixed interval only; needs DMNet).
        correction: ``keyframe``: correct warped features with DMNet + CFNet + FCM when they
            are loaded (``False`` = plain flow warping, for ablations).
        flow_preset: OpenCV DIS preset for ``keyframe`` (ultrafast, balanced, fast, medium;
            see :data:`vsda_ros.temporal.flow.PRESETS`).
        max_gap_s: a forward stamp jump above this resets the buffer.
        flow_downscale: ``keyframe``: optical flow on the frame pair at the feature
            resolution divided by this (1 = at the feature resolution; 2 saves ~5 ms a frame
            for ~1 mIoU on the CamVid clip, docs/design/temporal.md *Real time*).
        async_keyframes: ``keyframe``: compute keyframes in the background
            (:class:`~vsda_ros.temporal.async_keyframe.AsyncKeyframe`) so output keeps flowing
            while the key network runs.
        key_delay_frames: with ``async_keyframes``: ``None`` = a real background thread (the
            node); ``0`` = in line (equals ``keyframe``); ``d ≥ 1`` = the deterministic offline
            simulation of a key that lands ``d`` frames late (evaluation).
    """

    keyframe_interval: int = 5
    distortion_threshold: float = 0.0
    correction: bool = True
    flow_preset: str = 'balanced'
    max_gap_s: float = 1.0
    flow_downscale: int = 1
    async_keyframes: bool = False
    key_delay_frames: int | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` for out-of-range values."""
        if int(self.keyframe_interval) < 1:
            raise ValueError(f'keyframe_interval must be ≥ 1, got {self.keyframe_interval}')
        if not 0.0 <= float(self.distortion_threshold) <= 1.0:
            raise ValueError(
                f'distortion_threshold must be in [0, 1], got {self.distortion_threshold}'
            )
        if int(self.flow_downscale) < 1:
            raise ValueError(f'flow_downscale must be ≥ 1, got {self.flow_downscale}')
        if self.max_gap_s <= 0:
            raise ValueError(f'max_gap_s must be > 0, got {self.max_gap_s}')


class Strategy(ABC):
    """One camera's segmentation state machine.

    Subclasses implement :meth:`_step` (H×W×3 uint8 RGB → :class:`Segmentation` at H×W) and
    :meth:`_reset` (drop the temporal buffer).
    """

    name: str = ''

    def __init__(self, segmenter: Segmenter, config: StrategyConfig | None = None) -> None:
        self.segmenter = segmenter
        self.config = config or StrategyConfig()
        self.config.validate()
        self.guard = StreamGuard(max_gap_s=self.config.max_gap_s)

    def reset(self) -> None:
        """Forget the temporal buffer: the next frame starts a new stream (a keyframe)."""
        self._reset()

    def step(
        self, image: np.ndarray, stamp: float | None = None, fmt: str | None = None
    ) -> Segmentation:
        """Segment the next frame of this camera.

        Args:
            image: H×W×3 uint8 RGB.
            stamp: the frame's time in seconds (header stamp); ``None`` = no stamp checks
                (only resolution changes reset the stream).
            fmt: the frame's encoding as received (``Image.encoding``, or a compressed
                frame's ``format``); a change resets the stream. ``None`` = unknown (not
                compared).

        Raises:
            ValueError: not an H×W×3 uint8 image (the buffer is left untouched).
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
            raise ValueError(f'expected an H×W×3 uint8 RGB image, got {image.dtype} {image.shape}')
        self.guard.max_gap_s = self.config.max_gap_s
        size = (int(image.shape[1]), int(image.shape[0]))
        if stamp is None:
            stamp = self.guard.last_stamp if self.guard.last_stamp is not None else 0.0
        reason = self.guard.check(float(stamp), size, fmt)
        if reason is not None:
            self._reset()
        seg = self._step(image)
        seg.stream_reset = reason or ''
        return seg

    @abstractmethod
    def _step(self, image: np.ndarray) -> Segmentation: ...

    def _reset(self) -> None:  # noqa: B027 - stateless strategies need nothing
        pass


class PerFrame(Strategy):
    """The full network on every frame: no temporal state; identical to ``vsda segment``."""

    name = 'per_frame'

    def _step(self, image: np.ndarray) -> Segmentation:
        return self.segmenter.segment(image)
