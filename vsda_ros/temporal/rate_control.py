"""Keyframe-interval rate control: pick the interval that keeps up with the camera.

A pure object (no torch, no threads, no clock): it is fed the observed cost of each frame
(:meth:`RateController.observe`) and says which ``keyframe_interval`` to use and why
(:meth:`RateController.decide`). The keyframe strategies apply it after every frame when one is
attached (:meth:`vsda_ros.temporal.keyframe.Keyframe.attach_rate_controller`); the node puts
:attr:`RateDecision.reason` into ``/diagnostics``.

The cost model, with ``K`` the key cost, ``P`` the non-key (propagated) cost and ``O`` a
per-frame overhead outside the strategy (publishing), all EWMA-smoothed milliseconds, and the
budget ``B = headroom × 1000 / target_rate`` ms per frame:

- keyframes in the foreground (``keyframe``): at interval N a frame costs on average
  ``c(N) = (K + (N − 1)·P) / N + O``; the interval is the smallest N with ``c(N) ≤ B``.
- keyframes in the background (``AsyncKeyframe``): every frame costs ``P + O`` in the
  foreground and a key must finish before the next is due: ``K ≤ N·B`` (``K`` = the key's wall
  time in the background thread, contention included).

Hysteresis: the interval rises as soon as the current one no longer fits, but falls only to an
interval that fits with a margin (``c(N) ≤ B·(1 − hysteresis)``) and not within
``dwell_frames`` frames of the last change, so noise around a boundary does not make it
oscillate. Out-of-bounds answers are clamped to ``[min_interval, max_interval]``; when even the
largest interval cannot keep up, the reason says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

COST_KINDS = ('key', 'nonkey', 'overhead')


@dataclass
class RateControlConfig:
    """Settings of :class:`RateController`.

    Attributes:
        target_rate: the camera rate to keep up with, Hz; ``0`` = off (the interval is left
            as configured).
        min_interval, max_interval: bounds of the chosen interval (1 ≤ min ≤ max).
        headroom: fraction of the frame period the strategy may use (0 < h ≤ 1).
        hysteresis: relative margin a lower interval must fit with before the interval falls.
        alpha: EWMA weight of a new cost sample (0 < alpha ≤ 1).
        dwell_frames: frames after a change during which the interval does not fall.
    """

    target_rate: float = 0.0
    min_interval: int = 1
    max_interval: int = 30
    headroom: float = 0.9
    hysteresis: float = 0.15
    alpha: float = 0.2
    dwell_frames: int = 15

    def validate(self) -> None:
        """Raise ``ValueError`` for out-of-range values."""
        if self.target_rate < 0 or not math.isfinite(self.target_rate):
            raise ValueError(f'target_rate must be ≥ 0 Hz, got {self.target_rate}')
        if not 1 <= int(self.min_interval) <= int(self.max_interval):
            raise ValueError(
                'need 1 ≤ min_interval ≤ max_interval, got '
                f'{self.min_interval}, {self.max_interval}'
            )
        if not 0 < self.headroom <= 1:
            raise ValueError(f'headroom must be in (0, 1], got {self.headroom}')
        if not 0 <= self.hysteresis < 1:
            raise ValueError(f'hysteresis must be in [0, 1), got {self.hysteresis}')
        if not 0 < self.alpha <= 1:
            raise ValueError(f'alpha must be in (0, 1], got {self.alpha}')
        if self.dwell_frames < 0:
            raise ValueError(f'dwell_frames must be ≥ 0, got {self.dwell_frames}')


@dataclass(frozen=True)
class RateDecision:
    """What :meth:`RateController.decide` chose.

    Attributes:
        interval: the keyframe interval to use from the next frame on.
        reason: one line for ``/diagnostics`` (costs, budget, why this interval).
        changed: whether ``interval`` differs from the previous decision.
        key_ms, nonkey_ms, overhead_ms: the smoothed costs used (``None``: not observed yet).
        frame_ms: expected mean cost per frame at ``interval`` (``None`` when unknown).
        keeps_up: whether ``interval`` fits the budget (``None`` when off or unknown).
    """

    interval: int
    reason: str
    changed: bool = False
    key_ms: float | None = None
    nonkey_ms: float | None = None
    overhead_ms: float | None = None
    frame_ms: float | None = None
    keeps_up: bool | None = None


class RateController:
    """Chooses the keyframe interval from observed costs; see the module docstring.

    Args:
        config: the settings (validated: ``ValueError``).
        interval: the interval in use now (clamped to the bounds once control is on).
    """

    def __init__(self, config: RateControlConfig | None = None, interval: int = 5) -> None:
        self.config = config or RateControlConfig()
        self.config.validate()
        self.interval = int(interval)
        self.costs: dict[str, float | None] = {k: None for k in COST_KINDS}
        self._since_change = 0
        self.last: RateDecision | None = None

    def reset_costs(self) -> None:
        """Forget the smoothed costs (e.g. after a backend or resolution change)."""
        self.costs = {k: None for k in COST_KINDS}

    def observe(self, kind: str, ms: float) -> None:
        """Add one cost sample: ``kind`` is ``key``, ``nonkey`` or ``overhead`` (ms ≥ 0).

        Raises ``ValueError`` for another kind or a negative / non-finite cost.
        """
        if kind not in COST_KINDS:
            raise ValueError(f'unknown cost kind {kind!r}; known: {", ".join(COST_KINDS)}')
        if not (ms >= 0 and math.isfinite(ms)):
            raise ValueError(f'cost must be a finite number of ms ≥ 0, got {ms}')
        old = self.costs[kind]
        a = self.config.alpha
        self.costs[kind] = float(ms) if old is None else (1 - a) * old + a * float(ms)

    def frame_cost(self, interval: int, background_keys: bool = False) -> float | None:
        """Expected foreground ms per frame at ``interval`` (``None`` before both costs are
        known); with ``background_keys`` the non-key cost plus overhead."""
        k, p = self.costs['key'], self.costs['nonkey']
        o = self.costs['overhead'] or 0.0
        if k is None or p is None:
            return None
        if background_keys:
            return p + o
        return (k + (interval - 1) * p) / interval + o

    def _fits(self, interval: int, budget: float, background_keys: bool) -> bool:
        cost = self.frame_cost(interval, background_keys)
        if cost is None or cost > budget:
            return False
        key = self.costs['key']
        assert key is not None  # a frame cost needs the key cost
        return not background_keys or key <= interval * budget

    def _smallest_fitting(self, budget: float, background_keys: bool) -> int | None:
        cfg = self.config
        for n in range(int(cfg.min_interval), int(cfg.max_interval) + 1):
            if self._fits(n, budget, background_keys):
                return n
        return None

    def decide(self, background_keys: bool = False) -> RateDecision:
        """The interval for the next frames, and why (also kept in :attr:`last`).

        ``background_keys``: keyframes run in a background thread (``AsyncKeyframe``), so only
        propagated frames cost foreground time and a key must finish within the interval.
        """
        cfg = self.config
        self._since_change += 1
        if cfg.target_rate <= 0:
            return self._result(self.interval, 'rate control off (target_rate 0)', None)
        lo, hi = int(cfg.min_interval), int(cfg.max_interval)
        current = min(max(self.interval, lo), hi)
        if self.frame_cost(current, background_keys) is None:
            return self._result(current, 'waiting for key and non-key cost samples', None)
        budget = cfg.headroom * 1000.0 / cfg.target_rate
        need = self._smallest_fitting(budget, background_keys)
        if need is None:
            chosen, why = hi, 'cannot keep up even at max_keyframe_interval'
        elif not self._fits(current, budget, background_keys):
            chosen, why = need, f'raised: {current} no longer fits'
        else:
            lower = self._smallest_fitting(budget * (1 - cfg.hysteresis), background_keys)
            if lower is not None and lower < current and self._since_change > cfg.dwell_frames:
                chosen, why = lower, f'lowered: {lower} fits with {cfg.hysteresis:.0%} margin'
            else:
                chosen, why = current, 'kept: fits'
        return self._result(chosen, why, budget, background_keys)

    def _result(
        self, interval: int, why: str, budget: float | None, background_keys: bool = False
    ) -> RateDecision:
        changed = interval != self.interval
        if changed:
            self._since_change = 0
        self.interval = interval
        k, p, o = self.costs['key'], self.costs['nonkey'], self.costs['overhead']
        cost = self.frame_cost(interval, background_keys)
        reason = f'interval {interval}: {why}'
        keeps_up = None
        if budget is not None and cost is not None:
            keeps_up = self._fits(interval, budget, background_keys)
            mode = 'background keys' if background_keys else 'keys in line'
            reason += (
                f' (key {k:.1f} ms, non-key {p:.1f} ms, overhead {o or 0.0:.1f} ms, '
                f'{mode}: {cost:.1f} ms/frame vs budget {budget:.1f} ms at '
                f'{self.config.target_rate:g} Hz × {self.config.headroom:g})'
            )
        self.last = RateDecision(interval, reason, changed, k, p, o, cost, keeps_up)
        return self.last
