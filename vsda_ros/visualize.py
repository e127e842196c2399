"""Colour masks, overlays and strips (numpy + OpenCV; RGB in, RGB out)."""
from __future__ import annotations

import cv2
import numpy as np


def palette_array(palette: list[tuple[int, int, int]]) -> np.ndarray:
    """256×3 uint8 lookup table; ids beyond the palette are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut


def colorize(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """H×W uint8 class ids → H×W×3 uint8 RGB."""
    return lut[labels]


def overlay(image: np.ndarray, color: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend an RGB image with its colour mask: (1−alpha)·image + alpha·color."""
    return cv2.addWeighted(image, 1.0 - alpha, color, alpha, 0.0)


def strip(images: list[np.ndarray], height: int = 180) -> np.ndarray:
    """Resize RGB images to one height and put them side by side."""
    tiles = [cv2.resize(im, (max(1, round(im.shape[1] * height / im.shape[0])), height),
                        interpolation=cv2.INTER_AREA) for im in images]
    return np.concatenate(tiles, axis=1)
