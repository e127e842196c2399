"""Synthetic adverse weather for camera frames, with temporally correlated parameters for video.

Physically motivated degradations of H×W×3 uint8 RGB frames — fog (atmospheric scattering over a
depth prior), rain, snow, night, glare and sensor noise — each with an intensity in [0, 1]:

    >>> spec = parse_weather('fog:0.6')
    >>> foggy = apply_weather(frame, spec, seed=0)             # one frame
    >>> seq = WeatherSequence(spec, seed=0)                     # a video: smooth parameters
    >>> degraded = [seq(f) for f in frames]
    >>> hits = TransientSequence(parse_transient('rain:0.6:0.3'), seed=0)  # ~30 % of frames hit

Transient events (:mod:`.transient`) hit single frames: any weather kind, or a ``wiper`` blade,
an ``exposure`` jump, a ``jpeg``-damaged frame.

Modules: :mod:`.spec` (what to synthesise), :mod:`.params` (a frame's parameters),
:mod:`.effects` (the effects, pure functions), :mod:`.fields` (their spatial building blocks),
:mod:`.sequence` (temporal processes), :mod:`.apply` (single frames), :mod:`.transient`
(randomly hit frames), :mod:`.preview` (PNG previews and the ``vsda weather`` command).
"""

from vsda_ros.weather.apply import apply_weather
from vsda_ros.weather.sequence import WeatherSequence
from vsda_ros.weather.spec import (
    DEFAULT_INTENSITY,
    WEATHER_KINDS,
    WeatherSpec,
    parse_weather,
    parse_weather_list,
)
from vsda_ros.weather.transient import (
    TRANSIENT_KINDS,
    TRANSIENT_ONLY_KINDS,
    TransientSequence,
    TransientSpec,
    apply_transient,
    parse_transient,
    parse_transient_list,
)

__all__ = [
    'DEFAULT_INTENSITY',
    'TRANSIENT_KINDS',
    'TRANSIENT_ONLY_KINDS',
    'TransientSequence',
    'TransientSpec',
    'WEATHER_KINDS',
    'WeatherSequence',
    'WeatherSpec',
    'apply_transient',
    'apply_weather',
    'parse_transient',
    'parse_transient_list',
    'parse_weather',
    'parse_weather_list',
]
