"""The node's four image outputs, built and published with as little copying as possible.

``mask`` (mono8 class ids), ``color_mask`` (rgb8), ``overlay`` (rgb8, blended) and
``confidence`` (mono8, max softmax × 255), all at the input resolution with the input header
copied (DESIGN §3). :class:`OutputWriter` keeps one camera's colour and overlay buffers
(``bytearray``-backed numpy arrays that OpenCV writes into), so a frame costs one palette pass,
one blend, and one memcpy into each message (see :func:`~vsda_ros.ros.conversions.image_message`)
instead of a fresh array, ``tobytes()`` and the message's copy of it.

Order: ``mask`` goes out first, before anything else is computed; the confidence (a lazy
softmax, :attr:`Segmentation.confidence`) is computed last and only when someone listens.
Measured in ``benchmarks/publish_path.py`` (docs/design/node.md, "Publish path").
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable

import numpy as np

from vsda_ros.ros.conversions import image_message
from vsda_ros.visualize import colorize, overlay

OUTPUTS = ('mask', 'color_mask', 'overlay', 'confidence')


class _Buffer:
    """A reusable H×W×C uint8 array over a ``bytearray`` (reallocated when the shape changes)."""

    def __init__(self) -> None:
        self.raw = bytearray()
        self.array: np.ndarray = np.empty((0, 0, 3), np.uint8)

    def get(self, shape: tuple[int, ...]) -> np.ndarray:
        """The buffer as an array of ``shape`` (contents undefined until written)."""
        if self.array.shape != shape:
            self.raw = bytearray(int(np.prod(shape)))
            self.array = np.frombuffer(self.raw, np.uint8).reshape(shape)
        return self.array


class OutputWriter:
    """Builds and publishes one camera's outputs (not thread-safe: one per camera/worker).

    Args:
        lut: the 256×3 uint8 palette (:func:`vsda_ros.visualize.palette_array`).
    """

    def __init__(self, lut: np.ndarray) -> None:
        self.lut = lut
        self._color = _Buffer()
        self._overlay = _Buffer()

    def color(self, labels: np.ndarray) -> np.ndarray:
        """H×W class ids → H×W×3 rgb colour mask in this writer's buffer."""
        return colorize(labels, self.lut, out=self._color.get((*labels.shape, 3)))

    def blend(self, rgb: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
        """The overlay (1−alpha)·rgb + alpha·color in this writer's buffer."""
        return overlay(rgb, color, alpha, out=self._overlay.get(rgb.shape))

    def messages(
        self, seg: Any, rgb: np.ndarray, header: Any, alpha: float, names: tuple[str, ...] = OUTPUTS
    ) -> dict[str, Any]:
        """The requested outputs as ``sensor_msgs/Image`` without publishing (tests,
        benchmarks); each message owns a copy of its pixels."""
        return dict(self._build(seg, rgb, header, alpha, set(names)))

    def _build(self, seg: Any, rgb: np.ndarray, header: Any, alpha: float, wanted: set[str]):
        """Yield (name, message) in publishing order: mask, color_mask, overlay, confidence.

        A generator, so the caller publishes each message before the next is computed."""
        if 'mask' in wanted:
            yield 'mask', image_message(_bytes(seg.labels), seg.labels.shape, header)
        if 'color_mask' in wanted or 'overlay' in wanted:
            color = self.color(seg.labels)
            if 'color_mask' in wanted:
                yield 'color_mask', image_message(self._color.raw, color.shape, header)
            if 'overlay' in wanted:
                blended = self.blend(rgb, color, alpha)
                yield 'overlay', image_message(self._overlay.raw, blended.shape, header)
        if 'confidence' in wanted:
            conf = seg.confidence
            yield 'confidence', image_message(_bytes(conf), conf.shape, header)

    def publish(
        self,
        pubs: dict[str, Any],
        seg: Any,
        rgb: np.ndarray,
        header: Any,
        alpha: float,
        wanted: Callable[[str], bool],
        rcl: Callable[[], AbstractContextManager],
    ) -> list[str]:
        """Publish the outputs for which ``wanted(name)`` holds; returns their names.

        ``rcl()`` is entered around every rcl call (the subscriber counts in ``wanted`` and
        each ``publish``); the node's raises when it is stopping, which ends this frame.
        Images are computed outside it.
        """
        with rcl():
            names = {n for n in OUTPUTS if wanted(n)}
        sent = []
        for name, msg in self._build(seg, rgb, header, alpha, names):
            with rcl():
                pubs[name].publish(msg)
            sent.append(name)
        return sent


def _bytes(array: np.ndarray) -> bytes:
    """A C-contiguous uint8 array's pixels as ``bytes`` (one copy)."""
    return np.ascontiguousarray(array, dtype=np.uint8).tobytes()
