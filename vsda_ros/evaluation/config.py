"""The options of ``vsda eval`` (:class:`EvalConfig`) and what they parse into: the keyframe
interval and PDA distance range (``--interval N`` or ``A..B``), and the weather specs in run
order (clean, ``--weather``, the sweep, ``--transient``). The runner is
:mod:`vsda_ros.evaluation.runner`; the command line :mod:`vsda_ros.apps.eval`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: the intensities of every weather kind in ``--weather-sweep``.
SWEEP_INTENSITIES = (0.3, 0.6, 0.9)
#: the PDA distances of ``--pda`` with a single ``--interval N``.
DEFAULT_PDA_RANGE = (1, 9)


@dataclass
class EvalConfig:
    """Options of ``vsda eval`` (see its ``--help``)."""

    model: str
    source: str
    out: Path
    labels: str | None = None
    label_map: str | None = None
    strategies: list[str] = field(default_factory=lambda: ['per_frame', 'fusion', 'keyframe'])
    interval: str = '5'
    temporal_weights: str = ''
    size: str | None = None
    device: str = 'cpu'
    fps: float = 15.0
    max_frames: int | None = None
    pda: bool = False
    flow_preset: str = 'balanced'
    keyframe_correction: bool = False
    distortion_threshold: float = 0.0
    progress: bool = True
    topic: str | None = None
    weathers: list[str] = field(default_factory=list)
    transients: list[str] = field(default_factory=list)
    weather_sweep: bool = False
    weather_temporal: bool = True
    seed: int = 0
    live: bool = False
    rate: float | None = None
    attach: str | None = None
    allow_truncated: bool = False
    backend: str = 'torch'
    precision: str = 'fp32'
    allow_unknown_labels: bool = False

    def intervals(self) -> tuple[int, tuple[int, int] | None]:
        """(keyframe interval of the strategy run, PDA distance range (A, B) or ``None``).

        ``'N'``: the strategy runs at interval N; the PDA curve (only with ``pda``) covers
        distances 1 … 9 (:data:`DEFAULT_PDA_RANGE`). ``'A..B'``: the PDA curve covers A … B and
        the strategy runs at interval B, so every frame it propagates is at a distance the curve
        covers. Raises ``ValueError`` on bad text.
        """
        text = str(self.interval).strip()
        parts = text.split('..')
        if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f'--interval must be N or A..B (integers), got {text!r}')
        if len(parts) == 2:
            a, b = int(parts[0]), int(parts[1])
            if not 1 <= a <= b:
                raise ValueError(f'--interval range must be 1 ≤ A ≤ B, got {text}')
            return b, (a, b)
        n = int(text)
        if n < 1:
            raise ValueError(f'--interval must be ≥ 1, got {n}')
        return n, (DEFAULT_PDA_RANGE if self.pda else None)

    def weather_specs(self) -> list:
        """``[None (clean), WeatherSpec, …, TransientSpec, …]`` in run order (clean, the
        ``--weather`` ones, the sweep, then the ``--transient`` ones, duplicates dropped);
        raises ``ValueError`` on bad text."""
        from vsda_ros.weather import (
            WEATHER_KINDS,
            WeatherSpec,
            parse_transient_list,
            parse_weather,
        )

        specs: list = [None]
        for text in self.weathers:
            spec = parse_weather(text)
            if spec not in specs:
                specs.append(spec)
        if self.weather_sweep:
            for kind in WEATHER_KINDS:
                for x in SWEEP_INTENSITIES:
                    spec = WeatherSpec(kind, x)
                    if spec not in specs:
                        specs.append(spec)
        for text in self.transients:
            for transient in parse_transient_list(text):
                if transient not in specs:
                    specs.append(transient)
        return specs
