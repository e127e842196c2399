"""Plain data passed between the readers, the temporal strategies and the outputs.

No torch and no ROS here: numpy arrays and floats only, so every layer can use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

#: What produced a :class:`Segmentation` (``Segmentation.kind``):
#: ``key`` — the full network ran on this very frame (``per_frame``, ``fusion``, keyframes);
#: ``propagated`` — features carried from an earlier frame by optical flow, no key pending;
#: ``pending`` — propagated while a keyframe is being computed in the background;
#: ``reanchored`` — propagated directly from a keyframe that finished in the background since
#: the previous frame (the first frame after it lands).
FRAME_KINDS = ('key', 'propagated', 'pending', 'reanchored')


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
        kind: one of :data:`FRAME_KINDS`; ``keyframe`` is ``kind == 'key'``. Strategies that
            compute keyframes in the background also put the key network's wall time in
            ``timings_ms['key_background']`` on the frame where that key lands.
    """

    labels: np.ndarray
    confidence_source: np.ndarray | Callable[[], np.ndarray]
    timings_ms: dict[str, float] = field(default_factory=dict)
    keyframe: bool = True
    stream_reset: str = ''
    distortion: float | None = None
    kind: str = ''

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = 'key' if self.keyframe else 'propagated'
        elif self.kind not in FRAME_KINDS:
            raise ValueError(f'unknown frame kind {self.kind!r}; known: {", ".join(FRAME_KINDS)}')

    @property
    def confidence(self) -> np.ndarray:
        """H×W ``uint8`` = round(max softmax × 255), computed on first access."""
        if callable(self.confidence_source):
            self.confidence_source = self.confidence_source()
        return self.confidence_source
