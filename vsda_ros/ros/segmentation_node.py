"""``segmentation_node``: camera images in, per-pixel class masks out.

Topics (relative, so a namespace / remapping applies):
    in:  ``image`` (sensor_msgs/Image) and ``image/compressed`` (sensor_msgs/CompressedImage),
         or every topic in the ``image_topics`` parameter (a name ending in ``/compressed`` is a
         CompressedImage topic); sensor-data QoS, depth 1.
    out: ``mask`` (mono8 class ids), ``color_mask`` (rgb8), ``overlay`` (rgb8), ``confidence``
         (mono8, max softmax × 255); reliable, depth 10; input resolution, input header. With
         ``image_topics`` each camera publishes in its topic's parent namespace:
         ``/cam_front/image_raw`` → ``/cam_front/mask`` etc.
    ``/diagnostics`` (diagnostic_msgs/DiagnosticArray) at 1 Hz, one status per camera.

The subscription callbacks never block: each camera has a one-slot mailbox and one worker thread
takes the newest frame of each camera in turn; a frame overwritten before it was processed
counts as dropped, so per camera ``received = processed + dropped + bad_frames`` (± the one in
flight). Each camera has its own temporal strategy state (frame buffer); all share the network.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType, SetParametersResult)
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image

from vsda_ros.data.dims import message_pixels
from vsda_ros.ros.conversions import message_to_rgb, numpy_to_image
from vsda_ros.temporal.strategy import STRATEGY_NAMES

STATUS_NAME = 'vsda_ros: segmentation'
OUTPUTS = ('mask', 'color_mask', 'overlay', 'confidence')
#: seconds with matched publishers and no frame before /diagnostics warns (see _Camera.silent_s)
SILENT_WARN_S = 5.0
FIXED_STAGES = ('queue_wait', 'decode', 'preprocess', 'inference', 'postprocess', 'publish',
                'end_to_end')


@dataclass(frozen=True)
class Param:
    """One node parameter: default, description, whether it needs a restart, its range."""

    default: object
    description: str
    read_only: bool = False
    range: tuple | None = None  # (from, to) for int / float parameters


# The one place where the node's parameters are defined; config/segment.yaml mirrors it.
PARAMETERS: dict[str, Param] = {
    'model': Param('espnet-camvid', 'Zoo model name (espnet-camvid, espnetv2-cityscapes, '
                   'espnet-cityscapes, or the shipped adapted espnetv2-camvid-tsl; vsda models '
                   'lists them) or path to a vsda checkpoint file.', True),
    'device': Param('cpu', 'Torch device: cpu, cuda, cuda:N or auto.', True),
    'backend': Param('torch', 'Inference backend: torch (the reference: masks identical to '
                     'vsda segment), openvino (CPU; ESPNetv2 on 2 cores: fp32 1.35-1.65x '
                     'torch, bf16 1.8-2.2x), '
                     'onnxruntime (CPU EP; CUDA/TensorRT EPs on cuda), or auto (the fastest '
                     'installed for the device, logged at start). Compiled graphs are cached '
                     'in VSDA_CACHE_DIR/compiled (the first start exports them).', True),
    'precision': Param('fp32', 'Inference precision: fp32, bf16 (openvino), int8 (a model '
                       'exported with vsda export --precision int8 --calibrate), or auto (fp32 '
                       'unless the export records a lower precision within the accuracy '
                       'limits).', True),
    'input_size': Param('', "Network input size WIDTHxHEIGHT (e.g. '480x360'); '' = the "
                        "model's native size. Outputs are always at the input image "
                        'resolution.', True),
    'strategy': Param('per_frame', 'Temporal strategy: per_frame (full network on every '
                      'processed frame), fusion (adjacent-frame score fusion block, no optical '
                      'flow) or keyframe (keyframe feature propagation by optical flow; '
                      'DMNet/CFNet correction with keyframe_correction).', True),
    'temporal_weights': Param('', 'vsda checkpoint(s) holding trained temporal modules '
                              '(fusion block, DMNet, CFNet), comma-separated; \'\' = the '
                              'model\'s own: shipped with the package for espnet-camvid, '
                              'espnetv2-cityscapes and espnetv2-camvid-tsl, or inside a model '
                              'checkpoint; \'none\' = no modules (fusion = per_frame, '
                              'keyframe = plain flow warping).', True),
    'image_topics': Param(['image', 'image/compressed'],
                          'Camera topics, one strategy state per camera; a name ending in '
                          '/compressed is a CompressedImage topic (X and X/compressed are one '
                          'camera). Outputs go to each camera\'s parent namespace.', True),
    'keyframe_interval': Param(5, 'keyframe strategy: run the full network every N-th frame.',
                               False, (1, 100)),
    'keyframe_correction': Param(False, 'keyframe strategy: correct the flow-warped features '
                                 'with DMNet/CFNet between keyframes (false = plain flow '
                                 'warping, the default: the trained correction did not beat it '
                                 'by the 1.0 mIoU it must earn at twice the cost; see '
                                 'docs/temporal.md).', True),
    'distortion_threshold': Param(0.0, 'keyframe strategy: also start a keyframe when the mean '
                                  'predicted distortion exceeds this (0 = off; needs DMNet).',
                                  False, (0.0, 1.0)),
    'publish_mask': Param(True, 'Publish mask (mono8 class ids).'),
    'publish_color_mask': Param(True, 'Publish color_mask (rgb8 palette colours).'),
    'publish_overlay': Param(True, 'Publish overlay (rgb8 image blended with color_mask).'),
    'publish_confidence': Param(True, 'Publish confidence (mono8, max softmax × 255).'),
    'publish_timing': Param(False, 'Publish timing (diagnostic_msgs/DiagnosticArray, input '
                            'header) with every processed frame\'s stage times in ms, for '
                            'profiling and vsda bench.'),
    'max_queue_wait_ms': Param(0.0, 'Latency mode: a frame that waited longer than this in '
                               'the mailbox when the worker gets to it is dropped in favour of '
                               'the next one (0 = off: always process the newest frame). Lowers '
                               'end-to-end latency at the cost of output rate when the camera '
                               'outpaces the model.', False, (0.0, 10000.0)),
    'overlay_alpha': Param(0.5, 'Weight of the colour mask in the overlay, 0..1.', False,
                           (0.0, 1.0)),
    'max_input_pixels': Param(9437184, 'Largest camera frame (width × height) the node '
                              'decodes; a larger one is skipped before decoding, counted in '
                              'bad_frames, with a WARN log and diagnostic. Default 4096×2304 '
                              '(4K UHD and DCI 4K fit). Memory grows ~80 MB per megapixel '
                              '(peak RSS 0.94 GB at 480×360, 1.57 GB at 3840×2160).',
                              False, (1, 200000000)),
    'max_stamp_gap_s': Param(1.0, 'A forward header-stamp jump above this (seconds) breaks the '
                             'stream: temporal buffers are reset and a WARN diagnostic is '
                             'raised.', False, (0.001, 3600.0)),
}


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, unknown model, missing weights, bad device)."""


