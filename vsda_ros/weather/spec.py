"""What weather to synthesise: :class:`WeatherSpec` (a kind and an intensity) and its text form.

The text form is what users type (``vsda eval --weather fog:0.6``): ``KIND[:INTENSITY]`` with
KIND one of :data:`WEATHER_KINDS` and INTENSITY in [0, 1] (default
:data:`DEFAULT_INTENSITY`), or ``clean`` / ``none`` for no degradation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WEATHER_KINDS: tuple[str, ...] = ('fog', 'rain', 'snow', 'night', 'glare', 'noise')
"""The synthesised weather kinds, in the order previews and reports list them."""

DEFAULT_INTENSITY = 0.6
"""Intensity used when the text names a kind without one (``'fog'`` means ``'fog:0.6'``)."""

CLEAN_WORDS: tuple[str, ...] = ('clean', 'none')
"""Texts that mean "no degradation"; :func:`parse_weather` returns ``None`` for them."""


@dataclass(frozen=True)
class WeatherSpec:
    """One adverse-weather condition: ``kind`` (one of :data:`WEATHER_KINDS`) at ``intensity``.

    ``intensity`` is a float in [0, 1]: 0 leaves frames unchanged, 1 is the strongest
    degradation the effect produces. ``str(spec)`` gives the text form, e.g. ``'fog:0.6'``.

    Raises:
        ValueError: unknown kind (the message lists the kinds), or an intensity that is not a
            finite number in [0, 1].
    """

    kind: str
    intensity: float

    def __post_init__(self) -> None:
        if self.kind not in WEATHER_KINDS:
            raise ValueError(
                f'unknown weather kind {self.kind!r}; expected one of {", ".join(WEATHER_KINDS)}'
            )
        if isinstance(self.intensity, bool):
            raise ValueError(
                f'weather intensity must be a number in [0, 1], got {self.intensity!r}'
            )
        try:
            value = float(self.intensity)
        except (TypeError, ValueError):
            raise ValueError(
                f'weather intensity must be a number in [0, 1], got {self.intensity!r}'
            ) from None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f'weather intensity {value:g} is outside [0, 1]')
        object.__setattr__(self, 'intensity', value)

    def __str__(self) -> str:
        return f'{self.kind}:{self.intensity:g}'


def parse_weather(text: str) -> WeatherSpec | None:
    """Parse ``'fog:0.6'``, ``'fog'`` (intensity :data:`DEFAULT_INTENSITY`) or ``'clean'``.

    Case and surrounding spaces are ignored. Returns ``None`` for ``'clean'`` / ``'none'``.

    Raises:
        ValueError: with a message naming the bad part, for an empty text, an unknown kind
            (``'hail:0.3'``), an intensity that is not a number (``'fog:abc'``) or outside
            [0, 1] (``'fog:1.5'``), or an intensity given to ``clean``.
    """
    if not isinstance(text, str):
        raise ValueError(f'weather must be a string like "fog:0.6", got {text!r}')
    raw = text.strip().lower()
    if not raw:
        raise ValueError('empty weather; expected KIND[:INTENSITY], e.g. "fog:0.6", or "clean"')
    kind, sep, value = raw.partition(':')
    kind, value = kind.strip(), value.strip()
    if kind in CLEAN_WORDS:
        if sep:
            raise ValueError(f'{text!r}: "{kind}" takes no intensity')
        return None
    if kind not in WEATHER_KINDS:
        raise ValueError(
            f'unknown weather kind {kind!r} in {text!r}; expected one of '
            f'{", ".join(WEATHER_KINDS)} (or clean/none), optionally with '
            ':INTENSITY in [0, 1]'
        )
    if not sep:
        return WeatherSpec(kind, DEFAULT_INTENSITY)
    try:
        intensity = float(value)
    except ValueError:
        raise ValueError(
            f'weather intensity {value!r} in {text!r} is not a number; '
            f'expected a value in [0, 1], e.g. "{kind}:0.6"'
        ) from None
    if not (math.isfinite(intensity) and 0.0 <= intensity <= 1.0):
        raise ValueError(f'weather intensity {value} in {text!r} is outside [0, 1]')
    return WeatherSpec(kind, intensity)


def parse_weather_list(text: str) -> list[WeatherSpec | None]:
    """Parse a comma-separated list, e.g. ``'clean,fog:0.6,rain'`` → ``[None, fog:0.6, rain:0.6]``.

    Raises:
        ValueError: as :func:`parse_weather`, for any item (empty items included).
    """
    return [parse_weather(item) for item in text.split(',')]
