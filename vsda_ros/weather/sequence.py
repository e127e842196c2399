"""Temporal weather: parameters that evolve smoothly from frame to frame of a video.

Real weather does not change i.i.d. between frames: fog patches drift, rain and snow fall,
a low sun or a head lamp moves along a path, auto exposure follows the light slowly. The
"temporal weather degradation" of the fusion-block paper (NeurIPS 2024, "End-to-End Video
Semantic Segmentation in Adverse Weather using Fusion Blocks and Temporal-Spatial
Teacher-Student Learning") degrades consecutive frames with such correlated parameters.

:class:`IntensityWalk` is the intensity process (bounded, mean-reverting random walk around the
nominal value), :func:`evolve_state` moves a kind's spatial state by one frame, and
:class:`WeatherSequence` applies a :class:`~vsda_ros.weather.spec.WeatherSpec` to a video, frame
by frame, with these processes (``temporal=True``) or with independent per-frame parameters
(``temporal=False``, the i.i.d. baseline).
"""

from __future__ import annotations

import math

import numpy as np

from vsda_ros.weather import fields
from vsda_ros.weather.effects import check_image, render
from vsda_ros.weather.params import (
    RAIN_LAYERS,
    RAIN_X_RANGE,
    RAIN_Y_RANGE,
    SNOW_X_RANGE,
    SNOW_Y_RANGE,
    Params,
    init_state,
    make_params,
)
from vsda_ros.weather.spec import WeatherSpec

RAIN_FALL = 0.14
"""Per-frame fall of a near-layer rain streak (fraction of H); far layers fall slower."""
SNOW_FALL = (0.004, 0.008, 0.016)
"""Per-frame fall of the small, medium and large snow flakes (fraction of H)."""


class IntensityWalk:
    """Ornstein–Uhlenbeck walk of the effective intensity around the nominal value μ.

    x ← clip(x + θ·(μ − x) + σ·ε, lo, hi), ε ~ N(0, 1), with σ = ``rel_sigma``·μ and bounds
    μ·(1 ± ``rel_range``) (clipped to [0, 1]), so μ = 0 stays exactly 0. :meth:`sample` draws
    from (approximately) the stationary distribution, which is what the i.i.d. mode uses.
    """

    def __init__(
        self, nominal: float, theta: float = 0.02, rel_sigma: float = 0.025, rel_range: float = 0.25
    ) -> None:
        self.nominal = float(nominal)
        self.theta = float(theta)
        self.sigma = rel_sigma * self.nominal
        self.lo = max(0.0, self.nominal * (1.0 - rel_range))
        self.hi = min(1.0, self.nominal * (1.0 + rel_range))
        self.stationary_std = self.sigma / math.sqrt(2 * theta - theta * theta)

    def sample(self, rng: np.random.Generator) -> float:
        """A draw from the stationary distribution (clipped normal)."""
        return float(np.clip(rng.normal(self.nominal, self.stationary_std), self.lo, self.hi))

    def step(self, x: float, rng: np.random.Generator) -> float:
        """The next frame's intensity after ``x``."""
        x = x + self.theta * (self.nominal - x) + self.sigma * rng.normal()
        return float(np.clip(x, self.lo, self.hi))


def _wrap(values: np.ndarray, lo_hi: tuple[float, float]) -> np.ndarray:
    lo, hi = lo_hi
    return (np.mod(values - lo, hi - lo) + lo).astype(np.float32)


