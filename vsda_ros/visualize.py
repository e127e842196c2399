"""Colour masks, overlays and strips (numpy + OpenCV; RGB in, RGB out).

:func:`colorize` and :func:`overlay` take an optional ``out`` array so a caller that runs every
frame (the node's publish path, :mod:`vsda_ros.ros.outputs`) can write into buffers it keeps;
the results are bit-identical with and without ``out``.
"""

from __future__ import annotations

import cv2
import numpy as np


def palette_array(palette: list[tuple[int, int, int]]) -> np.ndarray:
    """256×3 uint8 lookup table; ids beyond the palette are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut


def colorize(labels: np.ndarray, lut: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """H×W uint8 class ids → H×W×3 uint8 RGB (``lut[labels]``), written into ``out`` if given.

    The ids are spread to three channels and looked up with ``cv2.LUT`` on the 256×1×3 table
    (one pass per byte instead of numpy's per-pixel fancy indexing; same values). ``out``
    must be a C-contiguous H×W×3 uint8 array. Anything but a 2-D uint8 ``labels`` falls back
    to ``lut[labels]``.
    """
    if labels.ndim != 2 or labels.dtype != np.uint8 or labels.size == 0:
        result = lut[labels]
        if out is None:
            return result
        out[...] = result
        return out
    table = lut.reshape(256, 1, 3)
    spread = cv2.merge((labels, labels, labels))
    if out is None:
        return cv2.LUT(spread, table)
    cv2.LUT(spread, table, dst=out)
    return out


def overlay(
    image: np.ndarray, color: np.ndarray, alpha: float = 0.5, out: np.ndarray | None = None
) -> np.ndarray:
    """Blend an RGB image with its colour mask: (1−alpha)·image + alpha·color (``out`` if
    given: an array of the image's shape and dtype)."""
    if out is None:
        return cv2.addWeighted(image, 1.0 - alpha, color, alpha, 0.0)
    cv2.addWeighted(image, 1.0 - alpha, color, alpha, 0.0, dst=out)
    return out


def strip(images: list[np.ndarray], height: int = 180) -> np.ndarray:
    """Resize RGB images to one height and put them side by side."""
    tiles = [
        cv2.resize(
            im,
            (max(1, round(im.shape[1] * height / im.shape[0])), height),
            interpolation=cv2.INTER_AREA,
        )
        for im in images
    ]
    return np.concatenate(tiles, axis=1)
