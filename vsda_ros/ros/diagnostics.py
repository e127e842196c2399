"""``/diagnostics`` of ``segmentation_node``: a camera's period → ``DiagnosticStatus``.

Pure functions of plain data (:class:`CameraPeriod`, :class:`NodeInfo`): no node, no rclpy
context, no clock. The node gathers a period under its lock once a second and publishes what
:func:`camera_status` returns; ``test/test_node_diagnostics.py`` checks the levels, messages
and keys without ROS running.

Status keys (values are strings): ``topic``, ``publishers``, ``received``, ``processed``,
``dropped``, ``bad_frames``, ``stream_resets``, ``keyframes``, ``keyframe_ratio``,
``input_hz``, ``output_hz``, ``transport`` (``raw`` / ``compressed`` in use, ``none yet``),
``ignored_other_transport`` (frames of the transport not in use, or a stamp already taken from
the other one: not in ``received``), ``<stage>_p50_ms`` / ``<stage>_p95_ms`` per stage (``n/a``
before the first frame; ``end_to_end`` also ``n/a`` while the node's clock and the header stamps
cannot be compared, with ``end_to_end_note`` saying why), ``model``, ``strategy``, ``device``,
``backend``, ``precision``, ``temporal_modules``; for keyframe strategies ``keyframe_interval``
(the interval in use, chosen by the rate controller when ``target_rate`` > 0) and
``rate_control`` (why), and per frame kind (``key``, ``propagated``, ``pending``,
``reanchored``) ``step_<kind>_p50_ms`` / ``_p95_ms`` (the strategy's time) and
``end_to_end_<kind>_p50_ms`` / ``_p95_ms``. Level WARN (with the reasons joined by ``; `` as
message) when the output rate is below half the input rate, a bad frame was skipped, the stream
was reset, or publishers are matched but no frame arrived for :data:`SILENT_WARN_S`; OK
otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from vsda_ros.ros.cameras import CameraStats

STATUS_NAME = 'vsda_ros: segmentation'
#: seconds with matched publishers and no frame before /diagnostics warns
SILENT_WARN_S = 5.0


@dataclass(frozen=True)
class NodeInfo:
    """What the node reports about itself in every camera's status."""

    name: str  # the node's name (the status' hardware_id)
    model: str
    strategy: str
    device: str
    backend: str
    precision: str
    temporal_modules: str  # comma-separated loaded modules, or 'none'
    cameras: int = 1  # with more than one, each status name carries its topic


@dataclass(frozen=True)
class CameraPeriod:
    """One camera over one diagnostics period (from ``prev`` to ``now``)."""

    topic: str  # the camera's first input topic, resolved
    now: CameraStats
    prev: CameraStats
    publishers: int = 0  # publishers matched on its input topics
    silent_s: float = 0.0  # from :func:`silent_seconds`, this period included
    timings: dict[str, list[float]] = field(default_factory=dict)  # stage → recent ms
    reset_reasons: list[str] = field(default_factory=list)  # stream resets this period
    last_bad: str = ''  # why the latest bad frame was skipped
    transport: str = ''  # the transport in use ('' = none seen yet)
    end_to_end_note: str = ''  # why end_to_end is not reported ('' = it is)
    keyframe_interval: int | None = None  # keyframe strategies: the interval in use
    rate_control: str = ''  # why that interval ('' = no keyframe strategy)

    @property
    def dt(self) -> float:
        """The period's length in seconds (never 0)."""
        return max(self.now.t - self.prev.t, 1e-6)


def silent_seconds(silent_s: float, publishers: int, now: CameraStats, prev: CameraStats) -> float:
    """How long publishers have been matched without a frame, after the period ``prev`` →
    ``now`` (``silent_s``: the value after the previous period); 0 once a frame arrives or no
    publisher is matched."""
    dt = max(now.t - prev.t, 1e-6)
    return silent_s + dt if publishers and now.received == prev.received else 0.0


def silent_text(period: CameraPeriod) -> str | None:
    """The warning for a camera whose publishers send nothing, or None while it is not due."""
    if period.silent_s < SILENT_WARN_S:
        return None
    return (
        f'{period.publishers} publisher(s) matched on {period.topic} but no frame arrived '
        f'for {period.silent_s:.0f} s: nothing is being sent, or the frames are larger '
        'than the DDS transport delivers (Fast DDS drops best-effort samples bigger than '
        "the sender's shared-memory segment silently; give the camera process this "
        "package's config/fastdds_profile.xml, or send image/compressed)"
    )