def _reflect(
    pos: np.ndarray, vel: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keep ``pos`` inside [lo, hi] by mirroring at the walls (and flipping the velocity)."""
    pos, vel = pos.copy(), vel.copy()
    below, above = pos < lo, pos > hi
    pos = np.where(below, 2 * lo - pos, np.where(above, 2 * hi - pos, pos))
    vel = np.where(below | above, -vel, vel)
    return np.clip(pos, lo, hi).astype(np.float32), vel.astype(np.float32)


def evolve_state(kind: str, s: Params, rng: np.random.Generator) -> Params:
    """The spatial state of the next frame: a small, physically consistent step from ``s``.

    fog: the density patches drift with a slowly turning wind; rain: streaks fall (near layers
    faster) along a slowly varying slant; snow: flakes fall by size with a sway and a gusting
    drift; night: auto exposure wanders by a few percent, lamps drift slowly; glare: the source
    moves with a smoothly varying velocity, mirrored at the edges of its region; noise: no state.
    Returns a new dict; ``s`` is not modified.

    Raises:
        ValueError: unknown kind.
    """
    s = dict(s)
    if kind == 'fog':
        s['wind'] = (0.97 * s['wind'] + rng.normal(0, 0.003, 2)).astype(np.float32)
        s['patch_offset'] = (s['patch_offset'] + s['wind']).astype(np.float32)
    elif kind == 'rain':
        s['angle'] = float(s['angle'] + 0.08 * (s['angle_mean'] - s['angle']) + rng.normal(0, 0.01))
        fall = RAIN_FALL * np.asarray(RAIN_LAYERS, np.float32)[s['layer']]
        fall = fall * rng.uniform(0.9, 1.1)
        pos = s['positions'].copy()
        pos[:, 1] = _wrap(pos[:, 1] + fall, RAIN_Y_RANGE)
        pos[:, 0] = _wrap(pos[:, 0] + fall * math.tan(s['angle']), RAIN_X_RANGE)
        s['positions'] = pos
    elif kind == 'snow':
        s['wind'] = float(0.98 * s['wind'] + rng.normal(0, 0.0004))
        cls = s['size_class'].astype(np.float32)
        fall = np.asarray(SNOW_FALL, np.float32)[s['size_class']]
        s['phase'] = (s['phase'] + 0.25).astype(np.float32)
        pos = s['positions'].copy()
        pos[:, 1] = _wrap(pos[:, 1] + fall, SNOW_Y_RANGE)
        sway = 0.0015 * (cls + 1) * np.cos(s['phase'])
        pos[:, 0] = _wrap(pos[:, 0] + sway + s['wind'] * (cls + 1) / 2, SNOW_X_RANGE)
        s['positions'] = pos
    elif kind == 'night':
        g = s['exposure_gain']
        s['exposure_gain'] = float(np.clip(g + 0.05 * (1.0 - g) + rng.normal(0, 0.01), 0.8, 1.2))
        vel = (
            0.95 * s['light_velocity'] + rng.normal(0, 0.0004, s['light_velocity'].shape)
        ).astype(np.float32)
        lo = np.array([0.02, 0.03], np.float32)
        hi = np.array([0.98, s['horizon'] + 0.15], np.float32)
        s['light_positions'], s['light_velocity'] = _reflect(
            s['light_positions'] + vel, vel, lo, hi
        )
    elif kind == 'glare':
        vel = (0.97 * s['velocity'] + rng.normal(0, 0.0012, 2)).astype(np.float32)
        s['center'], s['velocity'] = _reflect(
            s['center'] + vel,
            vel,
            np.array([0.1, 0.05], np.float32),
            np.array([0.9, 0.5], np.float32),
        )
    elif kind != 'noise':
        raise ValueError(f'unknown weather kind {kind!r}')
    return s


def _copy_params(p: Params) -> Params:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in p.items()}


class WeatherSequence:
    """Applies one weather condition to consecutive frames of a video.

    Call it with each frame in time order (H×W×3 uint8 RGB); it returns the degraded frame (a new
    array; the input is never modified). ``temporal=True`` (default) evolves the parameters
    smoothly (:class:`IntensityWalk`, :func:`evolve_state`); ``temporal=False`` draws frame k's
    parameters independently from a generator seeded with (``seed``, k). For one seed the output
    sequence is identical run to run; :meth:`reset` restarts it. Per-frame sensor noise is drawn
    fresh every frame in both modes (only its parameters are correlated).

    ``depth`` (optional, H×W, metres or relative; see
    :func:`~vsda_ros.weather.fields.metric_depth`) replaces the ground-plane depth prior; it is
    resized to each frame's size. A frame of a new size re-initialises the spatial state (new
    streaks, flakes, lamps, fog patches) and the depth cache; the intensity walk continues.

    Raises:
        ValueError: ``spec`` is not a WeatherSpec, ``depth`` is not 2-D, or (per call) a frame
            that is not H×W×3 uint8.
    """

    def __init__(
        self,
        spec: WeatherSpec,
        seed: int = 0,
        temporal: bool = True,
        depth: np.ndarray | None = None,
    ) -> None:
        if not isinstance(spec, WeatherSpec):
            raise ValueError(f'spec must be a WeatherSpec, got {spec!r}')
        if depth is not None and np.asarray(depth).ndim != 2:
            raise ValueError(f'depth must be an H×W array, got shape {np.asarray(depth).shape}')
        self.spec = spec
        self.seed = int(seed)
        self.temporal = bool(temporal)
        self._depth_src = None if depth is None else np.asarray(depth)
        self._walk = IntensityWalk(spec.intensity)
        self.reset()

    # -- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Restart the sequence: the next call is frame 0 again, with the same parameters."""
        param_ss, render_ss = np.random.SeedSequence(self.seed).spawn(2)
        self._param_rng = np.random.default_rng(param_ss)
        self._render_rng = np.random.default_rng(render_ss)
        self._index = 0
        self._shape: tuple[int, int] | None = None
        self._depth: np.ndarray | None = None
        if self.temporal:
            self._intensity = self._walk.sample(self._param_rng)
            self._state = init_state(self.spec.kind, self._param_rng)
        else:
            self._intensity, self._state = self._iid_draw(0)
        self._params = make_params(self.spec.kind, self._intensity, self._state)

    @property
    def params(self) -> Params:
        """The current frame's parameters (a copy): those of the frame last returned, or before
        the first call those frame 0 will use. Keys: ``kind``, ``intensity`` and the effect's
        quantities and state (see :mod:`vsda_ros.weather.params`)."""
        return _copy_params(self._params)

    @property
    def frame_index(self) -> int:
        """How many frames have been degraded since construction or :meth:`reset`."""
        return self._index

    def _frame_rngs(self, k: int) -> tuple[np.random.Generator, np.random.Generator]:
        param_ss, render_ss = np.random.SeedSequence([self.seed, k]).spawn(2)
        return np.random.default_rng(param_ss), np.random.default_rng(render_ss)

    def _iid_draw(self, k: int) -> tuple[float, Params]:
        rng = self._frame_rngs(k)[0]
        return self._walk.sample(rng), init_state(self.spec.kind, rng)

    def _advance(self) -> None:
        if self.temporal:
            self._intensity = self._walk.step(self._intensity, self._param_rng)
            self._state = evolve_state(self.spec.kind, self._state, self._param_rng)
        else:
            self._intensity, self._state = self._iid_draw(self._index)

    def _on_new_size(self, h: int, w: int) -> None:
        if self._shape is not None and self.temporal:
            self._state = init_state(self.spec.kind, self._param_rng)
        self._shape = (h, w)
        self._depth = (
            None if self._depth_src is None else fields.metric_depth(self._depth_src, h, w)
        )

    # -- use -----------------------------------------------------------------------------------

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Degrade the next frame: H×W×3 uint8 RGB in, a new H×W×3 uint8 RGB frame out."""
        check_image(image)
        h, w = image.shape[:2]
        if self._index > 0:
            self._advance()
        if (h, w) != self._shape:
            self._on_new_size(h, w)
        self._params = make_params(self.spec.kind, self._intensity, self._state)
        rng = self._render_rng if self.temporal else self._frame_rngs(self._index)[1]
        out = render(image, self._params, rng, self._depth)
        self._index += 1
        return out
