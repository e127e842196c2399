"""RateController: the keyframe interval follows the observed costs, within bounds, calmly."""

from __future__ import annotations

import pytest

from vsda_ros.temporal.rate_control import RateControlConfig, RateController


def _run(
    ctrl: RateController, key: float, nonkey: float, frames: int, background: bool = False
) -> list[int]:
    """Feed ``frames`` frames at the current interval's schedule; the intervals chosen."""
    out = []
    for i in range(frames):
        is_key = i % ctrl.interval == 0
        ctrl.observe('key' if is_key else 'nonkey', key if is_key else nonkey)
        out.append(ctrl.decide(background_keys=background).interval)
    return out


def _ctrl(**kw) -> RateController:
    cfg = dict(target_rate=10.0, max_interval=12, headroom=1.0, dwell_frames=5, alpha=0.5)
    cfg.update(kw)
    return RateController(RateControlConfig(**cfg), interval=5)


def test_off_keeps_the_interval() -> None:
    ctrl = _ctrl(target_rate=0.0)
    assert _run(ctrl, 900, 90, 10) == [5] * 10
    assert 'off' in ctrl.last.reason


def test_interval_follows_cost_up_and_down() -> None:
    ctrl = _ctrl()  # budget 100 ms per frame
    # key 300, non-key 20: c(N) = (300 + 20(N-1))/N; c(5) = 76 fits, c(4) = 90 fits but not
    # with the 15 % margin (≤ 85): the interval stays at 5
    assert _run(ctrl, 300, 20, 40)[-1] == 5
    # costs go up: key 600 → c(N) ≤ 100 needs N ≥ 580/80 = 7.25 → 8
    intervals = _run(ctrl, 600, 20, 40)
    assert intervals[-1] == 8 and ctrl.last.keeps_up
    # costs go down again: back to a small interval (with the 15 % margin: c(N) ≤ 85 → N = 5)
    intervals = _run(ctrl, 300, 20, 60)
    assert intervals[-1] == 5
    assert 'key 300.1 ms' in ctrl.last.reason and 'budget 100.0 ms' in ctrl.last.reason


def test_clamps_to_bounds() -> None:
    ctrl = _ctrl(min_interval=2, max_interval=6)
    assert _run(ctrl, 50, 10, 30)[-1] == 2  # the key alone fits: min_interval
    intervals = _run(ctrl, 5000, 20, 30)
    assert intervals[-1] == 6 and 'cannot keep up' in ctrl.last.reason
    assert ctrl.last.keeps_up is False
    # non-key frames alone above the budget: max as well
    assert _run(ctrl, 300, 150, 30)[-1] == 6


def test_hysteresis_does_not_oscillate_on_noise() -> None:
    ctrl = _ctrl(alpha=0.3)
    ctrl.interval = 4
    # right at the 4 ↔ 5 boundary (c(4) = (340 + 3·20)/4 = 100 = the budget), costs ±8 %:
    # without hysteresis the interval would flip between 4 and 5
    noise = [1.08, 0.92, 1.05, 0.95, 1.0, 1.07, 0.93]
    seen = []
    for i in range(120):
        f = noise[i % len(noise)]
        is_key = i % ctrl.interval == 0
        ctrl.observe('key' if is_key else 'nonkey', (340 if is_key else 20) * f)
        seen.append(ctrl.decide().interval)
    changes = sum(a != b for a, b in zip(seen[20:], seen[21:], strict=False))
    assert changes <= 1, seen


def test_background_keys_need_the_key_within_the_interval() -> None:
    ctrl = _ctrl()
    # background: foreground 20 ms per frame fits; a 450 ms key needs N ≥ 4.5 → 5 periods
    assert _run(ctrl, 450, 20, 40, background=True)[-1] == 5
    assert 'background keys' in ctrl.last.reason


def test_overhead_counts_per_frame() -> None:
    ctrl = _ctrl()
    ctrl.observe('overhead', 30.0)  # publishing: 70 ms left → (300 + 20(N−1))/N ≤ 70 → N = 6
    assert _run(ctrl, 300, 20, 40)[-1] == 6


def test_bad_values() -> None:
    with pytest.raises(ValueError, match='target_rate'):
        RateController(RateControlConfig(target_rate=-1))
    with pytest.raises(ValueError, match='min_interval'):
        RateController(RateControlConfig(min_interval=5, max_interval=2))
    ctrl = RateController()
    with pytest.raises(ValueError, match='cost kind'):
        ctrl.observe('flow', 1.0)
    with pytest.raises(ValueError, match='finite'):
        ctrl.observe('key', float('nan'))
