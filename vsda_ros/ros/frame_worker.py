"""The worker half of :class:`~vsda_ros.ros.segmenter_runtime.SegmenterRuntime`: take the next
frame, segment it, publish the outputs, record its stage times.

:class:`FramePath` is a mixin: it runs in the runtime's worker thread and uses the runtime's
state (``node``, ``_cond``, ``_pub_lock``, ``_stop``, ``_live``, ``_scheduler``, ``_lut``,
``_writers``, ``_timing_pubs``). Nothing here raises out of :meth:`FramePath._run`: a bad frame
is counted and logged (throttled), any other failure of one frame too, and a stop (or the
context going away) ends the loop without publishing the frame in progress.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

from diagnostic_msgs.msg import DiagnosticArray

from vsda_ros.ros import diagnostics, processing
from vsda_ros.ros.cameras import Camera
from vsda_ros.ros.conversions import message_to_rgb
from vsda_ros.ros.outputs import OutputWriter
from vsda_ros.ros.processing import (
    StageClock,
    check_size,
    end_to_end_ms,
    frame_format,
    stamp_ns,
    stamp_s,
)


class _Abandoned(Exception):
    """The runtime is stopping: the worker drops its frame without publishing."""


class FramePath:
    """Worker loop and one frame's path (see the module docstring for the state it uses)."""

    node: Any
    _cond: Any
    _pub_lock: Any
    _stop: bool
    _live: Any
    _scheduler: Any
    _lut: Any
    _writers: dict[str, OutputWriter]
    _timing_pubs: dict[str, Any]

    def _take(self) -> tuple[Camera, Any, float] | None:
        """The next pending frame (see :class:`Scheduler`); call with the lock held."""
        limit_s = float(self._live['max_queue_wait_ms']) * 1e-3
        return self._scheduler.take(time.perf_counter(), limit_s)

    def _next_job(self) -> tuple[Camera, Any, float] | None:
        """Wait for the next frame to serve; None once the runtime stops."""
        with self._cond:
            job = self._take()
            while job is None and not self._stop:
                # a camera held back by its rate cap wakes the worker when it is due
                self._cond.wait(self._scheduler.wait_s(time.perf_counter()))
                job = self._take()
            return None if self._stop else job

    def _run(self) -> None:
        log = self.node.get_logger()
        while True:
            job = self._next_job()
            if job is None:
                return
            cam, msg, arrival = job
            start = time.perf_counter()
            try:
                self._process(cam, msg, arrival)
            except _Abandoned:
                return  # stopping: the frame in progress is dropped, nothing published
            except ValueError as exc:
                with self._cond:
                    cam.bad(str(exc))
                log.warning(f'skipping bad frame: {exc}', throttle_duration_sec=5)
            except Exception as exc:  # noqa: BLE001 - keep the node alive whatever a frame does
                if self._stop or not self.node.context.ok():
                    return  # the context went away under the frame: shutdown, not a failure
                with self._cond:
                    cam.bad(None)
                log.error(f'frame failed: {type(exc).__name__}: {exc}', throttle_duration_sec=5)
            finally:
                with self._cond:
                    done = time.perf_counter()
                    self._scheduler.charge(cam, done - start, done)

    def _process(self, cam: Camera, msg: Any, arrival: float) -> None:
        """Decode, segment, publish and record one frame; ``ValueError`` for a bad frame,
        :class:`_Abandoned` once the runtime stops."""
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
        self.node.get_logger().warning(f'stream reset, {reason}', throttle_duration_sec=5)

    def _wanted(self, cam: Camera, name: str) -> bool:
        return bool(self._live[f'publish_{name}']) and cam.pubs[name].get_subscription_count() > 0

    @contextmanager
    def _rcl(self) -> Iterator[None]:
        """Hold the publish lock for a block of rcl calls; :class:`_Abandoned` once stopping."""
        with self._pub_lock:
            if self._stop or not self.node.context.ok():
                raise _Abandoned
            yield

    def _publish_outputs(self, cam: Camera, seg: Any, rgb: Any, header: Any) -> None:
        """Publish the outputs someone subscribes to (and whose switch is on), mask first;
        images are built outside the publish lock, sent under it (see
        :class:`~vsda_ros.ros.outputs.OutputWriter`)."""
        writer = self._writers.get(cam.key)
        if writer is None:
            writer = self._writers[cam.key] = OutputWriter(self._lut)
        writer.publish(
            cam.pubs,
            seg,
            rgb,
            header,
            float(self._live['overlay_alpha']),
            lambda name: self._wanted(cam, name),
            self._rcl,
        )

    def _record(
        self,
        cam: Camera,
        header: Any,
        stages: dict[str, float],
        keyframe: bool,
        kind: str = '',
        step_ms: float = 0.0,
    ) -> None:
        """The one place a frame's stage times go: the ``timing`` topic (when on) and the
        camera's rolling windows (with the end-to-end latency from the header stamp)."""
        with self._rcl():
            timing_pub = self._timing_pubs.get(cam.key)
            if timing_pub is not None:
                timing_pub.publish(
                    DiagnosticArray(
                        header=header,
                        status=[
                            diagnostics.timing_status(stages, keyframe, self.node.get_name(), kind)
                        ],
                    )
                )
        windows = dict(stages)
        clock = self.node.get_clock()
        e2e, note = end_to_end_ms(
            clock.now().nanoseconds, stamp_ns(header), bool(clock.ros_time_is_active)
        )
        if e2e is not None:
            windows['end_to_end'] = e2e
        if kind:
            windows.update(processing.kind_windows(kind, step_ms, e2e))
        if note and not cam.e2e_note:
            self.node.get_logger().info(f'camera {cam.topic!r}: {note}')
        with self._cond:
            cam.record(windows, keyframe)
            if note:
                cam.timings['end_to_end'].clear()  # never mix comparable and other figures
            cam.e2e_note = note
