"""``segmentation_node``: camera images in, per-pixel class masks out (the entry point).

Topics (relative, so a namespace / remapping applies):
    in:  ``image`` (sensor_msgs/Image) and ``image/compressed`` (sensor_msgs/CompressedImage),
         or every topic in the ``image_topics`` parameter (a name ending in ``/compressed`` is a
         CompressedImage topic); sensor-data QoS, depth 1.
    out: ``mask`` (mono8 class ids), ``color_mask`` (rgb8), ``overlay`` (rgb8), ``confidence``
         (mono8, max softmax × 255); reliable, depth 10; input resolution, input header. With
         ``image_topics`` each camera publishes in its topic's parent namespace:
         ``/cam_front/image_raw`` → ``/cam_front/mask`` etc.
    ``/diagnostics`` (diagnostic_msgs/DiagnosticArray) at 1 Hz, one status per camera.

The node is in parts: :mod:`~vsda_ros.ros.segmenter_runtime` (the wiring: publishers,
subscriptions, worker, timers; load / start / stop / unload) used by
:mod:`~vsda_ros.ros.node` (the plain node) and :mod:`~vsda_ros.ros.lifecycle_node` (the managed
node), :mod:`~vsda_ros.ros.parameters`, :mod:`~vsda_ros.ros.cameras`,
:mod:`~vsda_ros.ros.processing`, :mod:`~vsda_ros.ros.diagnostics`. This module is only the
entry points (:func:`main`, :func:`lifecycle_main`) and imports nothing heavy at module
level: the console script imports it before ``main`` runs, and signal handling must be in
place before rclpy and torch load (seconds).
Its old public names (``PARAMETERS``, ``camera_layout``, ``SegmentationNode``, …) still
resolve, lazily, from those parts.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Any

from vsda_ros.ros import process_guard
from vsda_ros.ros.process_guard import Shutdown, StartupError

#: the parent when this module was imported (as early as the process knows it): a change means
#: the parent died (see process_guard.ParentWatcher)
_START_PPID = os.getppid()

_LAZY = {  # name → module it lives in (imported on first use)
    'PARAMETERS': 'vsda_ros.ros.parameters',
    'Param': 'vsda_ros.ros.parameters',
    'camera_layout': 'vsda_ros.ros.cameras',
    'FIXED_STAGES': 'vsda_ros.ros.cameras',
    'STATUS_NAME': 'vsda_ros.ros.diagnostics',
    'SILENT_WARN_S': 'vsda_ros.ros.diagnostics',
    'SegmentationNode': 'vsda_ros.ros.node',
    'OUTPUTS': 'vsda_ros.ros.node',
    'LifecycleSegmentationNode': 'vsda_ros.ros.lifecycle_node',
}


def __getattr__(name: str) -> Any:
    """The node's public names from before the split, from the module that holds them now."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(module), name)


def _start(args: list[str] | None, lifecycle: bool) -> Any:
    """Import rclpy and the node (seconds: torch), init the context, build the node."""
    from vsda_ros.runtime import tune_allocator

    tune_allocator()
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    if lifecycle:
        from vsda_ros.ros.lifecycle_node import LifecycleSegmentationNode

        return LifecycleSegmentationNode()
    from vsda_ros.ros.node import SegmentationNode

    return SegmentationNode()


#: seconds the lifecycle node keeps spinning after its shutdown transition (the reply to
#: ``ros2 lifecycle set ... shutdown`` and the transition event reach their readers)
SHUTDOWN_LINGER_S = 0.5


def _spin(node: Any) -> None:
    """Spin until a signal (:class:`Shutdown`), an external context shutdown, or (lifecycle
    node) the ``shutdown`` transition."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    finished = getattr(node, 'finished', None)
    if finished is None:
        try:
            rclpy.spin(node)
        except ExternalShutdownException:
            pass
        return
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while not finished.is_set():
            executor.spin_once(timeout_sec=0.2)
        linger = time.monotonic() + SHUTDOWN_LINGER_S
        while time.monotonic() < linger:
            executor.spin_once(timeout_sec=0.05)
    except ExternalShutdownException:
        pass
    finally:
        executor.shutdown(timeout_sec=0)


def _serve(args: list[str] | None, lifecycle: bool) -> int:
    """Guard the process, build the node, spin, and shut down in order (see :func:`main`)."""
    try:
        previous, watcher = process_guard.guard(_START_PPID)
    except Shutdown:  # a signal while the guard itself was being set up: nothing started yet
        process_guard.ignore_signals()
        return 0
    node = None
    status = 0
    try:
        node = _start(args, lifecycle)
        process_guard.started()
        _spin(node)
    except StartupError:
        status = 1  # already logged by the node
    except (Shutdown, KeyboardInterrupt):
        pass
    finally:
        process_guard.ignore_signals()  # a second Ctrl-C must not interrupt the clean-up
        watcher.stop()
        if node is not None:
            if not node.stop():
                node.get_logger().warning('worker still busy after 10 s; its frame is abandoned')
            node.destroy_node()
        rclpy = sys.modules.get('rclpy')
        if rclpy is not None and hasattr(rclpy, 'try_shutdown'):
            rclpy.try_shutdown()
        process_guard.restore_signal_handlers(previous)
    return status


def main(args: list[str] | None = None) -> int:
    """Console entry point ``segmentation_node``; returns the exit status (non-zero when the
    node cannot start).

    First, before anything heavy is imported: SIGINT/SIGTERM handlers, the parent-death signal
    and the parent watcher (:func:`process_guard.guard`), so a Ctrl-C while torch loads ends
    the process quietly and the node ends with the process that launched it.

    Shutdown order, whatever the signal (SIGINT from Ctrl-C or ``ros2 launch``, SIGTERM from a
    supervisor or the parent's death) and whenever it comes: stop the worker (nothing is
    published after that), destroy the node, shut the context down. rclpy's own signal handlers
    are not installed, so the context stays valid until the worker has stopped; further
    signals during shutdown are ignored. Exit status 0 after a signal, 1 when the node could
    not start.
    """
    return _serve(args, lifecycle=False)


def lifecycle_main(args: list[str] | None = None) -> int:
    """Console entry point ``segmentation_lifecycle_node``: the managed node
    (:class:`~vsda_ros.ros.lifecycle_node.LifecycleSegmentationNode`), started unconfigured,
    with the same process guard and shutdown order as :func:`main`. Exit status 0 after the
    ``shutdown`` transition or a signal, 1 when the parameters cannot even be declared (a
    model that cannot load only fails ``configure``)."""
    return _serve(args, lifecycle=True)


if __name__ == '__main__':
    sys.exit(main())
