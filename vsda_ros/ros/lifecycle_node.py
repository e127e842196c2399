"""``LifecycleSegmentationNode``: ``segmentation_node`` as a managed (lifecycle) node, the way
vehicle stacks (Nav2, Autoware) run their nodes: started unconfigured, driven through
``configure`` / ``activate`` / ``deactivate`` / ``cleanup`` / ``shutdown`` by a lifecycle
manager or ``ros2 lifecycle set``.

Same parameters, topics and diagnostics as the plain node: both run one
:class:`~vsda_ros.ros.segmenter_runtime.SegmenterRuntime`.

=============  ===============================================================================
transition     what happens
=============  ===============================================================================
(built)        parameters declared (``ros2 param`` works while unconfigured); nothing else
configure      the model is loaded and warmed up, cameras' strategies built, the output and
               ``/diagnostics`` publishers created (lifecycle publishers: inactive). A bad model
               or parameter fails the transition (FAILURE, the node stays unconfigured) with
               one ERROR line giving the reason; the process lives on.
activate       publishers enabled, cameras subscribed, worker and 1 Hz diagnostics started
deactivate     subscriptions, worker and diagnostics stopped (nothing received, processed or
               published; a frame waiting in a mailbox counts as dropped); the model stays
cleanup        publishers destroyed, model freed (back to unconfigured)
shutdown       from any primary state: stopped and freed, then the process exits (status 0)
=============  ===============================================================================

A re-activation starts every camera's temporal state afresh. Read-only parameters changed while
unconfigured (``ros2 param set`` refuses them; a launch sets them) take effect at configure;
live ones apply at once whenever a model is loaded.
"""

from __future__ import annotations

import threading
import time
from typing import Any, NoReturn

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from vsda_ros.ros import parameters
from vsda_ros.ros.node import startup_failure
from vsda_ros.ros.process_guard import StartupError
from vsda_ros.ros.segmenter_runtime import SegmenterRuntime


class LifecycleSegmentationNode(LifecycleNode):
    """``segmentation_node`` with a lifecycle (see the module docstring).

    Construction raises :class:`StartupError` (after one FATAL line) only when the parameters
    cannot be declared (an override of the wrong type or out of range); everything else that
    can go wrong is reported by a failed ``configure``. ``finished`` is set once the
    ``shutdown`` transition has run (the entry point then exits); ``last_failure`` is the reason
    of the latest failed transition ('' when none failed).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('segmentation_node', **kwargs)
        self.runtime = SegmenterRuntime(self)
        self.finished = threading.Event()
        self.last_failure = ''
        try:
            parameters.declare_parameters(self)
        except Exception as exc:  # noqa: BLE001 - one FATAL line, never a traceback
            self._fatal(startup_failure(exc))
        self.add_on_set_parameters_callback(parameters.validate_parameters)
        self.add_post_set_parameters_callback(self.runtime.apply_parameters)
        self.get_logger().info(
            'unconfigured: waiting for configure (ros2 lifecycle set '
            f'{self.get_fully_qualified_name()} configure)'
        )

    def _fatal(self, text: str) -> NoReturn:
        self.get_logger().fatal(f'cannot start: {text}')
        raise StartupError(text) from None

    def _failed(self, transition: str, reason: str) -> TransitionCallbackReturn:
        """Log why ``transition`` failed (one ERROR line) and return FAILURE."""
        self.last_failure = reason
        self.get_logger().error(f'{transition} failed: {reason}')
        return TransitionCallbackReturn.FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model (warmed up) and create the publishers; FAILURE with the reason."""
        start = time.monotonic()
        try:
            self.runtime.load()
        except Exception as exc:  # noqa: BLE001 - any reason fails the transition, not the node
            return self._failed('configure', startup_failure(exc))
        self.last_failure = ''
        self.get_logger().info(
            f'configured in {time.monotonic() - start:.1f} s: model '
            f'{self.runtime.model_name}, strategy {self.runtime.strategy}'
        )
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the publishers, subscribe, start the worker and diagnostics."""
        if self.runtime.started and not self.runtime.stop_worker():
            return self._failed(
                'activate',
                'the worker is still finishing a frame from before the last deactivate; try again',
            )
        ret = super().on_activate(state)  # the lifecycle publishers publish from now on
        if ret != TransitionCallbackReturn.SUCCESS:
            return ret
        try:
            self.runtime.start()
        except Exception as exc:  # noqa: BLE001 - fail the transition, keep the node
            self.runtime.stop()
            super().on_deactivate(state)
            return self._failed('activate', f'{type(exc).__name__}: {exc}')
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop receiving, processing and publishing; the model stays loaded."""
        if not self.runtime.stop():
            self.get_logger().warning('worker still busy after 10 s; its frame is abandoned')
        self.get_logger().info('deactivated: not subscribed, model kept')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy the publishers and free the model."""
        self.runtime.unload()
        self.get_logger().info('cleaned up: model freed')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop and free everything; the entry point exits once this returns."""
        self.release()
        self.finished.set()
        self.get_logger().info(f'shut down (from {state.label})')
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop and free everything, back to unconfigured."""
        self.release()
        self.get_logger().error(f'error while {state.label}: stopped and unloaded')
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> bool:
        """Stop (if active) and unload (if configured), whatever the state; returns whether the
        worker ended. Never raises."""
        ended = self.runtime.stop() if self.runtime.started else True
        self.runtime.unload()
        return ended

    def stop(self, timeout: float = 10.0) -> bool:
        """As :meth:`SegmentationNode.stop`: stop the worker (nothing published after it
        returns); returns whether it ended."""
        ended = self.runtime.stop_worker(timeout)
        self.runtime.close_strategies()
        return ended
