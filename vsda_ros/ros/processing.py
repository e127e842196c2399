"""How ``segmentation_node`` turns one frame into outputs: model set-up, checks, stage timing.

* :func:`load_pipeline` — the model, its segmenter (warmed up) and temporal modules from the
  node's read-only parameters, through the shared factory
  :func:`vsda_ros.pipeline.build_pipeline` (the same objects ``vsda segment`` builds).
* :func:`check_size` — refuse a frame above ``max_input_pixels`` before decoding it.
* :class:`StageClock` — every stage of a frame timed exactly once, in order; the node records
  ``clock.ms`` in one place (the rolling windows behind /diagnostics and the ``timing`` topic).
* Real time (issue 26): strategies come from :meth:`Pipeline.strategy` (``keyframe`` in line
  or with keyframes in the background, flow at a reduced resolution),
  :func:`apply_rate_control` (the
  :class:`~vsda_ros.temporal.rate_control.RateController` behind ``target_rate``, attached,
  retuned or detached), :func:`rate_status` (interval and reason for /diagnostics),
  :func:`kind_windows` (per-kind latency windows).

No rclpy here; torch is imported only inside :func:`load_pipeline`.
"""

from __future__ import annotations

import time
from typing import Any

from sensor_msgs.msg import Image

from vsda_ros.data.dims import message_pixels


