"""``SegmentationNode``: the wiring of ``segmentation_node`` (publishers, subscriptions, the
worker thread, timers) over its parts.

Parts: :mod:`~vsda_ros.ros.parameters` (the table, declare / validate / apply),
:mod:`~vsda_ros.ros.cameras` (layout, mailboxes, counters, scheduling),
:mod:`~vsda_ros.ros.processing` (model set-up, size check, stage timing),
:mod:`~vsda_ros.ros.diagnostics` (a camera's period → ``DiagnosticStatus``). The entry point and
the process' shutdown are in :mod:`vsda_ros.ros.segmentation_node`.

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

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, NoReturn

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image

from vsda_ros.ros import diagnostics, parameters, processing
from vsda_ros.ros.cameras import (Camera, Scheduler, camera_inputs, camera_layout, out_topic,
                                  parse_priorities)
from vsda_ros.ros.conversions import message_to_rgb
from vsda_ros.ros.outputs import OutputWriter
from vsda_ros.ros.process_guard import StartupError
from vsda_ros.ros.processing import (StageClock, check_size, end_to_end_ms, frame_format,
                                     load_pipeline, stamp_ns, stamp_s)

#: seconds between two transport decisions triggered by frames of the transport not in use
TRANSPORT_RECHECK_S = 0.2

OUTPUTS = ('mask', 'color_mask', 'overlay', 'confidence')


class _Abandoned(Exception):
    """The node is stopping: the worker drops its frame without publishing."""


def ready_line(model: str, device: str, input_size: Any, strategy: str, inputs: list[str],
               outputs: list[str], modules: list[str]) -> str:
    """The one INFO line the node logs once it serves: inputs and outputs are full topic
    names (e.g. ``outputs=['/mask', '/color_mask', '/overlay', '/confidence']``)."""
    return (f'ready: model={model} device={device} input_size={input_size} '
            f'strategy={strategy} cameras={inputs} outputs={outputs} '
            f'temporal modules={modules or "none"}')


class SegmentationNode(Node):
    """Segments the newest frame of every camera and publishes masks, overlays, diagnostics.

    Construction raises :class:`StartupError` (after one FATAL log line, no traceback) when a
    parameter, the model, its weights or the device is unusable.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('segmentation_node', **kwargs)
        self._cond = threading.Condition()
        # Held while the worker talks to rcl (publishing); stop() takes it to set _stop, so
        # after stop() returns nothing is published even if the worker is still computing.
        self._pub_lock = threading.Lock()
        self._stop = False
        inputs, weights = self._start_checked()
        self._n_cameras = len(inputs)  # target_rate budgets the worker over all cameras
        self._out_qos = QoSProfile(depth=10)
        self._cameras: dict[str, Camera] = {}
        self._writers: dict[str, OutputWriter] = {}  # per camera: reused output buffers
        self._subs: dict[str, dict[str, Any]] = {}  # camera → transport → subscription
        self._checked: dict[str, float] = {}        # camera → last transport decision
        self._add_cameras(inputs)
        self._scheduler = Scheduler(self._cameras, weights,
                                    float(self._live['max_camera_rate_hz']))
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', self._out_qos)
        # 'timing' is advertised only while publish_timing is on (see _set_timing).
        self._timing_pubs: dict[str, Any] = {}
        self._set_timing(bool(self._live['publish_timing']))
        self._worker = threading.Thread(target=self._run, name='segmentation_worker',
                                        daemon=True)
        self._worker.start()
        self.add_on_set_parameters_callback(parameters.validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.create_timer(1.0, self._publish_diagnostics)
        order = self._scheduler.order
        self.get_logger().info(ready_line(
            self.model_name, str(self.segmenter.device), self.segmenter.input_size,
            self.strategy, [s.topic_name for k in order for s in self._subs[k].values()],
            [p.topic_name for k in order for p in self._cameras[k].pubs.values()],
            self.modules.loaded()))

    # ---- setup -------------------------------------------------------------------------------
    def _start_checked(self) -> tuple[dict[str, list], dict[str, float]]:
        """Parameters, model, camera inputs (see :func:`camera_inputs`) and scheduling
        weights; any failure → one FATAL line and :class:`StartupError`."""
        try:
            parameters.declare_parameters(self)
            self._setup_model()
            layout = camera_layout(list(self.get_parameter('image_topics').value or []))
            return (camera_inputs(layout, self.get_parameter('transport').value),
                    parse_priorities(self.get_parameter('camera_priorities').value, layout))
        except ParameterException as exc:
            self._fatal(f'bad parameter: {exc}')
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            self._fatal(str(exc))
        except MemoryError:
            self._fatal('out of memory while loading the model (input_size too large?)')
        except Exception as exc:  # noqa: BLE001 - one FATAL line, never a traceback
            self._fatal(f'{type(exc).__name__}: {exc}')
        raise AssertionError('unreachable')  # _fatal always raises

    def _fatal(self, text: str) -> NoReturn:
        """Log one FATAL line and raise :class:`StartupError` (main exits 1, no traceback)."""
        self.get_logger().fatal(f'cannot start: {text}')
        raise StartupError(text) from None

    def _setup_model(self) -> None:
        """Load the model and temporal modules; raises ``ValueError`` / ``FileNotFoundError``
        / ``RuntimeError`` with one-line messages (see :func:`load_pipeline`)."""
        from vsda_ros.temporal.strategy import STRATEGY_NAMES
        from vsda_ros.visualize import palette_array

        p = self.get_parameter
        self.model_name = p('model').value
        self.strategy = p('strategy').value
        if self.strategy not in STRATEGY_NAMES:
            raise ValueError(f'unknown strategy {self.strategy!r}; available: '
                             f'{", ".join(STRATEGY_NAMES)}')
        self.pipeline = load_pipeline(
            self.model_name, p('input_size').value, p('device').value, p('backend').value,
            p('precision').value, p('temporal_weights').value,
            num_threads=int(p('num_threads').value))
        self.segmenter, self.modules = self.pipeline.segmenter, self.pipeline.modules
        self.get_logger().info(f'backend {self.segmenter.backend}, precision '
                               f'{self.segmenter.precision} ({self.segmenter.backend_reason})')
        self._lut = palette_array(self.pipeline.meta.palette)
        self._live = parameters.live_values(lambda name: p(name).value)
        self._new_strategy()  # validates the strategy's settings once, at start
        if self.strategy == 'fusion' and self.modules.fusion is None:
            self.get_logger().warning('strategy fusion without a trained fusion block: results '
                                      'equal per_frame (train one with vsda adapt --recipe '
                                      'fusion)')
        if (self.strategy == 'keyframe' and self.modules.dmnet is None
                and p('keyframe_correction').value):
            self.get_logger().warning('strategy keyframe without trained DMNet/CFNet: plain '
                                      'flow warping between keyframes (train them with vsda '
                                      'adapt --recipe davss)')

    def _add_cameras(self, inputs: dict[str, list[tuple[str, type, str]]]) -> None:
        """One :class:`Camera` (outputs, strategy) per namespace; a subscription per
        transport it is received on."""
        in_qos = QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability,
                            durability=qos_profile_sensor_data.durability,
                            history=qos_profile_sensor_data.history)
        for ns, topics in inputs.items():
            pubs = {n: self.create_publisher(Image, out_topic(ns, n), self._out_qos)
                    for n in OUTPUTS}
            cam = Camera(key=ns, pubs=pubs, strategy=self._new_strategy(),
                         transports=tuple(kind for _, _, kind in topics))
            cam.last = cam.stats(time.monotonic())
            self._cameras[ns], self._subs[ns], self._checked[ns] = cam, {}, 0.0
            for topic, msg_type, kind in topics:
                sub = self.create_subscription(
                    msg_type, topic, lambda m, c=cam, k=kind: self._on_image(c, k, m), in_qos)
                self._subs[ns][kind] = sub
                cam.topic = cam.topic or sub.topic_name  # after remapping and namespace

    def _strategy_config(self) -> Any:
        """The strategies' settings from the current (live) parameter values."""
        from vsda_ros.temporal.strategy import StrategyConfig
        return StrategyConfig(keyframe_interval=int(self._live['keyframe_interval']),
                              correction=bool(self.get_parameter('keyframe_correction').value),
                              distortion_threshold=float(self._live['distortion_threshold']),
                              max_gap_s=float(self._live['max_stamp_gap_s']))

    def _new_strategy(self) -> Any:
        p = self.get_parameter
        strategy = processing.make_strategy(
            self.pipeline, self.strategy, self._strategy_config(),
            bool(p('async_keyframes').value), int(p('flow_downscale').value))
        self._rate_control(strategy)
        return strategy

    def _rate_control(self, strategy: Any) -> None:
        """Apply target_rate / max_keyframe_interval to one camera's strategy."""
        processing.apply_rate_control(
            strategy, float(self._live['target_rate']), int(self._live['max_keyframe_interval']),
            int(self._live['keyframe_interval']), getattr(self, '_n_cameras', 1))

    def _set_timing(self, on: bool) -> None:
        """Create or destroy the per-camera ``timing`` publishers (publish_timing)."""
        with self._pub_lock:
            if on and not self._timing_pubs:
                self._timing_pubs = {k: self.create_publisher(
                    DiagnosticArray, out_topic(k, 'timing'), self._out_qos)
                    for k in self._cameras}
            elif not on and self._timing_pubs:
                for pub in self._timing_pubs.values():
                    self.destroy_publisher(pub)
                self._timing_pubs = {}

    # ---- live parameters ---------------------------------------------------------------------
    def _apply_parameters(self, params: list) -> None:
        """Apply accepted live changes: publish switches, overlay alpha, strategy settings."""
        with self._cond:
            changed = parameters.apply_parameters(self._live, params)
            self._scheduler.set_max_rate(float(self._live['max_camera_rate_hz']))
            config = self._strategy_config()
            for cam in self._cameras.values():
                # the rest of each camera's config (flow preset, correction) is fixed at start
                cam.strategy.config.keyframe_interval = config.keyframe_interval
                cam.strategy.config.distortion_threshold = config.distortion_threshold
                cam.strategy.config.max_gap_s = config.max_gap_s
                self._rate_control(cam.strategy)
        for prm in params:
            if prm.name == 'publish_timing':
                self._set_timing(bool(prm.value))
        if changed:
            self.get_logger().info(f'parameters changed: {", ".join(changed)}')

    # ---- input and the worker ----------------------------------------------------------------
    def _on_image(self, cam: Camera, transport: str, msg: Any) -> None:
        """A frame on one of ``cam``'s transports: into its mailbox unless it is refused
        (other transport, or a stamp already taken from the other one; see
        :meth:`Camera.admit`)."""
        arrival = time.perf_counter()
        with self._cond:
            if (transport != cam.transport
                    and arrival - self._checked[cam.key] > TRANSPORT_RECHECK_S):
                self._select_transport(cam, arrival)
            if cam.admit(transport, stamp_ns(msg.header)):
                cam.arrive(msg, arrival)
                self._cond.notify()

    def _select_transport(self, cam: Camera, now: float) -> None:
        """Re-decide ``cam``'s transport from its matched publishers (call with the lock
        held); logs a change."""
        self._checked[cam.key] = now
        before = cam.transport
        counts = {k: sub.get_publisher_count() for k, sub in self._subs[cam.key].items()}
        if cam.select(counts) and before:
            self.get_logger().info(f'camera {cam.topic!r}: transport {before} -> '
                                   f'{cam.transport} (publishers {counts})')

    def _take(self) -> tuple[Camera, Any, float] | None:
        """The next pending frame (see :class:`Scheduler`); call with the lock held."""
        limit_s = float(self._live['max_queue_wait_ms']) * 1e-3
        return self._scheduler.take(time.perf_counter(), limit_s)

    def _next_job(self) -> tuple[Camera, Any, float] | None:
        """Wait for the next frame to serve; None once the node stops."""
        with self._cond:
            job = self._take()
            while job is None and not self._stop:
                # a camera held back by its rate cap wakes the worker when it is due
                self._cond.wait(self._scheduler.wait_s(time.perf_counter()))
                job = self._take()
            return None if self._stop else job

    def _run(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            cam, msg, arrival = job
            start = time.perf_counter()
            try:
                self._process(cam, msg, arrival)
            except _Abandoned:
                return  # shutting down: the frame in progress is dropped, nothing published
            except ValueError as exc:
                with self._cond:
                    cam.bad(str(exc))
                self.get_logger().warning(f'skipping bad frame: {exc}', throttle_duration_sec=5)
            except Exception as exc:  # keep the node alive whatever one frame does
                if self._stop or not self.context.ok():
                    return  # the context went away under the frame: shutdown, not a failure
                with self._cond:
                    cam.bad(None)
                self.get_logger().error(f'frame failed: {type(exc).__name__}: {exc}',
                                        throttle_duration_sec=5)
            finally:
                with self._cond:
                    done = time.perf_counter()
                    self._scheduler.charge(cam, done - start, done)

    # ---- one frame ---------------------------------------------------------------------------
    def _process(self, cam: Camera, msg: Any, arrival: float) -> None:
        """Decode, segment, publish and record one frame; ``ValueError`` for a bad frame,
        :class:`_Abandoned` once the node stops."""
        clock = StageClock(arrival)
        clock.lap('queue_wait')
        check_size(msg, int(self._live['max_input_pixels']))
        rgb = message_to_rgb(msg)
        clock.lap('decode')
        t_step = time.perf_counter()
        seg = cam.strategy.step(rgb, stamp_s(msg.header), frame_format(msg))
        step_ms = (time.perf_counter() - t_step) * 1e3
        if seg.stream_reset:
            self._stream_reset(cam, msg.header, seg.stream_reset)
        clock.add(seg.timings_ms)  # preprocess, inference, postprocess
        self._publish_outputs(cam, seg, rgb, msg.header)
        # publish = everything after the strategy returned (colouring, encoding, sending).
        clock.lap('publish')
        processing.observe_overhead(cam.strategy, clock.ms['decode'] + clock.ms['publish'])
        self._record(cam, msg.header, clock.ms, bool(seg.keyframe), seg.kind, step_ms)

    def _stream_reset(self, cam: Camera, header: Any, why: str) -> None:
        reason = f'camera {cam.topic!r} (frame_id {header.frame_id!r}): {why}'
        with self._cond:
            cam.stream_resets += 1
            cam.reset_reasons.append(reason)
        self.get_logger().warning(f'stream reset, {reason}', throttle_duration_sec=5)

    def _wanted(self, cam: Camera, name: str) -> bool:
        return bool(self._live[f'publish_{name}']) and cam.pubs[name].get_subscription_count() > 0

    @contextmanager
    def _rcl(self) -> Iterator[None]:
        """Hold the publish lock for a block of rcl calls; :class:`_Abandoned` once stopping."""
        with self._pub_lock:
            if self._stop or not self.context.ok():
                raise _Abandoned
            yield

    def _publish_outputs(self, cam: Camera, seg: Any, rgb: Any, header: Any) -> None:
        """Publish the outputs someone subscribes to (and whose switch is on), mask first;
        images are built outside the publish lock, sent under it (see
        :class:`~vsda_ros.ros.outputs.OutputWriter`)."""
        writer = self._writers.get(cam.key)
        if writer is None:
            writer = self._writers[cam.key] = OutputWriter(self._lut)
        writer.publish(cam.pubs, seg, rgb, header, float(self._live['overlay_alpha']),
                       lambda name: self._wanted(cam, name), self._rcl)

    def _record(self, cam: Camera, header: Any, stages: dict[str, float],
                keyframe: bool, kind: str = '', step_ms: float = 0.0) -> None:
        """The one place a frame's stage times go: the ``timing`` topic (when on) and the
        camera's rolling windows (with the end-to-end latency from the header stamp)."""
        with self._rcl():
            timing_pub = self._timing_pubs.get(cam.key)
            if timing_pub is not None:
                timing_pub.publish(DiagnosticArray(header=header, status=[
                    diagnostics.timing_status(stages, keyframe, self.get_name(), kind)]))
        windows = dict(stages)
        clock = self.get_clock()
        e2e, note = end_to_end_ms(clock.now().nanoseconds, stamp_ns(header),
                                  bool(clock.ros_time_is_active))
        if e2e is not None:
            windows['end_to_end'] = e2e
        if kind:
            windows.update(processing.kind_windows(kind, step_ms, e2e))
        if note and not cam.e2e_note:
            self.get_logger().info(f'camera {cam.topic!r}: {note}')
        with self._cond:
            cam.record(windows, keyframe)
            if note:
                cam.timings['end_to_end'].clear()  # never mix comparable and other figures
            cam.e2e_note = note

    # ---- diagnostics -------------------------------------------------------------------------
    def node_info(self) -> diagnostics.NodeInfo:
        """What every camera's status reports about the node."""
        return diagnostics.NodeInfo(
            name=self.get_name(), model=self.model_name, strategy=self.strategy,
            device=str(self.segmenter.device), backend=self.segmenter.backend,
            precision=self.segmenter.precision,
            temporal_modules=','.join(self.modules.loaded()) or 'none',
            cameras=len(self._cameras))

    def diagnostic_status(self, cam: Camera) -> Any:
        """This camera's ``DiagnosticStatus`` for the last period (counters are totals since
        start); starts the next period."""
        now = time.monotonic()
        with self._cond:
            stats = cam.stats(now)
            reasons, cam.reset_reasons = cam.reset_reasons, []
            timings = {k: list(v) for k, v in cam.timings.items()}
            last_bad, e2e_note = cam.last_bad, cam.e2e_note
            self._select_transport(cam, time.perf_counter())  # publishers come and go
            transport = cam.transport
        prev, cam.last = cam.last, stats
        interval, rate_why = processing.rate_status(cam.strategy)
        publishers = sum(sub.get_publisher_count() for sub in self._subs[cam.key].values())
        cam.silent_s = diagnostics.silent_seconds(cam.silent_s, publishers, stats, prev)
        period = diagnostics.CameraPeriod(
            topic=cam.topic, now=stats, prev=prev, publishers=publishers,
            silent_s=cam.silent_s, timings=timings, reset_reasons=reasons, last_bad=last_bad,
            transport=transport, end_to_end_note=e2e_note, keyframe_interval=interval,
            rate_control=rate_why)
        if diagnostics.silence_began(period):  # log once per silent episode
            self.get_logger().warning(diagnostics.silent_text(period))
        return diagnostics.camera_status(period, self.node_info())

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.diagnostic_status(c) for c in self._cameras.values()]
        self._diag_pub.publish(msg)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the worker: from return on, nothing is published; waits up to ``timeout`` s for
        the frame in progress (abandoned, not published). Returns whether the worker ended."""
        with self._pub_lock, self._cond:
            self._stop = True
            self._cond.notify_all()
        worker = getattr(self, '_worker', None)
        if worker is None:
            return True
        worker.join(timeout=timeout)
        for cam in getattr(self, '_cameras', {}).values():
            getattr(cam.strategy, 'close', lambda: None)()  # background keyframe threads
        return not worker.is_alive()
