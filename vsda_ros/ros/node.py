"""``SegmentationNode``: ``segmentation_node`` as a plain node — it loads the model and serves
as soon as it is built (the managed variant is :mod:`~vsda_ros.ros.lifecycle_node`).

Everything it does is in :class:`~vsda_ros.ros.segmenter_runtime.SegmenterRuntime` (parameters,
model set-up, cameras and subscriptions, the worker, outputs, diagnostics), which both nodes
share; this class declares the parameters, runs the runtime's ``load`` and ``start`` and turns
any failure into one FATAL line and :class:`StartupError`. The entry point and the process'
shutdown are in :mod:`vsda_ros.ros.segmentation_node`.
"""

from __future__ import annotations

from typing import Any, NoReturn

from rclpy.exceptions import ParameterException
from rclpy.node import Node

from vsda_ros.ros import parameters
from vsda_ros.ros.cameras import Camera
from vsda_ros.ros.outputs import OUTPUTS
from vsda_ros.ros.process_guard import StartupError
from vsda_ros.ros.segmenter_runtime import SegmenterRuntime, ready_line

__all__ = ['OUTPUTS', 'SegmentationNode', 'ready_line', 'startup_failure']


def startup_failure(exc: BaseException) -> str:
    """The one-line reason a node cannot load (``load`` or parameter declaration failed)."""
    if isinstance(exc, ParameterException):
        return f'bad parameter: {exc}'
    if isinstance(exc, (ValueError, FileNotFoundError, RuntimeError)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return 'out of memory while loading the model (input_size too large?)'
    return f'{type(exc).__name__}: {exc}'


class SegmentationNode(Node):
    """Segments the newest frame of every camera and publishes masks, overlays, diagnostics.

    Construction raises :class:`StartupError` (after one FATAL log line, no traceback) when a
    parameter, the model, its weights or the device is unusable.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('segmentation_node', **kwargs)
        self.runtime = SegmenterRuntime(self)
        try:
            parameters.declare_parameters(self)
            self.runtime.load()
        except Exception as exc:  # noqa: BLE001 - one FATAL line, never a traceback
            self._fatal(startup_failure(exc))
        self.runtime.start()
        self.add_on_set_parameters_callback(parameters.validate_parameters)
        self.add_post_set_parameters_callback(self.runtime.apply_parameters)

    def _fatal(self, text: str) -> NoReturn:
        """Log one FATAL line and raise :class:`StartupError` (main exits 1, no traceback)."""
        self.get_logger().fatal(f'cannot start: {text}')
        raise StartupError(text) from None

    # ---- the runtime's state, under the names the node had before the split ------------------
    @property
    def pipeline(self) -> Any:
        return self.runtime.pipeline

    @property
    def segmenter(self) -> Any:
        return self.runtime.segmenter

    @property
    def modules(self) -> Any:
        return self.runtime.modules

    @property
    def model_name(self) -> str:
        return self.runtime.model_name

    @property
    def strategy(self) -> str:
        return self.runtime.strategy

    @property
    def _cameras(self) -> dict[str, Camera]:
        return self.runtime._cameras

    def _strategy_config(self) -> Any:
        return self.runtime._strategy_config()

    def node_info(self) -> Any:
        """What every camera's status reports about the node."""
        return self.runtime.node_info()

    def diagnostic_status(self, cam: Camera) -> Any:
        """This camera's ``DiagnosticStatus`` for the last period; starts the next period."""
        return self.runtime.diagnostic_status(cam)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the worker: from return on, nothing is published; waits up to ``timeout`` s for
        the frame in progress (abandoned, not published). Returns whether the worker ended."""
        ended = self.runtime.stop_worker(timeout)
        self.runtime.close_strategies()
        return ended
