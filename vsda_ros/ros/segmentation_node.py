"""``segmentation_node``: camera images in, per-pixel class masks out.

Topics (relative, so a namespace / remapping applies):
    in:  ``image`` (sensor_msgs/Image), ``image/compressed`` (sensor_msgs/CompressedImage);
         sensor-data QoS, depth 1.
    out: ``mask`` (mono8 class ids), ``color_mask`` (rgb8), ``overlay`` (rgb8), ``confidence``
         (mono8, max softmax × 255); reliable, depth 10; input resolution, input header.
    ``/diagnostics`` (diagnostic_msgs/DiagnosticArray) at 1 Hz.

The subscription callbacks never block: they put the message into a one-slot mailbox and a
worker thread always processes the newest one; a message overwritten before it was processed
counts as dropped, so ``received = processed + dropped + bad_frames`` (± the one in flight).
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, ParameterType
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from vsda_ros.ros.conversions import message_to_rgb, numpy_to_image
from vsda_ros.temporal.stream import StreamGuard

STATUS_NAME = 'vsda_ros: segmentation'
STRATEGIES = ('per_frame',)
STAGES = ('decode', 'preprocess', 'inference', 'postprocess', 'publish', 'end_to_end')

# name → (default, description, read_only, floating-point range or None). The one place where
# the node's parameters are defined; config/segment.yaml mirrors it.
PARAMETERS: dict[str, tuple] = {
    'model': ('espnet-camvid', 'Zoo model name (espnet-camvid, espnetv2-cityscapes, '
              'espnet-cityscapes) or path to a vsda checkpoint file.', True, None),
    'device': ('cpu', 'Torch device: cpu, cuda, cuda:N or auto.', True, None),
    'input_size': ('', "Network input size WIDTHxHEIGHT (e.g. '480x360'); '' = the model's "
                   'native size. Outputs are always at the input image resolution.', True, None),
    'strategy': ('per_frame', 'Temporal strategy; only per_frame (full network on every '
                 'processed frame) for now.', True, None),
    'publish_mask': (True, 'Publish mask (mono8 class ids).', False, None),
    'publish_color_mask': (True, 'Publish color_mask (rgb8 palette colours).', False, None),
    'publish_overlay': (True, 'Publish overlay (rgb8 image blended with color_mask).', False,
                        None),
    'publish_confidence': (True, 'Publish confidence (mono8, max softmax × 255).', False, None),
    'overlay_alpha': (0.5, 'Weight of the colour mask in the overlay, 0..1.', False, (0.0, 1.0)),
    'max_stamp_gap_s': (1.0, 'A forward header-stamp jump above this (seconds) breaks the '
                        'stream: temporal buffers are reset and a WARN diagnostic is raised.',
                        False, (0.0, 3600.0)),
}


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, unknown model, missing weights, bad device)."""


def _stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


