"""Photometric degradations for teacher–student training (until the weather module lands).

:func:`degrade_pair` degrades two consecutive frames with *related* parameters (the second
drifts from the first), as in temporal weather augmentation: brightness/contrast loss (night,
haze), a haze veil, Gaussian blur and sensor noise. Inputs and outputs are H×W×3 uint8 RGB.
"""
from __future__ import annotations

import cv2
import numpy as np


def _apply(img: np.ndarray, p: dict, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float32) / 255.0
    x = x * p['gain'] + p['bias']                                  # exposure / contrast
    x = x * (1 - p['haze']) + p['haze'] * p['airlight']            # haze veil
    if p['blur'] > 0.3:
        x = cv2.GaussianBlur(x, (0, 0), p['blur'])
    x = x + rng.normal(0.0, p['noise'], x.shape).astype(np.float32)  # sensor noise
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def random_params(rng: np.random.Generator, strength: float = 1.0) -> dict:
    """One frame's degradation parameters; ``strength`` in [0, 1] scales all of them."""
    s = float(strength)
    return {'gain': 1.0 - s * rng.uniform(0.0, 0.7), 'bias': s * rng.uniform(-0.05, 0.05),
            'haze': s * rng.uniform(0.0, 0.6), 'airlight': rng.uniform(0.6, 0.95),
            'blur': s * rng.uniform(0.0, 2.0), 'noise': s * rng.uniform(0.0, 0.08)}


def drift(p: dict, rng: np.random.Generator, amount: float = 0.15) -> dict:
    """The next frame's parameters: a small random step from ``p`` (clipped to valid ranges)."""
    q = {k: v * (1 + rng.uniform(-amount, amount)) for k, v in p.items()}
    q['gain'] = float(np.clip(q['gain'], 0.2, 1.2))
    q['haze'] = float(np.clip(q['haze'], 0.0, 0.8))
    return q


def degrade_sequence(frames: list[np.ndarray], rng: np.random.Generator,
                     strength: float = 1.0, drift_amount: float = 0.15) -> list[np.ndarray]:
    """Degrade frames in time order with parameters drifting by up to ``drift_amount``
    (relative) from frame to frame."""
    p = random_params(rng, strength)
    out = []
    for f in frames:
        out.append(_apply(f, p, rng))
        p = drift(p, rng, drift_amount)
    return out
