"""A frame's weather parameters: physical quantities derived from the intensity, plus the random
spatial state (where the rain streaks, flakes, lights and fog patches are).

A parameter dict has ``kind`` and ``intensity`` (the frame's effective intensity), the
deterministic quantities of :func:`derive` and the random state of :func:`init_state`. The state
is drawn with a fixed number of random values whatever the intensity, so for one seed a stronger
intensity shows the same scene layout with more of everything (more streaks — a superset — a
brighter glare at the same place). :mod:`vsda_ros.weather.sequence` evolves the state smoothly
from frame to frame.

Positions are normalised (x by the width, y by the height), lengths and sizes by the height.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vsda_ros.weather.spec import WEATHER_KINDS

Params = dict[str, Any]

RAIN_STREAKS = 2400
"""Streaks in the pool; the fraction ``density`` of them is active."""
RAIN_LAYERS = (0.35, 0.6, 1.0)
"""Relative streak length of the far, middle and near rain layers (also their speed)."""
RAIN_Y_RANGE = (-0.3, 1.0)
"""Wrap-around interval of streak tops: streaks enter above the frame and leave at the bottom."""
RAIN_X_RANGE = (-0.2, 1.2)

SNOW_FLAKES = 1800
SNOW_SIZES = (0.0035, 0.0065, 0.013)
"""Flake radius of the small (far), medium and large (near) classes, as a fraction of H."""
SNOW_CLASS_P = (0.62, 0.28, 0.10)
SNOW_Y_RANGE = (-0.05, 1.05)
SNOW_X_RANGE = (-0.05, 1.05)

NIGHT_LIGHTS = 6
FOG_GRID = 8


def _lerp(a: float, b: float, x: float) -> float:
    return a + (b - a) * x


def derive(kind: str, x: float) -> Params:
    """Deterministic physical quantities of ``kind`` at intensity ``x`` in [0, 1].

    Raises:
        ValueError: unknown kind.
    """
    x = float(x)
    if kind == 'fog':
        visibility = 3000.0 * 0.01**x  # 3 km … 30 m
        return {
            'visibility_m': visibility,
            'beta': 3.912 / visibility,
            'patch_amp': _lerp(0.25, 0.4, x),
        }
    if kind == 'rain':
        visibility = 8000.0 * 0.05**x  # haze of the rain itself
        return {
            'density': _lerp(0.12, 1.0, x),
            'streak_len': _lerp(0.05, 0.13, x),
            'streak_alpha': _lerp(0.18, 0.42, x),
            'blur': _lerp(0.3, 1.3, x),
            'veil': _lerp(0.04, 0.22, x),
            'dim': _lerp(0.97, 0.72, x),
            'beta': 3.912 / visibility,
        }
    if kind == 'snow':
        visibility = 6000.0 * 0.04**x
        return {
            'density': _lerp(0.12, 1.0, x),
            'flake_alpha': _lerp(0.55, 0.95, x),
            'size_scale': _lerp(0.8, 1.3, x),
            'veil': _lerp(0.05, 0.25, x),
            'beta': 3.912 / visibility,
        }
    if kind == 'night':
        lamps = min(1.0, 2.0 * x)  # lamps switch on at dusk, then stay
        return {
            'exposure': math.exp(-3.0 * x),
            'blue': x,
            'desaturate': 0.55 * x,
            'shot': 0.004 * x,
            'read': 0.012 * x**1.5,
            'lights': lamps,
            'headlamp': 0.25 * lamps,
        }
    if kind == 'glare':
        return {
            'strength': _lerp(0.5, 9.0, x**1.5),
            'core': _lerp(0.012, 0.03, x),
            'spread': _lerp(1.0, 1.6, x),
            'veil': 0.12 * x,
            'contrast_loss': 0.55 * x,
            'ghosts': 0.25 * x,
        }
    if kind == 'noise':
        return {'shot': 0.025 * x**1.5, 'read': 0.05 * x**1.5}
    raise ValueError(f'unknown weather kind {kind!r}; expected one of {", ".join(WEATHER_KINDS)}')


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float], n: int) -> np.ndarray:
    return rng.uniform(lo_hi[0], lo_hi[1], n).astype(np.float32)


def init_state(kind: str, rng: np.random.Generator) -> Params:
    """Draw the random spatial state of ``kind`` (independent of the intensity).

    Raises:
        ValueError: unknown kind.
    """
    if kind == 'fog':
        return {
            'horizon': float(rng.uniform(0.42, 0.5)),
            'airlight': (
                rng.uniform(0.78, 0.86) + rng.uniform(-0.005, 0.005, 3) + [-0.01, 0.0, 0.015]
            ).astype(np.float32),  # grey, cool
            'patch_grid': rng.uniform(-1, 1, (FOG_GRID, FOG_GRID)).astype(np.float32),
            'patch_offset': rng.uniform(0, FOG_GRID, 2).astype(np.float32),
            'wind': rng.normal(0, 0.012, 2).astype(np.float32),
        }
    if kind == 'rain':
        n = RAIN_STREAKS
        horizon = float(rng.uniform(0.42, 0.5))
        angle = float(np.clip(rng.normal(0, 0.15), -0.35, 0.35))
        return {
            'horizon': horizon,
            'angle_mean': angle,
            'angle': angle,
            'positions': np.stack(
                [_uniform(rng, RAIN_X_RANGE, n), _uniform(rng, RAIN_Y_RANGE, n)], 1
            ),
            'layer': rng.choice(3, n, p=[0.55, 0.33, 0.12]).astype(np.int8),
            'active': rng.random(n).astype(np.float32),
            'brightness': _uniform(rng, (0.5, 1.0), n),
            'length': _uniform(rng, (0.6, 1.3), n),
        }
    if kind == 'snow':
        n = SNOW_FLAKES
        return {
            'horizon': float(rng.uniform(0.42, 0.5)),
            'positions': np.stack(
                [_uniform(rng, SNOW_X_RANGE, n), _uniform(rng, SNOW_Y_RANGE, n)], 1
            ),
            'size_class': rng.choice(3, n, p=SNOW_CLASS_P).astype(np.int8),
            'active': rng.random(n).astype(np.float32),
            'brightness': _uniform(rng, (0.6, 1.0), n),
            'phase': _uniform(rng, (0, 2 * math.pi), n),
            'wind': float(rng.normal(0, 0.002)),
        }
    if kind == 'night':
        k = NIGHT_LIGHTS
        horizon = float(rng.uniform(0.42, 0.5))
        street = rng.random(k) < 0.6  # else an oncoming car's head lamp
        ys = np.where(
            street,
            rng.uniform(0.08, horizon - 0.05, k),
            rng.uniform(horizon + 0.01, horizon + 0.12, k),
        )
        warm = np.array([1.0, 0.62, 0.28], np.float32)  # sodium street lamp
        white = np.array([0.95, 0.97, 1.0], np.float32)  # LED head lamp
        colors = np.where(street[:, None], warm, white).astype(np.float32)
        return {
            'horizon': horizon,
            'light_positions': np.stack(
                [np.where(street, rng.uniform(0.05, 0.95, k), rng.uniform(0.3, 0.7, k)), ys], 1
            ).astype(np.float32),
            'light_colors': colors,
            'light_sizes': np.where(
                street, rng.uniform(0.006, 0.012, k), rng.uniform(0.004, 0.008, k)
            ).astype(np.float32),
            'light_power': _uniform(rng, (0.6, 1.4), k),
            'light_count': int(rng.integers(2, k + 1)),
            'light_velocity': rng.normal(0, 0.0015, (k, 2)).astype(np.float32),
            'exposure_gain': float(rng.uniform(0.9, 1.1)),
        }
    if kind == 'glare':
        return {
            'center': np.array([rng.uniform(0.15, 0.85), rng.uniform(0.08, 0.42)], np.float32),
            'velocity': rng.normal(0, 0.004, 2).astype(np.float32),
            'color': (np.array([1.0, 0.93, 0.8]) + rng.uniform(-0.04, 0.04, 3)).astype(np.float32),
        }
    if kind == 'noise':
        return {}
    raise ValueError(f'unknown weather kind {kind!r}; expected one of {", ".join(WEATHER_KINDS)}')


def make_params(kind: str, intensity: float, state: Params) -> Params:
    """Assemble a frame's parameter dict from the intensity and a spatial state."""
    return {'kind': kind, 'intensity': float(intensity), **derive(kind, intensity), **state}


def sample_params(kind: str, intensity: float, rng: np.random.Generator) -> Params:
    """Independent parameters of one frame at exactly ``intensity`` (no temporal context).

    Raises:
        ValueError: unknown kind.
    """
    return make_params(kind, intensity, init_state(kind, rng))