def stamp_s(header: Any) -> float:
    """A ``std_msgs/Header``'s stamp in seconds (0.0 for an unset stamp)."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def check_size(msg: Any, limit: int) -> None:
    """Raise ``ValueError`` for a frame above ``limit`` pixels (width × height), read from the
    message without decoding it; a frame whose size cannot be read passes (decoding checks it).
    """
    pixels = message_pixels(msg)
    if pixels is not None and pixels > limit:
        what = (
            f'{msg.width}x{msg.height}'
            if isinstance(msg, Image)
            else f'compressed {msg.format or "image"}'
        )
        raise ValueError(
            f'frame too large: {what} = {pixels / 1e6:.1f} Mpx > '
            f'max_input_pixels {limit / 1e6:.1f} Mpx (raise the parameter if '
            'the memory is there: ~80 MB per Mpx)'
        )


class StageClock:
    """Times the stages of one frame, each once: :meth:`lap` closes the stage that began at
    the previous mark (the first one at ``start``, e.g. the frame's arrival).

    ``ms`` maps stage → milliseconds in the order the stages ran.
    """

    def __init__(self, start: float) -> None:
        self._mark = start
        self.ms: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        """End ``stage`` now; the next stage begins now."""
        now = time.perf_counter()
        self.ms[stage] = (now - self._mark) * 1e3
        self._mark = now

    def add(self, stages_ms: dict[str, float]) -> None:
        """Stages timed elsewhere (the strategy's preprocess / inference / postprocess); the
        next stage begins now."""
        self.ms.update(stages_ms)
        self._mark = time.perf_counter()


def load_pipeline(
    model: str,
    input_size: str,
    device: str,
    backend: str,
    precision: str,
    temporal_weights: str,
    warmup: int = 2,
    num_threads: int = 0,
) -> Any:
    """The node's :class:`vsda_ros.pipeline.Pipeline` from its read-only parameters (no
    downloads, warmed up ``warmup`` times at the input size: the first passes allocate and
    tune; without that the first camera frames take seconds, pile up drops and look like a
    stream break to the temporal strategy).

    Raises ``ValueError`` (bad input size, device, backend, precision, unknown model),
    ``FileNotFoundError`` (weights not in ``VSDA_DATA_DIR`` / the cache, a missing checkpoint)
    or ``RuntimeError`` (a file that cannot be used, a backend that cannot run here), each with
    a one-line message (see :func:`vsda_ros.pipeline.build_pipeline`). ``num_threads`` > 0 sets
    torch's intra-op threads (process-wide) before anything is compiled, so compiled graphs
    take the same count; 0 leaves torch's default (``OMP_NUM_THREADS``).
    """
    from vsda_ros.inference import parse_size
    from vsda_ros.pipeline import PipelineConfig, build_pipeline

    if num_threads > 0:
        import torch

        torch.set_num_threads(int(num_threads))

    return build_pipeline(
        PipelineConfig(
            model=model,
            input_size=parse_size(input_size),
            device=device,
            backend=backend,
            precision=precision,
            temporal_weights=temporal_weights,
            download=False,
            progress=False,
            warmup=warmup,
        )
    )


#: an end-to-end latency above this (s) means the stamps come from another clock
MAX_END_TO_END_S = 3600.0
#: a stamp this far (s) ahead of the node's clock means another clock (small skews pass)
MAX_AHEAD_S = 0.5
NOT_COMPARABLE = 'end_to_end: clock and stamps not comparable'


def stamp_ns(header: Any) -> int:
    """A ``std_msgs/Header``'s stamp in integer nanoseconds (0 for an unset stamp)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def frame_format(msg: Any) -> str:
    """The format key of a frame for the stream guard: an ``Image``'s encoding, a
    ``CompressedImage``'s ``format`` field (a change of either resets the temporal state)."""
    return str(msg.encoding if isinstance(msg, Image) else msg.format)


def end_to_end_ms(now_ns: int, stamp_ns_: int, sim_time: bool) -> tuple[float | None, str]:
    """End-to-end latency (ms) of a frame stamped ``stamp_ns_`` at ``now_ns`` on the node's
    ROS clock (sim time when ``sim_time``: ``use_sim_time`` with ``/clock``), and ``''``; or
    ``(None, why)`` when clock and stamp cannot be compared: zero stamps, sim time before the
    first ``/clock``, a stamp more than :data:`MAX_AHEAD_S` ahead of the clock or more than
    :data:`MAX_END_TO_END_S` behind it (a bag replayed without restamping, another clock).
    A stamp slightly ahead (clock skew, ``/clock`` granularity) gives a small negative value.
    Never raises."""
    if stamp_ns_ <= 0:
        return None, f'{NOT_COMPARABLE} (header stamps are zero)'
    if sim_time and now_ns <= 0:
        return None, f'{NOT_COMPARABLE} (use_sim_time is on and no /clock received)'
    diff_s = (now_ns - stamp_ns_) * 1e-9
    if diff_s < -MAX_AHEAD_S or diff_s > MAX_END_TO_END_S:
        which = 'sim (/clock)' if sim_time else 'system'
        where = 'behind' if diff_s > 0 else 'ahead of'
        return None, (
            f"{NOT_COMPARABLE} (stamps {abs(diff_s):.1f} s {where} the node's "
            f'{which} clock: a bag replayed without restamping? use_sim_time with '
            '/clock compares them)'
        )
    return diff_s * 1e3, ''


# ---- real time: keyframes in the background, rate control, per-kind latency -------------------
def apply_rate_control(
    strategy: Any, target_rate: float, max_interval: int, interval: int, cameras: int = 1
) -> None:
    """Attach, retune or detach ``strategy``'s rate controller (keyframe strategies only).

    ``target_rate`` > 0 (Hz, each camera's rate): the controller picks the interval in
    ``[1, max_interval]`` from the strategy's measured key and non-key costs (plus the node's
    overhead, :func:`observe_overhead`) so that the worker keeps up; with several cameras
    sharing the one worker each gets ``1 / (cameras × target_rate)`` per frame. A controller
    already attached keeps its measured costs. ``0`` detaches it and puts ``interval`` (the
    ``keyframe_interval`` parameter) back. Never raises for values the parameter ranges allow.
    """
    if not hasattr(strategy, 'attach_rate_controller'):
        return
    from vsda_ros.temporal.rate_control import RateControlConfig, RateController

    ctrl = strategy.rate_controller
    if target_rate <= 0:
        if ctrl is not None:
            strategy.attach_rate_controller(None)
        strategy.config.keyframe_interval = int(interval)
        return
    rate = float(target_rate) * max(1, int(cameras))
    if ctrl is None:
        strategy.attach_rate_controller(
            RateController(
                RateControlConfig(target_rate=rate, max_interval=int(max_interval)),
                interval=int(interval),
            )
        )
    else:
        ctrl.config.target_rate, ctrl.config.max_interval = rate, int(max_interval)
        strategy.config.keyframe_interval = ctrl.interval  # the controller's, not the param's


def observe_overhead(strategy: Any, ms: float) -> None:
    """Feed the node's per-frame cost outside the strategy (decode, publish) to its rate
    controller, if one is attached; used from the next decision on."""
    ctrl = getattr(strategy, 'rate_controller', None)
    if ctrl is not None and ms >= 0:
        ctrl.observe('overhead', float(ms))


def rate_status(strategy: Any) -> tuple[int | None, str]:
    """(keyframe interval in use, why) for /diagnostics; ``(None, '')`` for a strategy without
    keyframes."""
    config = getattr(strategy, 'config', None)
    if not hasattr(strategy, 'attach_rate_controller') or config is None:
        return None, ''
    interval = int(config.keyframe_interval)
    if strategy.rate_controller is None:
        return interval, 'off (target_rate 0): keyframe_interval as set'
    decision = strategy.rate_decision
    return interval, decision.reason if decision is not None else 'no frame yet'


def kind_windows(kind: str, step_ms: float, e2e_ms: float | None) -> dict[str, float]:
    """A frame's per-kind latency entries for the rolling windows: ``step_<kind>`` (the
    strategy's wall time) and ``end_to_end_<kind>`` (when comparable); kinds are
    :data:`vsda_ros.frames.FRAME_KINDS` (``key``, ``propagated``, ``pending``, ``reanchored``)."""
    out = {f'step_{kind}': float(step_ms)}
    if e2e_ms is not None:
        out[f'end_to_end_{kind}'] = float(e2e_ms)
    return out