def _stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def camera_layout(image_topics: list[str]) -> list[tuple[str, type, str]]:
    """``image_topics`` → [(input topic, message type, output namespace)].

    Raises ``ValueError`` on an empty list, empty names, duplicates, or two cameras sharing an
    output namespace.
    A topic ``X`` and its ``X/compressed`` sibling are one camera (one state, one set of
    outputs). The default ``['image', 'image/compressed']`` is the relative pair publishing
    relative outputs.
    """
    if not image_topics:
        raise ValueError('image_topics is empty: give at least one camera topic (default: '
                         "['image', 'image/compressed'])")
    layout, seen = [], {}  # seen: namespace → (base topic, first name)
    for topic in image_topics:
        topic = topic.strip()
        if not topic or topic.endswith('/'):
            raise ValueError(f'image_topics: bad topic name {topic!r}')
        compressed = topic.endswith('/compressed')
        base = topic[: -len('/compressed')] if compressed else topic
        ns = base.rsplit('/', 1)[0] if '/' in base else ''
        if ns in seen and seen[ns][0] != base:
            raise ValueError(f'image_topics: {seen[ns][1]!r} and {topic!r} would publish on the '
                             f'same outputs (namespace {ns or "<node>"!r}); give each camera '
                             'its own namespace')
        if any(t == topic for t, _, _ in layout):
            raise ValueError(f'image_topics: {topic!r} is listed twice')
        seen.setdefault(ns, (base, topic))
        layout.append((topic, CompressedImage if compressed else Image, ns))
    return layout