def silence_began(period: CameraPeriod) -> bool:
    """True in the one period where :func:`silent_text` first becomes due (log it once)."""
    return SILENT_WARN_S <= period.silent_s < SILENT_WARN_S + period.dt


def _problems(period: CameraPeriod, in_hz: float, out_hz: float) -> list[str]:
    now, prev = period.now, period.prev
    problems = []
    if in_hz > 0 and out_hz < 0.5 * in_hz:
        problems.append(f'output rate {out_hz:.1f} Hz < 50% of input rate {in_hz:.1f} Hz')
    if now.bad_frames > prev.bad_frames:
        problems.append(
            f'{now.bad_frames - prev.bad_frames} bad frame(s) in the last period '
            f'(last: {period.last_bad})'
        )
    silent = silent_text(period)
    if silent is not None:
        problems.append(silent)
    reasons = period.reset_reasons
    if reasons:
        more = f' (+{len(reasons) - 3} more)' if len(reasons) > 3 else ''
        problems.append(f'stream reset ×{len(reasons)}: ' + '; '.join(reasons[:3]) + more)
    return problems


def camera_status(period: CameraPeriod, info: NodeInfo) -> DiagnosticStatus:
    """One camera's ``DiagnosticStatus`` for ``period`` (counters are totals since start,
    rates and the keyframe ratio are over the period). Never raises for consistent input."""
    now, prev = period.now, period.prev
    in_hz = (now.received - prev.received) / period.dt
    out_hz = (now.processed - prev.processed) / period.dt
    period_processed = now.processed - prev.processed
    values: dict[str, object] = {
        'topic': period.topic,
        'publishers': period.publishers,
        'received': now.received,
        'processed': now.processed,
        'dropped': now.dropped,
        'bad_frames': now.bad_frames,
        'stream_resets': now.stream_resets,
        'keyframes': now.keyframes,
        'keyframe_ratio': (
            f'{(now.keyframes - prev.keyframes) / period_processed:.3f}'
            if period_processed
            else 'n/a'
        ),
        'input_hz': f'{in_hz:.2f}',
        'output_hz': f'{out_hz:.2f}',
        'transport': period.transport or 'none yet',
        'ignored_other_transport': now.ignored_other_transport,
    }
    for stage, v in period.timings.items():
        for q in (50, 95):
            values[f'{stage}_p{q}_ms'] = f'{np.percentile(v, q):.2f}' if v else 'n/a'
    if period.end_to_end_note:
        values['end_to_end_note'] = period.end_to_end_note
    if period.keyframe_interval is not None:
        values['keyframe_interval'] = period.keyframe_interval
        values['rate_control'] = period.rate_control
    values.update(
        model=info.model,
        strategy=info.strategy,
        device=info.device,
        backend=info.backend,
        precision=info.precision,
        temporal_modules=info.temporal_modules,
    )
    problems = _problems(period, in_hz, out_hz)
    name = STATUS_NAME if info.cameras == 1 else f'{STATUS_NAME} ({period.topic})'
    return DiagnosticStatus(
        name=name,
        hardware_id=info.name,
        level=DiagnosticStatus.WARN if problems else DiagnosticStatus.OK,
        message='; '.join(problems) if problems else 'OK',
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )


def timing_status(
    stages_ms: dict[str, float], keyframe: bool, hardware_id: str, kind: str = ''
) -> DiagnosticStatus:
    """One processed frame's stage times (ms, 3 decimals) for the ``timing`` topic, with
    ``keyframe`` as 1.000 / 0.000 last; the frame's kind (``Segmentation.kind``: ``key``,
    ``propagated``, ``pending``, ``reanchored``) is the status' ``message`` (values stay
    numbers)."""
    values = {**stages_ms, 'keyframe': float(keyframe)}
    return DiagnosticStatus(
        name=f'{STATUS_NAME} timing',
        hardware_id=hardware_id,
        message=kind,
        values=[KeyValue(key=k, value=f'{v:.3f}') for k, v in values.items()],
    )
