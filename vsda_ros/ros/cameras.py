"""Cameras of ``segmentation_node``: topic layout, one-slot mailboxes, counters, scheduling.

No rclpy here (message types only): the layout, the mailbox accounting and the order in which
the worker serves cameras are tested without a ROS context.

Accounting, per camera: every frame that arrives is ``received``; it is later ``processed``,
``dropped`` (overwritten in the mailbox by a newer frame, or too old in latency mode) or counted
in ``bad_frames`` — so ``received = processed + dropped + bad_frames`` (± the one in flight).
The node guards every :class:`Camera` with one lock (its condition variable); nothing here
locks by itself.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sensor_msgs.msg import CompressedImage, Image

#: rolling window of stage times per camera (frames) behind the p50/p95 in /diagnostics
TIMING_WINDOW = 200
FIXED_STAGES = ('queue_wait', 'decode', 'preprocess', 'inference', 'postprocess', 'publish',
                'end_to_end')


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


def out_topic(ns: str, name: str) -> str:
    """An output's topic name in camera namespace ``ns`` (relative to the node when ``ns`` is
    empty: ``mask``; else ``/cam_front/mask``)."""
    return f'{ns}/{name}' if ns else name


@dataclass(frozen=True)
class CameraStats:
    """One camera's counters at one moment (totals since start) — what /diagnostics compares
    between two periods."""

    t: float = 0.0  # time.monotonic() of the snapshot
    received: int = 0
    processed: int = 0
    dropped: int = 0
    bad_frames: int = 0
    stream_resets: int = 0
    keyframes: int = 0


class Mailbox:
    """One slot holding a camera's newest frame: ``(message, arrival perf_counter)``.

    :meth:`put` never blocks and never fails; it overwrites a frame that was not taken yet.
    """

    def __init__(self) -> None:
        self._slot: tuple[Any, float] | None = None

    def put(self, msg: Any, arrival: float) -> bool:
        """Store the newest frame; returns True when it replaced one not yet taken (dropped)."""
        replaced = self._slot is not None
        self._slot = (msg, arrival)
        return replaced

    def take(self) -> tuple[Any, float] | None:
        """The frame and its arrival time, emptying the slot; None when empty."""
        job, self._slot = self._slot, None
        return job

    def waited(self, now: float) -> float | None:
        """Seconds the pending frame has waited at ``now``; None when empty."""
        return None if self._slot is None else now - self._slot[1]

    def __bool__(self) -> bool:
        return self._slot is not None


@dataclass
class Camera:
    """One output namespace: its publishers, strategy state, mailbox and counters."""

    key: str                       # output namespace ('' = the node's own)
    pubs: dict                     # output name → publisher
    strategy: Any                  # its temporal strategy (own frame buffer)
    topic: str = ''                # its first input topic, resolved (for logs, diagnostics)
    mailbox: Mailbox = field(default_factory=Mailbox)
    received: int = 0
    processed: int = 0
    dropped: int = 0
    bad_frames: int = 0
    keyframes: int = 0
    stream_resets: int = 0
    reset_reasons: list[str] = field(default_factory=list)  # since the last diagnostics period
    timings: dict[str, deque] = field(
        default_factory=lambda: {s: deque(maxlen=TIMING_WINDOW) for s in FIXED_STAGES})
    last: CameraStats = field(default_factory=CameraStats)  # at the last diagnostics period
    last_bad: str = ''     # why the latest bad frame was skipped
    silent_s: float = 0.0  # how long publishers have been matched without a frame arriving

    def stats(self, t: float) -> CameraStats:
        """The counters now, stamped ``t``."""
        return CameraStats(t, self.received, self.processed, self.dropped, self.bad_frames,
                           self.stream_resets, self.keyframes)

    def arrive(self, msg: Any, arrival: float) -> None:
        """A frame arrived: count it; the one it overwrote (if any) counts as dropped."""
        self.received += 1
        self.dropped += self.mailbox.put(msg, arrival)

    def record(self, stages_ms: dict[str, float], keyframe: bool) -> None:
        """A frame was processed: count it and add its stage times (ms) to the windows."""
        self.processed += 1
        self.keyframes += int(keyframe)
        for stage, ms in stages_ms.items():
            self.timings.setdefault(stage, deque(maxlen=TIMING_WINDOW)).append(ms)

    def bad(self, why: str | None) -> None:
        """A frame was skipped as bad (``why``: the reason, None when it failed otherwise)."""
        self.bad_frames += 1
        if why is not None:
            self.last_bad = why


class Scheduler:
    """Which camera the worker serves next: round robin over cameras with a pending frame.

    In latency mode (``limit_s`` > 0) a frame that has waited longer than ``limit_s`` is
    dropped (counted in its camera's ``dropped``) and that camera is skipped until its next
    frame arrives.
    """

    def __init__(self, cameras: dict[str, Camera]) -> None:
        self._cameras = cameras
        self._order = list(cameras)
        self._next = 0

    @property
    def order(self) -> list[str]:
        """The camera keys in serving order (the layout's order)."""
        return list(self._order)

    def take(self, now: float, limit_s: float = 0.0) -> tuple[Camera, Any, float] | None:
        """``(camera, message, arrival)`` of the next pending frame, or None when none is
        pending. Call with the node's lock held; ``now`` is ``time.perf_counter()``."""
        n = len(self._order)
        for i in range(n):
            cam = self._cameras[self._order[(self._next + i) % n]]
            waited = cam.mailbox.waited(now)
            if waited is None:
                continue
            if limit_s > 0 and waited > limit_s:
                cam.mailbox.take()
                cam.dropped += 1
                continue
            self._next = (self._next + i + 1) % n
            msg, arrival = cam.mailbox.take()
            return cam, msg, arrival
        return None
