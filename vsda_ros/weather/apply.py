"""Single-frame weather: :func:`apply_weather`."""

from __future__ import annotations

import numpy as np

from vsda_ros.weather import fields
from vsda_ros.weather.effects import check_image, render
from vsda_ros.weather.params import sample_params
from vsda_ros.weather.spec import WeatherSpec


def apply_weather(
    image: np.ndarray, spec: WeatherSpec | None, seed: int = 0, depth: np.ndarray | None = None
) -> np.ndarray:
    """Degrade one H×W×3 uint8 RGB frame with ``spec``; returns a new H×W×3 uint8 frame.

    Deterministic for a given ``seed`` (which picks the layout: streaks, flakes, lamps, the
    glare position, fog patches, the noise); the effect is applied at exactly
    ``spec.intensity``, and for one seed a higher intensity degrades the same layout more.
    Intensity 0 (or ``spec=None``, i.e. clean) returns an exact copy. ``depth`` (H×W, metres or
    relative, see :func:`~vsda_ros.weather.fields.metric_depth`) replaces the ground-plane
    depth prior of fog and of the rain / snow haze. The input is never modified.
    For videos use :class:`~vsda_ros.weather.sequence.WeatherSequence`.

    Raises:
        ValueError: ``image`` is not H×W×3 uint8, ``spec`` is not a WeatherSpec (or None), or
            ``depth`` is not 2-D.
    """
    check_image(image)
    if spec is None:
        return image.copy()
    if not isinstance(spec, WeatherSpec):
        raise ValueError(f'spec must be a WeatherSpec (see parse_weather), got {spec!r}')
    if spec.intensity == 0.0:
        return image.copy()
    h, w = image.shape[:2]
    param_ss, render_ss = np.random.SeedSequence(int(seed)).spawn(2)
    params = sample_params(spec.kind, spec.intensity, np.random.default_rng(param_ss))
    d = None if depth is None else fields.metric_depth(depth, h, w)
    return render(image, params, np.random.default_rng(render_ss), d)
