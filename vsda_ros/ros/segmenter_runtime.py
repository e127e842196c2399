"""``SegmenterRuntime``: everything ``segmentation_node`` does, on an rclpy node handle, in four
steps that a plain node and a managed (lifecycle) node share.

* :meth:`SegmenterRuntime.load` — read the parameters, load the model (warmed up), build the
  cameras' strategies and create the output and ``/diagnostics`` publishers (lifecycle
  publishers on a ``LifecycleNode``). Nothing is subscribed yet.
* :meth:`~SegmenterRuntime.start` — subscribe the cameras, start the worker thread and the 1 Hz
  diagnostics timer (and the ``timing`` publishers while ``publish_timing`` is on).
* :meth:`~SegmenterRuntime.stop` — the reverse of ``start``: nothing is received or published
  after it returns; the model stays loaded.
* :meth:`~SegmenterRuntime.unload` — the reverse of ``load``: publishers destroyed, the model
  freed.

:class:`~vsda_ros.ros.node.SegmentationNode` runs ``load`` + ``start`` when it is built;
:class:`~vsda_ros.ros.lifecycle_node.LifecycleSegmentationNode` runs them from its transitions.
Parts: :mod:`~vsda_ros.ros.parameters`, :mod:`~vsda_ros.ros.cameras`,
:mod:`~vsda_ros.ros.processing`, :mod:`~vsda_ros.ros.diagnostics`, the worker's half,
:mod:`~vsda_ros.ros.frame_worker`, and the cameras' side (frames in, status out),
:mod:`~vsda_ros.ros.camera_io`.

The subscription callbacks never block: each camera has a one-slot mailbox and one worker thread
takes the newest frame of each camera in turn; a frame overwritten before it was processed
counts as dropped, so per camera ``received = processed + dropped + bad_frames`` (± the one in
flight). Each camera has its own temporal strategy state (frame buffer); all share the network,
served fairly by worker time (:class:`~vsda_ros.ros.cameras.Scheduler`). A camera received on
two transports uses one at a time (``transport``); frames of the other are ignored (counted in
``ignored_other_transport``, not in ``received``). End-to-end latency is measured on the node's
ROS clock (``use_sim_time`` and ``/clock`` honoured) and left out when clock and stamps cannot
be compared.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image

from vsda_ros.ros import parameters, processing
from vsda_ros.ros.camera_io import CameraIO
from vsda_ros.ros.cameras import (
    Camera,
    Scheduler,
    camera_inputs,
    camera_layout,
    out_topic,
    parse_priorities,
)
from vsda_ros.ros.frame_worker import FramePath
from vsda_ros.ros.outputs import OUTPUTS, OutputWriter
from vsda_ros.ros.processing import load_pipeline


def ready_line(
    model: str,
    device: str,
    input_size: Any,
    strategy: str,
    inputs: list[str],
    outputs: list[str],
    modules: list[str],
) -> str:
    """The one INFO line the node logs once it serves: inputs and outputs are full topic
    names (e.g. ``outputs=['/mask', '/color_mask', '/overlay', '/confidence']``)."""
    return (
        f'ready: model={model} device={device} input_size={input_size} '
        f'strategy={strategy} cameras={inputs} outputs={outputs} '
        f'temporal modules={modules or "none"}'
    )


class SegmenterRuntime(CameraIO, FramePath):
    """The segmentation machinery of one node (``node``: an ``rclpy.node.Node`` or
    ``rclpy.lifecycle.LifecycleNode`` with the parameters of :mod:`parameters` declared).

    ``loaded`` / ``started`` say where it is. ``load`` raises (see :meth:`load`); the others
    never raise for a runtime in the state they expect.
    """

    def __init__(self, node: Any) -> None:
        self.node = node
        self._cond = threading.Condition()
        # Held while the worker talks to rcl (publishing); stop_worker() takes it to set _stop,
        # so after it returns nothing is published even if the worker is still computing.
        self._pub_lock = threading.Lock()
        self._stop = False
        self._out_qos = QoSProfile(depth=10)
        self.pipeline: Any = None
        self.segmenter: Any = None
        self.modules: Any = None
        self.model_name = ''
        self.strategy = ''
        self._live: Any = None  # the live parameter values (a dict) once loaded
        self._lut: Any = None
        self._scheduler: Any = None
        self._inputs: dict[str, list[tuple[str, type, str]]] = {}
        self._n_cameras = 1  # target_rate budgets the worker over all cameras
        self._cameras: dict[str, Camera] = {}
        self._writers: dict[str, OutputWriter] = {}  # per camera: reused output buffers
        self._subs: dict[str, dict[str, Any]] = {}  # camera → transport → subscription
        self._checked: dict[str, float] = {}  # camera → last transport decision
        self._timing_pubs: dict[str, Any] = {}  # advertised only while publish_timing
        self._diag_pub: Any = None
        self._timer: Any = None
        self._worker: threading.Thread | None = None
        self._starts = 0

    @property
    def loaded(self) -> bool:
        return self.pipeline is not None

    @property
    def started(self) -> bool:
        return self._worker is not None

    # ---- load / unload -----------------------------------------------------------------------
    def load(self) -> None:
        """Parameters → camera layout, model (warmed up), strategies, publishers.

        Raises ``ValueError`` (bad parameter value, unknown strategy or model), rclpy's
        ``ParameterException``, ``FileNotFoundError`` (weights, checkpoint), ``RuntimeError``
        (a file or backend that cannot be used) or ``MemoryError``, each with a one-line
        message; nothing stays loaded then.
        """
        p = self.node.get_parameter
        layout = camera_layout(list(p('image_topics').value or []))
        self._inputs = camera_inputs(layout, p('transport').value)
        weights = parse_priorities(p('camera_priorities').value, layout)
        self._n_cameras = len(self._inputs)
        try:
            self._setup_model()
            for ns, topics in self._inputs.items():
                self._add_camera(ns, topics)
            self._scheduler = Scheduler(
                self._cameras, weights, float(self._live['max_camera_rate_hz'])
            )
            self._diag_pub = self._create_pub(DiagnosticArray, '/diagnostics')
        except BaseException:
            self.unload()
            raise

    def _setup_model(self) -> None:
        """Load the model and temporal modules (see :func:`load_pipeline` for the errors)."""
        from vsda_ros.temporal.strategy import STRATEGY_NAMES
        from vsda_ros.visualize import palette_array

        p = self.node.get_parameter
        log = self.node.get_logger()
        self.model_name = p('model').value
        self.strategy = p('strategy').value
        if self.strategy not in STRATEGY_NAMES:
            raise ValueError(
                f'unknown strategy {self.strategy!r}; available: {", ".join(STRATEGY_NAMES)}'
            )
        self.pipeline = load_pipeline(
            self.model_name,
            p('input_size').value,
            p('device').value,
            p('backend').value,
            p('precision').value,
            p('temporal_weights').value,
            num_threads=int(p('num_threads').value),
        )
        self.segmenter, self.modules = self.pipeline.segmenter, self.pipeline.modules
        log.info(
            f'backend {self.segmenter.backend}, precision {self.segmenter.precision} '
            f'({self.segmenter.backend_reason})'
        )
        self._lut = palette_array(self.pipeline.meta.palette)
        self._live = parameters.live_values(lambda name: p(name).value)
        self._close_strategy(self._new_strategy())  # validates the strategy's settings once
        if self.strategy == 'fusion' and self.modules.fusion is None:
            log.warning(
                'strategy fusion without a trained fusion block: results equal '
                'per_frame (train one with vsda adapt --recipe fusion)'
            )
        if (
            self.strategy == 'keyframe'
            and self.modules.dmnet is None
            and p('keyframe_correction').value
        ):
            log.warning(
                'strategy keyframe without trained DMNet/CFNet: plain flow warping '
                'between keyframes (train them with vsda adapt --recipe davss)'
            )

    def _add_camera(self, ns: str, topics: list[tuple[str, type, str]]) -> None:
        """One :class:`Camera` (output publishers, strategy) for namespace ``ns``."""
        pubs = {n: self._create_pub(Image, out_topic(ns, n)) for n in OUTPUTS}
        cam = Camera(
            key=ns,
            pubs=pubs,
            strategy=self._new_strategy(),
            transports=tuple(kind for _, _, kind in topics),
        )
        cam.last = cam.stats(time.monotonic())
        self._cameras[ns], self._subs[ns], self._checked[ns] = cam, {}, 0.0

    def unload(self) -> None:
        """Destroy the publishers, drop the cameras and free the model (call when stopped;
        never raises)."""
        for cam in self._cameras.values():
            self._close_strategy(cam.strategy)
            for pub in cam.pubs.values():
                self._destroy_pub(pub)
        if self._diag_pub is not None:
            self._destroy_pub(self._diag_pub)
        self._diag_pub = None
        self._cameras, self._subs, self._checked, self._writers = {}, {}, {}, {}
        self.pipeline = self.segmenter = self.modules = self._live = None
        self._scheduler = self._lut = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - freeing is best effort
            pass

    def _create_pub(self, msg_type: type, topic: str) -> Any:
        """A reliable depth-10 publisher; a lifecycle publisher on a ``LifecycleNode`` (it
        publishes only while the node is active)."""
        create = getattr(self.node, 'create_lifecycle_publisher', self.node.create_publisher)
        return create(msg_type, topic, self._out_qos)

    def _destroy_pub(self, pub: Any) -> None:
        destroy = getattr(self.node, 'destroy_lifecycle_publisher', self.node.destroy_publisher)
        destroy(pub)

    @staticmethod
    def _close_strategy(strategy: Any) -> None:
        getattr(strategy, 'close', lambda: None)()  # background keyframe threads

    # ---- strategies --------------------------------------------------------------------------
    def _strategy_config(self) -> Any:
        """The strategies' settings from the current (live) parameter values."""
        from vsda_ros.temporal.strategy import StrategyConfig

        live, p = self._live, self.node.get_parameter
        return StrategyConfig(
            keyframe_interval=int(live['keyframe_interval']),
            correction=bool(p('keyframe_correction').value),
            distortion_threshold=float(live['distortion_threshold']),
            max_gap_s=float(live['max_stamp_gap_s']),
            flow_downscale=int(p('flow_downscale').value),
            async_keyframes=bool(p('async_keyframes').value),
        )

    def _new_strategy(self) -> Any:
        strategy = self.pipeline.strategy(self.strategy, self._strategy_config())
        self._rate_control(strategy)
        return strategy

    def _rate_control(self, strategy: Any) -> None:
        """Apply target_rate / max_keyframe_interval to one camera's strategy."""
        processing.apply_rate_control(
            strategy,
            float(self._live['target_rate']),
            int(self._live['max_keyframe_interval']),
            int(self._live['keyframe_interval']),
            self._n_cameras,
        )

    # ---- start / stop ------------------------------------------------------------------------
    def start(self) -> None:
        """Subscribe the cameras, start the worker and the diagnostics timer; logs the ready
        line. Call when loaded and stopped. A restart begins every camera's temporal state
        afresh (the frames in between were never seen)."""
        in_qos = QoSProfile(
            depth=1,
            reliability=qos_profile_sensor_data.reliability,
            durability=qos_profile_sensor_data.durability,
            history=qos_profile_sensor_data.history,
        )
        now = time.monotonic()
        for ns, topics in self._inputs.items():
            cam = self._cameras[ns]
            if self._starts:
                self._close_strategy(cam.strategy)
                cam.strategy = self._new_strategy()
            cam.last = cam.stats(now)  # the first period starts now, not at the last stop
            for topic, msg_type, kind in topics:
                sub = self.node.create_subscription(
                    msg_type, topic, lambda m, c=cam, k=kind: self._on_image(c, k, m), in_qos
                )
                self._subs[ns][kind] = sub
                cam.topic = cam.topic or sub.topic_name  # after remapping and namespace
        self._set_timing(bool(self._live['publish_timing']))
        self._stop = False
        self._worker = threading.Thread(target=self._run, name='segmentation_worker', daemon=True)
        self._worker.start()
        self._timer = self.node.create_timer(1.0, self._publish_diagnostics)
        self._starts += 1
        order = self._scheduler.order
        self.node.get_logger().info(
            ready_line(
                self.model_name,
                str(self.segmenter.device),
                self.segmenter.input_size,
                self.strategy,
                [s.topic_name for k in order for s in self._subs[k].values()],
                [p.topic_name for k in order for p in self._cameras[k].pubs.values()],
                self.modules.loaded(),
            )
        )

    def stop_worker(self, timeout: float = 10.0) -> bool:
        """Stop the worker: from return on, nothing is published; waits up to ``timeout`` s for
        the frame in progress (abandoned, not published). Returns whether the worker ended."""
        with self._pub_lock, self._cond:
            self._stop = True
            self._cond.notify_all()
        worker = self._worker
        if worker is None:
            return True
        worker.join(timeout=timeout)
        if worker.is_alive():
            return False
        self._worker = None
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """:meth:`stop_worker`, then the subscriptions, the timer and the ``timing``
        publishers go; a frame still in a mailbox counts as dropped. Returns whether the
        worker ended (False: it is still computing a frame it will not publish)."""
        ended = self.stop_worker(timeout)
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        for subs in self._subs.values():
            for sub in subs.values():
                self.node.destroy_subscription(sub)
            subs.clear()
        self._set_timing(False)
        with self._cond:
            for cam in self._cameras.values():
                cam.dropped += cam.mailbox.take() is not None
        return ended

    def close_strategies(self) -> None:
        """End the cameras' background keyframe threads (at shutdown; never raises)."""
        for cam in self._cameras.values():
            self._close_strategy(cam.strategy)

    def _set_timing(self, on: bool) -> None:
        """Create or destroy the per-camera ``timing`` publishers (publish_timing)."""
        with self._pub_lock:
            if on and not self._timing_pubs:
                self._timing_pubs = {
                    k: self.node.create_publisher(
                        DiagnosticArray, out_topic(k, 'timing'), self._out_qos
                    )
                    for k in self._cameras
                }
            elif not on and self._timing_pubs:
                for pub in self._timing_pubs.values():
                    self.node.destroy_publisher(pub)
                self._timing_pubs = {}

    # ---- live parameters ---------------------------------------------------------------------
    def apply_parameters(self, params: list) -> None:
        """Apply accepted live changes (post-set callback): publish switches, overlay alpha,
        strategy settings. Before :meth:`load` there is nothing to apply: ``load`` reads the
        values then."""
        if self._live is None or self._scheduler is None:
            return
        with self._cond:
            changed = parameters.apply_parameters(self._live, params)
            self._scheduler.set_max_rate(float(self._live['max_camera_rate_hz']))
            config = self._strategy_config()
            for cam in self._cameras.values():
                # the rest of each camera's config (flow preset, correction) is fixed at load
                cam.strategy.config.keyframe_interval = config.keyframe_interval
                cam.strategy.config.distortion_threshold = config.distortion_threshold
                cam.strategy.config.max_gap_s = config.max_gap_s
                self._rate_control(cam.strategy)
        if self.started:
            for prm in params:
                if prm.name == 'publish_timing':
                    self._set_timing(bool(prm.value))
        if changed:
            self.node.get_logger().info(f'parameters changed: {", ".join(changed)}')
