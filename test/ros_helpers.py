"""Helpers for the tests that talk to a node over DDS (no rclpy import here: it takes the
executor, so importing this module costs nothing and needs no ROS)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def spin_until(executor: Any, predicate: Callable[[], object], timeout: float,
               period: float = 0.05) -> bool:
    """Spin ``executor`` (``spin_once(timeout_sec=period)``) until ``predicate()`` is true or
    ``timeout`` seconds passed; returns the predicate's last value as a bool (checked once more
    at the deadline, so a condition met during the last spin counts)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        executor.spin_once(timeout_sec=period)
    return bool(predicate())
