"""Helpers for the tests that talk to a node over DDS (rclpy is imported only inside them, so
importing this module costs nothing and needs no ROS)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def spin_until(
    executor: Any, predicate: Callable[[], object], timeout: float, period: float = 0.05
) -> bool:
    """Spin ``executor`` (``spin_once(timeout_sec=period)``) until ``predicate()`` is true or
    ``timeout`` seconds passed; returns the predicate's last value as a bool (checked once more
    at the deadline, so a condition met during the last spin counts)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        executor.spin_once(timeout_sec=period)
    return bool(predicate())


class InProcessNode:
    """segmentation_node in this process, spinning in a thread, in a context of its own
    (``params``: parameter overrides); :meth:`close` stops the worker and shuts it all down.

    ``backend`` is ``torch`` unless ``params`` names one: these tests compare against torch
    references and use many input sizes, each of which would cost ``auto`` (the node's
    default) a graph export; the default itself is tested in test_node_e2e/test_auto_backend.
    """

    def __init__(self, params: dict) -> None:
        params = {'backend': 'torch', **params}
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter

        from vsda_ros.ros.node import SegmentationNode

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = SegmentationNode(
            context=self.context,
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        import rclpy

        self.node.stop()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
