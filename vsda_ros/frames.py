"""Plain data passed between the readers, the temporal strategies and the outputs.

No torch and no ROS here: numpy arrays and floats only, so every layer can use them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Frame:
    """One camera image.

    Attributes:
        image: H×W×3 ``uint8`` RGB.
        stamp: capture time in seconds (ROS header stamp, video time, or frame index / fps).
        frame_id: the camera's TF frame (copied to every output).
        name: a file-like name for offline outputs (``0016E5_07959.png``); may be empty.
        camera: which camera stream the frame belongs to (one strategy state per camera).
    """

    image: np.ndarray
    stamp: float = 0.0
    frame_id: str = ''
    name: str = ''
    camera: str = ''

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass
class Segmentation:
    """The result for one frame, at the frame's own resolution.

    Attributes:
        labels: H×W ``uint8`` class ids (0..num_classes-1).
        confidence_source: the H×W ``uint8`` confidence (round(max softmax × 255)), or a
            zero-argument function computing it. Read it through :attr:`confidence`: a function
            runs once, on first access, so a node whose ``confidence`` topic has no subscriber
            never pays for the softmax, and one that has pays for it after the mask is out.
        timings_ms: stage name → milliseconds (``preprocess``, ``inference``, ``postprocess``,
            and strategy-specific stages such as ``flow``).
        keyframe: whether the full network ran on this frame (always true for ``per_frame``).
        stream_reset: why the camera's temporal buffer was reset before this frame ('' = not).
        distortion: mean predicted distortion of a propagated frame (``keyframe`` strategy with
            DMNet), else ``None``.
    """

    labels: np.ndarray
    confidence_source: np.ndarray | Callable[[], np.ndarray]
    timings_ms: dict[str, float] = field(default_factory=dict)
    keyframe: bool = True
    stream_reset: str = ''
    distortion: float | None = None

    @property
    def confidence(self) -> np.ndarray:
        """H×W ``uint8`` = round(max softmax × 255), computed on first access."""
        if callable(self.confidence_source):
            self.confidence_source = self.confidence_source()
        return self.confidence_source
