"""The cameras' side of :class:`~vsda_ros.ros.segmenter_runtime.SegmenterRuntime`: frames in
(the subscription callback: mailbox admission, and the choice of one transport when a camera
arrives on two) and each camera's status out (its ``DiagnosticStatus`` every period on
``/diagnostics``).

:class:`CameraIO` is a mixin, like :class:`~vsda_ros.ros.frame_worker.FramePath`: it uses the
runtime's state (``node``, ``_cond``, ``_cameras``, ``_subs``, ``_checked``, ``_diag_pub``,
``model_name``, ``strategy``, ``segmenter``, ``modules``). The callback never blocks on
anything but the runtime's lock.
"""

from __future__ import annotations

import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray

from vsda_ros.ros import diagnostics, processing
from vsda_ros.ros.cameras import Camera
from vsda_ros.ros.processing import stamp_ns

#: seconds between two transport decisions triggered by frames of the transport not in use
TRANSPORT_RECHECK_S = 0.2


class CameraIO:
    """Frames in, status out, per camera (see the module docstring for the state it uses)."""

    node: Any
    _cond: Any
    _cameras: dict[str, Camera]
    _subs: dict[str, dict[str, Any]]
    _checked: dict[str, float]
    _diag_pub: Any
    model_name: str
    strategy: str
    segmenter: Any
    modules: Any

    # ---- input -------------------------------------------------------------------------------
    def _on_image(self, cam: Camera, transport: str, msg: Any) -> None:
        """A frame on one of ``cam``'s transports: into its mailbox unless it is refused
        (other transport, or a stamp already taken from the other one; see
        :meth:`Camera.admit`)."""
        arrival = time.perf_counter()
        with self._cond:
            if (
                transport != cam.transport
                and arrival - self._checked[cam.key] > TRANSPORT_RECHECK_S
            ):
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
            self.node.get_logger().info(
                f'camera {cam.topic!r}: transport {before} -> {cam.transport} (publishers {counts})'
            )

    # ---- diagnostics -------------------------------------------------------------------------
    def node_info(self) -> diagnostics.NodeInfo:
        """What every camera's status reports about the node."""
        return diagnostics.NodeInfo(
            name=self.node.get_name(),
            model=self.model_name,
            strategy=self.strategy,
            device=str(self.segmenter.device),
            backend=self.segmenter.backend,
            precision=self.segmenter.precision,
            temporal_modules=','.join(self.modules.loaded()) or 'none',
            cameras=len(self._cameras),
        )

    def diagnostic_status(self, cam: Camera) -> Any:
        """This camera's ``DiagnosticStatus`` for the last period (counters are totals since
        load); starts the next period."""
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
            topic=cam.topic,
            now=stats,
            prev=prev,
            publishers=publishers,
            silent_s=cam.silent_s,
            timings=timings,
            reset_reasons=reasons,
            last_bad=last_bad,
            transport=transport,
            end_to_end_note=e2e_note,
            keyframe_interval=interval,
            rate_control=rate_why,
        )
        if diagnostics.silence_began(period):  # log once per silent episode
            self.node.get_logger().warning(diagnostics.silent_text(period))
        return diagnostics.camera_status(period, self.node_info())

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.status = [self.diagnostic_status(c) for c in self._cameras.values()]
        self._diag_pub.publish(msg)