class SegmentationNode(Node):
    """Segments every (newest) incoming image and publishes masks, overlays and diagnostics."""

    def __init__(self, **kwargs) -> None:
        super().__init__('segmentation_node', **kwargs)
        self._declare_parameters()
        try:
            self._setup_model()
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            self.get_logger().fatal(f'cannot start: {exc}')
            raise StartupError(str(exc)) from exc

        out_qos = QoSProfile(depth=10)
        self._pubs = {name: self.create_publisher(Image, name, out_qos)
                      for name in ('mask', 'color_mask', 'overlay', 'confidence')}
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', out_qos)

        # Counters and timings (guarded by _cond's lock).
        self._cond = threading.Condition()
        self._slot = None
        self._stop = False
        self.received = self.processed = self.dropped = self.bad_frames = 0
        self.stream_resets = 0
        self._last_reset_reason = ''
        self._stream_guards: dict[str, StreamGuard] = {}  # one per camera (header.frame_id)
        self._timings = {s: deque(maxlen=200) for s in STAGES}
        self._last = (time.monotonic(), 0, 0, 0, 0)  # (t, received, processed, bad, resets)

        self._worker = threading.Thread(target=self._run, name='segmentation_worker',
                                        daemon=True)
        self._worker.start()

        in_qos = QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability,
                            durability=qos_profile_sensor_data.durability,
                            history=qos_profile_sensor_data.history)
        self.create_subscription(Image, 'image', self._on_image, in_qos)
        self.create_subscription(CompressedImage, 'image/compressed', self._on_image, in_qos)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f'ready: model={self.model_name} device={self.segmenter.device} '
            f'input_size={self.segmenter.input_size} strategy={self.strategy}')

    # ---- setup -------------------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        for name, (default, text, read_only, fp_range) in PARAMETERS.items():
            desc = ParameterDescriptor(description=text, read_only=read_only)
            if fp_range is not None:
                desc.type = ParameterType.PARAMETER_DOUBLE
                desc.floating_point_range = [FloatingPointRange(
                    from_value=fp_range[0], to_value=fp_range[1], step=0.0)]
            self.declare_parameter(name, default, desc)

    def _setup_model(self) -> None:
        # Imported here so that `--help`-like failures stay cheap and torch loads only once.
        from vsda_ros.inference import Segmenter, SegmenterConfig, parse_size, resolve_device
        from vsda_ros.models.zoo import load_model
        from vsda_ros.visualize import palette_array

        p = self.get_parameter
        self.model_name = p('model').value
        self.strategy = p('strategy').value
        if self.strategy not in STRATEGIES:
            raise ValueError(f'unknown strategy {self.strategy!r}; available: '
                             f'{", ".join(STRATEGIES)}')
        size = parse_size(p('input_size').value)
        device = p('device').value
        resolve_device(device)  # fail before loading weights
        model = load_model(self.model_name, download=False, progress=False)
        self.segmenter = Segmenter(model, SegmenterConfig(input_size=size, device=device))
        self._lut = palette_array(model.meta.palette)

    # ---- input -------------------------------------------------------------------------------
    def _on_image(self, msg) -> None:
        with self._cond:
            self.received += 1
            if self._slot is not None:
                self.dropped += 1
            self._slot = msg
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._slot is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                msg, self._slot = self._slot, None
            try:
                self._process(msg)
            except ValueError as exc:
                with self._cond:
                    self.bad_frames += 1
                self.get_logger().warning(f'skipping bad frame: {exc}', throttle_duration_sec=5)
            except Exception as exc:  # keep the node alive whatever one frame does
                with self._cond:
                    self.bad_frames += 1
                self.get_logger().error(f'frame failed: {type(exc).__name__}: {exc}',
                                        throttle_duration_sec=5)

    def _check_stream(self, header, rgb: np.ndarray) -> None:
        """Reset the camera's temporal state when its stream breaks (size, stamp order/gap)."""
        guard = self._stream_guards.setdefault(header.frame_id, StreamGuard())
        guard.max_gap_s = float(self.get_parameter('max_stamp_gap_s').value)
        reason = guard.check(_stamp_s(header), (rgb.shape[1], rgb.shape[0]))
        if reason is None:
            return
        # per_frame keeps no buffer; temporal strategies reset theirs here.
        with self._cond:
            self.stream_resets += 1
            self._last_reset_reason = f'camera {header.frame_id!r}: {reason}'
        self.get_logger().warning(f'stream reset, camera {header.frame_id!r}: {reason}',
                                  throttle_duration_sec=5)

    def _wanted(self, name: str) -> bool:
        return (self.get_parameter(f'publish_{name}').value
                and self._pubs[name].get_subscription_count() > 0)

    def _process(self, msg) -> None:
        t0 = time.perf_counter()
        rgb = message_to_rgb(msg)
        t1 = time.perf_counter()
        self._check_stream(msg.header, rgb)
        seg = self.segmenter.segment(rgb)
        t2 = time.perf_counter()
        header = msg.header
        if self._wanted('mask'):
            self._pubs['mask'].publish(numpy_to_image(seg.labels, header))
        want_color, want_overlay = self._wanted('color_mask'), self._wanted('overlay')
        if want_color or want_overlay:
            from vsda_ros.visualize import colorize, overlay
            color = colorize(seg.labels, self._lut)
            if want_color:
                self._pubs['color_mask'].publish(numpy_to_image(color, header))
            if want_overlay:
                alpha = float(self.get_parameter('overlay_alpha').value)
                self._pubs['overlay'].publish(numpy_to_image(overlay(rgb, color, alpha), header))
        if self._wanted('confidence'):
            self._pubs['confidence'].publish(numpy_to_image(seg.confidence, header))
        t3 = time.perf_counter()
        stamp = _stamp_s(header)
        e2e = (self.get_clock().now().nanoseconds * 1e-9 - stamp) * 1e3 if stamp > 0 else None
        with self._cond:
            self.processed += 1
            self._timings['decode'].append((t1 - t0) * 1e3)
            for k in ('preprocess', 'inference', 'postprocess'):
                self._timings[k].append(seg.timings_ms[k])
            # publish = everything after the segmenter returned (colouring, encoding, sending).
            self._timings['publish'].append((t3 - t2) * 1e3)
            if e2e is not None:
                self._timings['end_to_end'].append(e2e)

    # ---- diagnostics -------------------------------------------------------------------------
    def diagnostic_status(self) -> DiagnosticStatus:
        now = time.monotonic()
        with self._cond:
            counts = (self.received, self.processed, self.dropped, self.bad_frames)
            resets, reset_reason = self.stream_resets, self._last_reset_reason
            timings = {k: list(v) for k, v in self._timings.items()}
        t_prev, r_prev, p_prev, b_prev, s_prev = self._last
        self._last = (now, counts[0], counts[1], counts[3], resets)
        dt = max(now - t_prev, 1e-6)
        in_hz, out_hz = (counts[0] - r_prev) / dt, (counts[1] - p_prev) / dt
        values = {'received': counts[0], 'processed': counts[1], 'dropped': counts[2],
                  'bad_frames': counts[3], 'stream_resets': resets, 'input_hz': f'{in_hz:.2f}',
                  'output_hz': f'{out_hz:.2f}'}
        for stage in STAGES:
            v = timings[stage]
            for q in (50, 95):
                values[f'{stage}_p{q}_ms'] = f'{np.percentile(v, q):.2f}' if v else 'n/a'
        values.update(model=self.model_name, strategy=self.strategy,
                      device=str(self.segmenter.device))
        problems = []
        if in_hz > 0 and out_hz < 0.5 * in_hz:
            problems.append(f'output rate {out_hz:.1f} Hz < 50% of input rate {in_hz:.1f} Hz')
        if counts[3] > b_prev:
            problems.append(f'{counts[3] - b_prev} bad frame(s) in the last period')
        if resets > s_prev:
            problems.append(f'stream reset ({reset_reason})')
        status = DiagnosticStatus(
            name=STATUS_NAME, hardware_id=self.get_name(),
            level=DiagnosticStatus.WARN if problems else DiagnosticStatus.OK,
            message='; '.join(problems) if problems else 'OK',
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        return status

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.diagnostic_status()]
        self._diag_pub.publish(msg)

    def stop(self) -> None:
        """Stop the worker thread (waits for the frame in progress)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._worker.join(timeout=5.0)


def main(args=None) -> int:
    """Console entry point; returns the exit status (non-zero when the node cannot start)."""
    rclpy.init(args=args)
    node = None
    status = 0
    try:
        node = SegmentationNode()
        rclpy.spin(node)
    except StartupError:
        status = 1  # already logged by the node
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == '__main__':
    sys.exit(main())