def _out_topic(ns: str, name: str) -> str:
    return f'{ns}/{name}' if ns else name


@dataclass
class _Camera:
    """One output namespace: its publishers, strategy state, mailbox and counters."""

    key: str
    pubs: dict
    strategy: object
    slot: tuple | None = None  # (message, arrival perf_counter)
    received: int = 0
    processed: int = 0
    dropped: int = 0
    bad_frames: int = 0
    keyframes: int = 0
    stream_resets: int = 0
    reset_reasons: list = field(default_factory=list)  # since the last diagnostics period
    timings: dict = field(default_factory=dict)
    last: tuple = (0.0, 0, 0, 0, 0, 0)  # (t, received, processed, bad, resets, keyframes)
    last_bad: str = ''     # why the latest bad frame was skipped
    silent_s: float = 0.0  # how long publishers have been matched without a frame arriving


class _Abandoned(Exception):
    """The node is stopping: the worker drops its frame without publishing."""


class SegmentationNode(Node):
    """Segments the newest frame of every camera and publishes masks, overlays, diagnostics."""

    def __init__(self, **kwargs) -> None:
        super().__init__('segmentation_node', **kwargs)
        self._cond = threading.Condition()
        # Held while the worker talks to rcl (publishing); stop() takes it to set _stop, so
        # after stop() returns nothing is published even if the worker is still computing.
        self._pub_lock = threading.Lock()
        self._stop = False
        try:
            self._declare_parameters()
            self._setup_model()
            layout = camera_layout(list(self.get_parameter('image_topics').value or []))
        except ParameterException as exc:
            self._fatal(f'bad parameter: {exc}')
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            self._fatal(str(exc))
        except MemoryError:
            self._fatal('out of memory while loading the model (input_size too large?)')
        except Exception as exc:  # noqa: BLE001 - one FATAL line, never a traceback
            self._fatal(f'{type(exc).__name__}: {exc}')

        out_qos = QoSProfile(depth=10)
        in_qos = QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability,
                            durability=qos_profile_sensor_data.durability,
                            history=qos_profile_sensor_data.history)
        self._cameras: dict[str, _Camera] = {}
        self._topics: dict[str, str] = {}  # camera key → its first input, resolved
        self._subs: dict[str, list] = {}
        for topic, msg_type, ns in layout:
            cam = self._cameras.get(ns)
            if cam is None:
                pubs = {n: self.create_publisher(Image, _out_topic(ns, n), out_qos)
                        for n in OUTPUTS}
                cam = _Camera(key=ns, pubs=pubs, strategy=self._new_strategy(),
                              timings={s: deque(maxlen=200) for s in FIXED_STAGES},
                              last=(time.monotonic(), 0, 0, 0, 0, 0))
                self._cameras[ns] = cam
            sub = self.create_subscription(msg_type, topic,
                                           lambda m, c=cam: self._on_image(c, m), in_qos)
            self._subs.setdefault(ns, []).append(sub)
            self._topics.setdefault(ns, sub.topic_name)  # after remapping and namespace
        self._order = list(self._cameras)  # round-robin order of the worker
        self._next = 0
        self._out_qos = out_qos
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', out_qos)
        # 'timing' is advertised only while publish_timing is on (see _set_timing).
        self._timing_pubs: dict[str, object] = {}
        self._set_timing(bool(self._live['publish_timing']))
        self._worker = threading.Thread(target=self._run, name='segmentation_worker',
                                        daemon=True)
        self._worker.start()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.create_timer(1.0, self._publish_diagnostics)
        inputs = [s.topic_name for k in self._order for s in self._subs[k]]
        self.get_logger().info(
            f'ready: model={self.model_name} device={self.segmenter.device} '
            f'input_size={self.segmenter.input_size} strategy={self.strategy} '
            f'cameras={inputs} outputs={[self._out_ns(k) for k in self._order]} '
            f'temporal modules={self.modules.loaded() or "none"}')

    def _fatal(self, text: str) -> None:
        """Log one FATAL line and raise :class:`StartupError` (main exits 1, no traceback)."""
        self.get_logger().fatal(f'cannot start: {text}')
        raise StartupError(text) from None

    def _out_ns(self, key: str) -> str:
        """The resolved namespace of a camera's outputs (e.g. ``/front`` or ``/cam_front``)."""
        return self._cameras[key].pubs['mask'].topic_name.rsplit('/', 1)[0] or '/'

    def _set_timing(self, on: bool) -> None:
        """Create or destroy the per-camera ``timing`` publishers (publish_timing)."""
        with self._pub_lock:
            if on and not self._timing_pubs:
                self._timing_pubs = {k: self.create_publisher(
                    DiagnosticArray, _out_topic(k, 'timing'), self._out_qos)
                    for k in self._cameras}
            elif not on and self._timing_pubs:
                for pub in self._timing_pubs.values():
                    self.destroy_publisher(pub)
                self._timing_pubs = {}

    # ---- setup -------------------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        for name, p in PARAMETERS.items():
            desc = ParameterDescriptor(description=p.description, read_only=p.read_only)
            if isinstance(p.range, tuple) and isinstance(p.default, float):
                desc.type = ParameterType.PARAMETER_DOUBLE
                desc.floating_point_range = [FloatingPointRange(
                    from_value=p.range[0], to_value=p.range[1], step=0.0)]
            elif isinstance(p.range, tuple) and isinstance(p.default, int):
                desc.type = ParameterType.PARAMETER_INTEGER
                desc.integer_range = [IntegerRange(from_value=p.range[0], to_value=p.range[1],
                                                   step=1)]
            # Every parameter has a value: one declared with a type and no value makes
            # get_parameters (ros2 param dump) return nothing for the whole request.
            self.declare_parameter(name, p.default, desc)

    def _setup_model(self) -> None:
        # Imported here so that torch loads once, after the parameters are declared.
        from vsda_ros.inference import Segmenter, SegmenterConfig, parse_size, resolve_device
        from vsda_ros.models.zoo import load_model
        from vsda_ros.temporal.modules import load_temporal_modules
        from vsda_ros.visualize import palette_array

        p = self.get_parameter
        self.model_name = p('model').value
        self.strategy = p('strategy').value
        if self.strategy not in STRATEGY_NAMES:
            raise ValueError(f'unknown strategy {self.strategy!r}; available: '
                             f'{", ".join(STRATEGY_NAMES)}')
        size = parse_size(p('input_size').value)
        device = p('device').value
        resolve_device(device)  # fail before loading weights
        from vsda_ros.inference.export import resolve_model
        source, export_dir = resolve_model(self.model_name)  # `model: DIR` = a vsda export
        model = load_model(source, download=False, progress=False)
        self.segmenter = Segmenter(model, SegmenterConfig(
            input_size=size, device=device, backend=p('backend').value,
            precision=p('precision').value, export_dir=export_dir))
        self.get_logger().info(f'backend {self.segmenter.backend}, precision '
                               f'{self.segmenter.precision} ({self.segmenter.backend_reason})')
        # Warm-up: the first passes allocate and tune; without this the first camera frames
        # take seconds, pile up drops and look like a stream break to the temporal strategy.
        w, h = self.segmenter.input_size
        for _ in range(2):
            self.segmenter.segment(np.zeros((h, w, 3), np.uint8))
        self.modules = load_temporal_modules(source, p('temporal_weights').value)
        self._lut = palette_array(model.meta.palette)
        self._live = {name: p(name).value for name, spec in PARAMETERS.items()
                      if not spec.read_only}
        self._new_strategy()  # validates the strategy's settings once, at start
        if self.strategy == 'fusion' and self.modules.fusion is None:
            self.get_logger().warning('strategy fusion without a trained fusion block: results '
                                      'equal per_frame (train one with vsda adapt --recipe '
                                      'fusion)')
        if (self.strategy == 'keyframe' and self.modules.dmnet is None
                and self.get_parameter('keyframe_correction').value):
            self.get_logger().warning('strategy keyframe without trained DMNet/CFNet: plain '
                                      'flow warping between keyframes (train them with vsda '
                                      'adapt --recipe davss)')

    def _strategy_config(self):
        """The strategies' settings from the current (live) parameter values."""
        from vsda_ros.temporal.strategy import StrategyConfig
        return StrategyConfig(keyframe_interval=int(self._live['keyframe_interval']),
                              correction=bool(self.get_parameter('keyframe_correction').value),
                              distortion_threshold=float(self._live['distortion_threshold']),
                              max_gap_s=float(self._live['max_stamp_gap_s']))

    def _new_strategy(self):
        from vsda_ros.temporal.strategy import build_strategy
        return build_strategy(self.strategy, self.segmenter, self._strategy_config(),
                              self.modules)

    # ---- live parameters ---------------------------------------------------------------------
    def _validate_parameters(self, params) -> SetParametersResult:
        """Reject changes the descriptors cannot express (types, unknown names)."""
        for prm in params:
            spec = PARAMETERS.get(prm.name)
            if spec is None or spec.read_only:
                continue
            if isinstance(spec.default, bool) and not isinstance(prm.value, bool):
                return SetParametersResult(successful=False,
                                           reason=f'{prm.name} must be a bool')
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params) -> None:
        """Apply accepted live changes: publish switches, overlay alpha, strategy settings."""
        changed = []
        with self._cond:
            for prm in params:
                if prm.name in self._live:
                    self._live[prm.name] = prm.value
                    changed.append(f'{prm.name}={prm.value}')
            config = self._strategy_config()
            for cam in self._cameras.values():
                # the rest of each camera's config (flow preset, correction) is fixed at start
                cam.strategy.config.keyframe_interval = config.keyframe_interval
                cam.strategy.config.distortion_threshold = config.distortion_threshold
                cam.strategy.config.max_gap_s = config.max_gap_s
        for prm in params:
            if prm.name == 'publish_timing':
                self._set_timing(bool(prm.value))
        if changed:
            self.get_logger().info(f'parameters changed: {", ".join(changed)}')

    # ---- input -------------------------------------------------------------------------------
    def _on_image(self, cam: _Camera, msg) -> None:
        arrival = time.perf_counter()
        with self._cond:
            cam.received += 1
            if cam.slot is not None:
                cam.dropped += 1
            cam.slot = (msg, arrival)
            self._cond.notify()

    def _take(self) -> tuple[_Camera, object, float] | None:
        """The next camera (round robin) with a pending frame; call with the lock held.

        In latency mode (``max_queue_wait_ms`` > 0) a frame that has waited longer is dropped
        here (counted in ``dropped``) and the worker waits for that camera's next frame.
        """
        limit_s = float(self._live['max_queue_wait_ms']) * 1e-3
        now = time.perf_counter()
        for i in range(len(self._order)):
            cam = self._cameras[self._order[(self._next + i) % len(self._order)]]
            if cam.slot is not None and limit_s > 0 and now - cam.slot[1] > limit_s:
                cam.slot = None
                cam.dropped += 1
                continue
            if cam.slot is not None:
                self._next = (self._next + i + 1) % len(self._order)
                (msg, arrival), cam.slot = cam.slot, None
                return cam, msg, arrival
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                job = self._take()
                while job is None and not self._stop:
                    self._cond.wait()
                    job = self._take()
                if self._stop:
                    return
            cam, msg, arrival = job
            try:
                self._process(cam, msg, arrival)
            except _Abandoned:
                return  # shutting down: the frame in progress is dropped, nothing published
            except ValueError as exc:
                with self._cond:
                    cam.bad_frames += 1
                    cam.last_bad = str(exc)
                self.get_logger().warning(f'skipping bad frame: {exc}', throttle_duration_sec=5)
            except Exception as exc:  # keep the node alive whatever one frame does
                if self._stop or not self.context.ok():
                    return  # the context went away under the frame: shutdown, not a failure
                with self._cond:
                    cam.bad_frames += 1
                self.get_logger().error(f'frame failed: {type(exc).__name__}: {exc}',
                                        throttle_duration_sec=5)

    def _wanted(self, cam: _Camera, name: str) -> bool:
        return bool(self._live[f'publish_{name}']) and cam.pubs[name].get_subscription_count() > 0

    @contextmanager
    def _rcl(self):
        """Hold the publish lock for a block of rcl calls; :class:`_Abandoned` once stopping."""
        with self._pub_lock:
            if self._stop or not self.context.ok():
                raise _Abandoned
            yield

    def _check_size(self, msg) -> None:
        """Raise ``ValueError`` for a frame above ``max_input_pixels`` (before decoding it)."""
        limit = int(self._live['max_input_pixels'])
        pixels = message_pixels(msg)
        if pixels is not None and pixels > limit:
            what = (f'{msg.width}x{msg.height}' if isinstance(msg, Image)
                    else f'compressed {msg.format or "image"}')
            raise ValueError(f'frame too large: {what} = {pixels / 1e6:.1f} Mpx > '
                             f'max_input_pixels {limit / 1e6:.1f} Mpx (raise the parameter if '
                             'the memory is there: ~80 MB per Mpx)')

    def _process(self, cam: _Camera, msg, arrival: float) -> None:
        t0 = time.perf_counter()
        self._check_size(msg)
        rgb = message_to_rgb(msg)
        t1 = time.perf_counter()
        header = msg.header
        seg = cam.strategy.step(rgb, _stamp_s(header))
        if seg.stream_reset:
            reason = (f'camera {self._topics[cam.key]!r} (frame_id {header.frame_id!r}): '
                      f'{seg.stream_reset}')
            with self._cond:
                cam.stream_resets += 1
                cam.reset_reasons.append(reason)
            self.get_logger().warning(f'stream reset, {reason}', throttle_duration_sec=5)
        t2 = time.perf_counter()
        with self._rcl():
            if self._wanted(cam, 'mask'):
                cam.pubs['mask'].publish(numpy_to_image(seg.labels, header))
            want_color = self._wanted(cam, 'color_mask')
            want_overlay = self._wanted(cam, 'overlay')
        if want_color or want_overlay:
            from vsda_ros.visualize import colorize, overlay
            color = colorize(seg.labels, self._lut)
            if want_color:
                out = numpy_to_image(color, header)
                with self._rcl():
                    cam.pubs['color_mask'].publish(out)
            if want_overlay:
                alpha = float(self._live['overlay_alpha'])
                out = numpy_to_image(overlay(rgb, color, alpha), header)
                with self._rcl():
                    cam.pubs['overlay'].publish(out)
        with self._rcl():
            want_conf = self._wanted(cam, 'confidence')
        if want_conf:
            out = numpy_to_image(seg.confidence, header)
            with self._rcl():
                cam.pubs['confidence'].publish(out)
        t3 = time.perf_counter()
        with self._rcl():
            timing_pub = self._timing_pubs.get(cam.key)
            if timing_pub is not None:
                stages = {'queue_wait': (t0 - arrival) * 1e3, 'decode': (t1 - t0) * 1e3,
                          **seg.timings_ms, 'publish': (t3 - t2) * 1e3,
                          'keyframe': float(seg.keyframe)}
                timing_pub.publish(DiagnosticArray(header=header, status=[
                    DiagnosticStatus(name=f'{STATUS_NAME} timing', hardware_id=self.get_name(),
                                     values=[KeyValue(key=k, value=f'{v:.3f}')
                                             for k, v in stages.items()])]))
        stamp = _stamp_s(header)
        e2e = (self.get_clock().now().nanoseconds * 1e-9 - stamp) * 1e3 if stamp > 0 else None
        with self._cond:
            cam.processed += 1
            cam.keyframes += int(seg.keyframe)
            tm = cam.timings
            tm['queue_wait'].append((t0 - arrival) * 1e3)
            tm['decode'].append((t1 - t0) * 1e3)
            for k, v in seg.timings_ms.items():
                tm.setdefault(k, deque(maxlen=200)).append(v)
            # publish = everything after the strategy returned (colouring, encoding, sending).
            tm['publish'].append((t3 - t2) * 1e3)
            if e2e is not None:
                tm['end_to_end'].append(e2e)

    # ---- diagnostics -------------------------------------------------------------------------
    def diagnostic_status(self, cam: _Camera) -> DiagnosticStatus:
        """This camera's status for the last period (counters are totals since start)."""
        now = time.monotonic()
        with self._cond:
            counts = (cam.received, cam.processed, cam.dropped, cam.bad_frames)
            resets, keys = cam.stream_resets, cam.keyframes
            reasons, cam.reset_reasons = cam.reset_reasons, []
            timings = {k: list(v) for k, v in cam.timings.items()}
            last_bad = cam.last_bad
        t_prev, r_prev, p_prev, b_prev, s_prev, k_prev = cam.last
        cam.last = (now, counts[0], counts[1], counts[3], resets, keys)
        dt = max(now - t_prev, 1e-6)
        in_hz, out_hz = (counts[0] - r_prev) / dt, (counts[1] - p_prev) / dt
        period_processed = counts[1] - p_prev
        publishers = sum(sub.get_publisher_count() for sub in self._subs[cam.key])
        cam.silent_s = cam.silent_s + dt if publishers and counts[0] == r_prev else 0.0
        values = {'topic': self._topics[cam.key], 'publishers': publishers,
                  'received': counts[0],
                  'processed': counts[1], 'dropped': counts[2], 'bad_frames': counts[3],
                  'stream_resets': resets, 'keyframes': keys,
                  'keyframe_ratio': (f'{(keys - k_prev) / period_processed:.3f}'
                                     if period_processed else 'n/a'),
                  'input_hz': f'{in_hz:.2f}', 'output_hz': f'{out_hz:.2f}'}
        for stage, v in timings.items():
            for q in (50, 95):
                values[f'{stage}_p{q}_ms'] = f'{np.percentile(v, q):.2f}' if v else 'n/a'
        values.update(model=self.model_name, strategy=self.strategy,
                      device=str(self.segmenter.device), backend=self.segmenter.backend,
                      precision=self.segmenter.precision,
                      temporal_modules=','.join(self.modules.loaded()) or 'none')
        problems = []
        if in_hz > 0 and out_hz < 0.5 * in_hz:
            problems.append(f'output rate {out_hz:.1f} Hz < 50% of input rate {in_hz:.1f} Hz')
        if counts[3] > b_prev:
            problems.append(f'{counts[3] - b_prev} bad frame(s) in the last period '
                            f'(last: {last_bad})')
        if cam.silent_s >= SILENT_WARN_S:
            text = (f'{publishers} publisher(s) matched on {self._topics[cam.key]} but no frame '
                    f'arrived for {cam.silent_s:.0f} s: nothing is being sent, or the frames '
                    'are larger than the DDS transport delivers (Fast DDS drops best-effort '
                    'samples bigger than the sender\'s shared-memory segment silently; give '
                    'the camera process this package\'s config/fastdds_profile.xml, or send '
                    'image/compressed)')
            problems.append(text)
            if cam.silent_s < SILENT_WARN_S + dt:  # once per silent episode
                self.get_logger().warning(text)
        if reasons:
            more = f' (+{len(reasons) - 3} more)' if len(reasons) > 3 else ''
            problems.append(f'stream reset ×{len(reasons)}: ' + '; '.join(reasons[:3]) + more)
        name = STATUS_NAME if len(self._cameras) == 1 else (
            f'{STATUS_NAME} ({self._topics[cam.key]})')
        return DiagnosticStatus(
            name=name, hardware_id=self.get_name(),
            level=DiagnosticStatus.WARN if problems else DiagnosticStatus.OK,
            message='; '.join(problems) if problems else 'OK',
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

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
        return not worker.is_alive()


class _Shutdown(BaseException):
    """Raised in the main thread by the SIGINT/SIGTERM handler (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way swallows it)."""


def main(args=None) -> int:
    """Console entry point; returns the exit status (non-zero when the node cannot start).

    Shutdown order, whatever the signal (SIGINT from Ctrl-C or ``ros2 launch``, SIGTERM from a
    supervisor) and whenever it comes: stop the worker (nothing is published after that),
    destroy the node, shut the context down. rclpy's own signal handlers are not installed, so
    the context stays valid until the worker has stopped; further signals during shutdown are
    ignored. Exit status 0 after a signal, 1 when the node could not start.
    """
    from vsda_ros.runtime import tune_allocator
    tune_allocator()

    def on_signal(signum, frame):  # noqa: ARG001
        raise _Shutdown(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    node = None
    status = 0
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = SegmentationNode()
        rclpy.spin(node)
    except StartupError:
        status = 1  # already logged by the node
    except (_Shutdown, KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for s in previous:  # a second Ctrl-C must not interrupt the clean-up
            signal.signal(s, signal.SIG_IGN)
        if node is not None:
            if not node.stop():
                node.get_logger().warning('worker still busy after 10 s; its frame is '
                                          'abandoned')
            node.destroy_node()
        rclpy.try_shutdown()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return status


if __name__ == '__main__':
    sys.exit(main())
