"""Transient degradations: a random subset of a video's frames hit, their neighbours clean.

Adverse conditions are not only slow weather: single frames get hit by a wiper blade, a rain
burst, a glare flicker, an auto-exposure jump or a damaged compressed frame. A
:class:`TransientSpec` names the kind, the intensity of a hit and the probability that a frame
is hit; :class:`TransientSequence` applies it to a video, frame by frame::

    >>> seq = TransientSequence(parse_transient('rain:0.6:0.3'), seed=0)
    >>> out = [seq(f) for f in frames]        # ~30 % of the frames rained on, the rest untouched
    >>> seq.hits                              # [False, True, False, …]

Kinds (:data:`TRANSIENT_KINDS`): the six weather kinds of
:data:`~vsda_ros.weather.spec.WEATHER_KINDS`, applied to one frame with freshly drawn
parameters at exactly the intensity, plus the transient-only ``wiper``, ``exposure`` and
``jpeg`` (:data:`~vsda_ros.weather.effects.TRANSIENT_EFFECTS`).

Text form (``vsda eval --transient``): ``KIND:INTENSITY:PROB``, e.g. ``rain:0.6:0.3``;
``all:INTENSITY:PROB`` stands for the six weather kinds (:func:`parse_transient_list`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from vsda_ros.weather.effects import TRANSIENT_EFFECTS, check_image, render
from vsda_ros.weather.params import sample_params
from vsda_ros.weather.spec import WEATHER_KINDS

TRANSIENT_ONLY_KINDS: tuple[str, ...] = tuple(TRANSIENT_EFFECTS)
"""Kinds that exist only as transient events: ``wiper``, ``exposure``, ``jpeg``."""

TRANSIENT_KINDS: tuple[str, ...] = WEATHER_KINDS + TRANSIENT_ONLY_KINDS
"""Every kind a :class:`TransientSpec` accepts, in the order reports list them."""

ALL_WORD = 'all'
"""The kind that :func:`parse_transient_list` expands to every kind of ``WEATHER_KINDS``."""

_FORMAT = 'expected KIND:INTENSITY:PROB, e.g. "rain:0.6:0.3"'


def _kinds_text() -> str:
    return ', '.join(TRANSIENT_KINDS)


def _check_number(value: object, what: str, low_open: bool) -> float:
    """``value`` as a finite float in [0, 1] (``low_open``: in (0, 1]); ValueError otherwise."""
    interval = '(0, 1]' if low_open else '[0, 1]'
    if isinstance(value, bool):
        raise ValueError(f'transient {what} must be a number in {interval}, got {value!r}')
    try:
        v = float(value)  # type: ignore[arg-type]  # anything: the except reports the rest
    except (TypeError, ValueError):
        raise ValueError(
            f'transient {what} must be a number in {interval}, got {value!r}'
        ) from None
    if not math.isfinite(v) or v > 1.0 or v < 0.0 or (low_open and v == 0.0):
        raise ValueError(f'transient {what} {v:g} is outside {interval}')
    return v


@dataclass(frozen=True)
class TransientSpec:
    """Frames hit at random: ``kind`` (one of :data:`TRANSIENT_KINDS`) at ``intensity`` in
    [0, 1] on each frame with probability ``prob`` in (0, 1].

    ``str(spec)`` is ``'transient:KIND:INTENSITY:PROB'`` (e.g. ``'transient:rain:0.6:0.3'``,
    the ``weather`` of a ``vsda eval`` report row); :attr:`label` is the short human form.

    Raises:
        ValueError: unknown kind (the message lists the kinds), an intensity outside [0, 1] or
            a probability outside (0, 1] (or either not a finite number).
    """

    kind: str
    intensity: float
    prob: float

    def __post_init__(self) -> None:
        if self.kind not in TRANSIENT_KINDS:
            raise ValueError(
                f'unknown transient kind {self.kind!r}; expected one of {_kinds_text()}'
            )
        object.__setattr__(
            self, 'intensity', _check_number(self.intensity, 'intensity', low_open=False)
        )
        object.__setattr__(self, 'prob', _check_number(self.prob, 'probability', low_open=True))

    def __str__(self) -> str:
        return f'transient:{self.kind}:{self.intensity:g}:{self.prob:g}'

    @property
    def label(self) -> str:
        """Short human form for tables and plots, e.g. ``'rain:0.6 transient p0.3'``."""
        return f'{self.kind}:{self.intensity:g} transient p{self.prob:g}'


def _fields(text: str) -> tuple[str, str, str]:
    """Split ``KIND:INTENSITY:PROB`` (an optional leading ``transient:``, the ``str`` form, is
    dropped); ValueError on a wrong number of fields."""
    if not isinstance(text, str):
        raise ValueError(f'transient must be a string like "rain:0.6:0.3", got {text!r}')
    parts = [p.strip() for p in text.strip().lower().split(':')]
    if len(parts) == 4 and parts[0] == 'transient':
        parts = parts[1:]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f'transient {text!r}: {_FORMAT}')
    return parts[0], parts[1], parts[2]


def _numbers(text: str, intensity: str, prob: str) -> tuple[float, float]:
    out = []
    for value, what in ((intensity, 'intensity'), (prob, 'probability')):
        try:
            out.append(float(value))
        except ValueError:
            raise ValueError(
                f'transient {what} {value!r} in {text!r} is not a number; {_FORMAT}'
            ) from None
    return out[0], out[1]


def parse_transient(text: str) -> TransientSpec:
    """Parse ``'rain:0.6:0.3'`` (also the ``str`` form ``'transient:rain:0.6:0.3'``).

    Case and spaces around the fields are ignored.

    Raises:
        ValueError: one line naming the problem: a wrong number of fields, an unknown kind
            (listing the known ones), ``all`` (use :func:`parse_transient_list`), an intensity
            or probability that is not a number, an intensity outside [0, 1], a probability
            outside (0, 1].
    """
    kind, intensity, prob = _fields(text)
    if kind == ALL_WORD:
        raise ValueError(
            f'transient {text!r}: "all" stands for several kinds; use parse_transient_list'
        )
    if kind not in TRANSIENT_KINDS:
        raise ValueError(
            f'unknown transient kind {kind!r} in {text!r}; expected one of '
            f'{_kinds_text()} (or {ALL_WORD} for the six weather kinds)'
        )
    return _spec(text, kind, intensity, prob)


def _spec(text: str, kind: str, intensity: str, prob: str) -> TransientSpec:
    """A TransientSpec from already split fields; errors name ``text``."""
    x, p = _numbers(text, intensity, prob)
    try:
        return TransientSpec(kind, x, p)
    except ValueError as e:
        raise ValueError(f'{e} in {text!r}') from None


def parse_transient_list(text: str) -> list[TransientSpec]:
    """Parse one or more comma-separated specs; ``all:INTENSITY:PROB`` expands to one spec per
    kind of :data:`~vsda_ros.weather.spec.WEATHER_KINDS` (e.g. ``'all:0.6:0.3'`` → fog:0.6:0.3,
    rain:0.6:0.3, …, noise:0.6:0.3).

    Raises:
        ValueError: as :func:`parse_transient`, for any item (empty items included).
    """
    specs: list[TransientSpec] = []
    for item in text.split(','):
        kind, intensity, prob = _fields(item)
        if kind == ALL_WORD:
            first = _spec(item, WEATHER_KINDS[0], intensity, prob)
            specs += [TransientSpec(k, first.intensity, first.prob) for k in WEATHER_KINDS]
        else:
            specs.append(parse_transient(item))
    return specs


def _seed_sequence(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'seed must be an integer ≥ 0, got {seed!r}')
    return np.random.SeedSequence(int(seed))


def apply_transient(
    image: np.ndarray, kind: str, intensity: float, seed: int | np.random.SeedSequence = 0
) -> np.ndarray:
    """Hit one H×W×3 uint8 RGB frame with ``kind`` at exactly ``intensity``; a new frame.

    The parameters (layout, direction, damaged rows, noise) are drawn from ``seed``; for a
    weather kind and an integer seed the result equals
    :func:`~vsda_ros.weather.apply.apply_weather` with the same seed. Intensity 0 returns an
    exact copy. The input is never modified.

    Raises:
        ValueError: ``image`` is not H×W×3 uint8, an unknown kind, an intensity outside
            [0, 1], or a negative seed.
    """
    check_image(image)
    spec = TransientSpec(kind, intensity, 1.0)  # validates kind and intensity
    if spec.intensity == 0.0:
        return image.copy()
    param_ss, render_ss = _seed_sequence(seed).spawn(2)
    if kind in TRANSIENT_EFFECTS:
        return TRANSIENT_EFFECTS[kind](image, spec.intensity, np.random.default_rng(param_ss))
    params = sample_params(kind, spec.intensity, np.random.default_rng(param_ss))
    return render(image, params, np.random.default_rng(render_ss))


def _kind_code(kind: str) -> int:
    """A stable integer for ``kind`` (Python's ``hash`` of a str changes between runs)."""
    return zlib.crc32(kind.encode())


class TransientSequence:
    """Applies a :class:`TransientSpec` to consecutive frames of a video.

    Call it with each frame in time order (H×W×3 uint8 RGB). Frame k is hit with probability
    ``spec.prob``, independently of the other frames; a hit frame is degraded by
    :func:`apply_transient` at ``spec.intensity`` with parameters drawn for that frame alone,
    any other frame comes back unchanged (a bit-identical copy). :attr:`hits` records, per
    frame processed, whether it was hit.

    Reproducible: the hit pattern depends only on ``seed`` and ``spec.kind`` (so one seed hits
    the same frames at any intensity, a lower ``prob`` hits a subset of the frames a higher one
    hits, and different kinds hit different frames); a hit frame's parameters depend on
    ``seed``, the kind and the frame index. :meth:`reset` restarts at frame 0.

    Raises:
        ValueError: ``spec`` is not a TransientSpec, a negative seed, or (per call) a frame
            that is not H×W×3 uint8.
    """

    def __init__(self, spec: TransientSpec, seed: int = 0) -> None:
        if not isinstance(spec, TransientSpec):
            raise ValueError(f'spec must be a TransientSpec (see parse_transient), got {spec!r}')
        _seed_sequence(seed)  # validates the seed
        self.spec = spec
        self.seed = int(seed)
        self.hits: list[bool] = []
        self.reset()

    def reset(self) -> None:
        """Restart: the next call is frame 0 again, with the same hits and parameters."""
        code = _kind_code(self.spec.kind)
        self._hit_rng = np.random.default_rng(np.random.SeedSequence([self.seed, code, 0]))
        self.hits = []

    @property
    def frame_index(self) -> int:
        """How many frames have been processed since construction or :meth:`reset`."""
        return len(self.hits)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The next frame: H×W×3 uint8 RGB in, a new H×W×3 uint8 RGB frame out."""
        check_image(image)
        k = len(self.hits)
        hit = bool(self._hit_rng.random() < self.spec.prob)
        self.hits.append(hit)
        if not hit:
            return image.copy()
        ss = np.random.SeedSequence([self.seed, _kind_code(self.spec.kind), 1, k])
        return apply_transient(image, self.spec.kind, self.spec.intensity, ss)
