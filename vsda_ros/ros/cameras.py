"""Cameras of ``segmentation_node``: topic layout, one-slot mailboxes, counters, scheduling.

No rclpy here (message types only): the layout, the mailbox accounting and the order in which
the worker serves cameras are tested without a ROS context.

One camera may arrive on two transports (``X`` raw, ``X/compressed``): it uses one at a time
(:meth:`Camera.select`, :meth:`Camera.admit`); frames of the other are ignored, not received.

Accounting, per camera: every frame that arrives is ``received``; it is later ``processed``,
``dropped`` (overwritten in the mailbox by a newer frame, or too old in latency mode) or counted
in ``bad_frames`` — so ``received = processed + dropped + bad_frames`` (± the one in flight).
The node guards every :class:`Camera` with one lock (its condition variable); nothing here
locks by itself.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sensor_msgs.msg import CompressedImage, Image

#: rolling window of stage times per camera (frames) behind the p50/p95 in /diagnostics
TIMING_WINDOW = 200
#: stamps remembered per camera to refuse a second output for one (camera, stamp)
RECENT_STAMPS = 32
FIXED_STAGES = (
    'queue_wait',
    'decode',
    'preprocess',
    'inference',
    'postprocess',
    'publish',
    'end_to_end',
)


def camera_layout(image_topics: list[str]) -> list[tuple[str, type, str]]:
    """``image_topics`` → [(input topic, message type, output namespace)].

    Raises ``ValueError`` on an empty list, empty names, duplicates, or two cameras sharing an
    output namespace.
    A topic ``X`` and its ``X/compressed`` sibling are one camera (one state, one set of
    outputs). The default ``['image', 'image/compressed']`` is the relative pair publishing
    relative outputs.
    """
    if not image_topics:
        raise ValueError(
            'image_topics is empty: give at least one camera topic (default: '
            "['image', 'image/compressed'])"
        )
    layout: list[tuple[str, type, str]] = []
    seen: dict[str, tuple[str, str]] = {}  # namespace → (base topic, first name)
    for topic in image_topics:
        topic = topic.strip()
        if not topic or topic.endswith('/'):
            raise ValueError(f'image_topics: bad topic name {topic!r}')
        compressed = topic.endswith('/compressed')
        base = topic[: -len('/compressed')] if compressed else topic
        ns = base.rsplit('/', 1)[0] if '/' in base else ''
        if ns in seen and seen[ns][0] != base:
            raise ValueError(
                f'image_topics: {seen[ns][1]!r} and {topic!r} would publish on the '
                f'same outputs (namespace {ns or "<node>"!r}); give each camera '
                'its own namespace'
            )
        if any(t == topic for t, _, _ in layout):
            raise ValueError(f'image_topics: {topic!r} is listed twice')
        seen.setdefault(ns, (base, topic))
        layout.append((topic, CompressedImage if compressed else Image, ns))
    return layout


TRANSPORTS = ('auto', 'raw', 'compressed')


def camera_inputs(
    layout: list[tuple[str, type, str]], transport: str
) -> dict[str, list[tuple[str, type, str]]]:
    """Camera namespace → the [(topic, message type, transport)] to subscribe, by the
    image_transport convention: a listed ``X`` or ``X/compressed`` names the camera ``X``;
    ``transport`` ``raw`` subscribes ``X`` only, ``compressed`` ``X/compressed`` only, ``auto``
    the transports listed for that camera (both when both are listed; the node then uses one at
    a time, see :meth:`Camera.select`). Raises ``ValueError`` for an unknown ``transport``.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f'transport must be one of {", ".join(TRANSPORTS)}, got {transport!r}')
    listed: dict[str, dict[str, str]] = {}  # ns → {transport: topic as listed}
    for topic, msg_type, ns in layout:
        kind = 'compressed' if msg_type is CompressedImage else 'raw'
        listed.setdefault(ns, {})[kind] = topic
    out = {}
    for ns, topics in listed.items():
        base = topics.get('raw') or topics['compressed'][: -len('/compressed')]
        kinds = (
            [transport]
            if transport != 'auto'
            else [k for k in ('raw', 'compressed') if k in topics]
        )
        out[ns] = [
            (
                base if k == 'raw' else f'{base}/compressed',
                Image if k == 'raw' else CompressedImage,
                k,
            )
            for k in kinds
        ]
    return out


def parse_priorities(text: str, layout: list[tuple[str, type, str]]) -> dict[str, float]:
    """``camera_priorities`` (``'CAMERA=WEIGHT, ...'``, a camera named by its namespace or any
    of its listed topics) → namespace → weight (cameras not named: 1.0). Raises ``ValueError``
    for an unknown camera, a weight that is not a positive number, or a malformed item."""
    names = {ns: ns for _, _, ns in layout}
    names.update({topic: ns for topic, _, ns in layout})
    weights = {ns: 1.0 for _, _, ns in layout}
    for item in filter(None, (i.strip() for i in (text or '').split(','))):
        key, sep, value = item.rpartition('=')
        try:
            weight = float(value)
        except ValueError:
            weight = float('nan')
        if not sep or key.strip() not in names or not weight > 0 or weight == float('inf'):
            raise ValueError(
                f'camera_priorities: bad item {item!r} (want CAMERA=WEIGHT, a '
                f'camera of image_topics, weight > 0; cameras: '
                f'{", ".join(repr(n) for n in names)})'
            )
        weights[names[key.strip()]] = weight
    return weights


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
    ignored_other_transport: int = 0


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

    key: str  # output namespace ('' = the node's own)
    pubs: dict  # output name → publisher
    strategy: Any  # its temporal strategy (own frame buffer)
    topic: str = ''  # its first input topic, resolved (for logs, diagnostics)
    mailbox: Mailbox = field(default_factory=Mailbox)
    received: int = 0
    processed: int = 0
    dropped: int = 0
    bad_frames: int = 0
    keyframes: int = 0
    stream_resets: int = 0
    reset_reasons: list[str] = field(default_factory=list)  # since the last diagnostics period
    timings: dict[str, deque] = field(
        default_factory=lambda: {s: deque(maxlen=TIMING_WINDOW) for s in FIXED_STAGES}
    )
    last: CameraStats = field(default_factory=CameraStats)  # at the last diagnostics period
    last_bad: str = ''  # why the latest bad frame was skipped
    silent_s: float = 0.0  # how long publishers have been matched without a frame arriving
    transports: tuple[str, ...] = ('raw',)  # subscribed transports ('raw', 'compressed')
    transport: str = ''  # the one in use ('' = not decided yet: no publisher seen)
    ignored_other_transport: int = 0  # frames of the transport not in use, or a duplicate stamp
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_STAMPS))
    e2e_note: str = ''  # why the end-to-end latency is not reported ('' = it is)

    def stats(self, t: float) -> CameraStats:
        """The counters now, stamped ``t``."""
        return CameraStats(
            t,
            self.received,
            self.processed,
            self.dropped,
            self.bad_frames,
            self.stream_resets,
            self.keyframes,
            self.ignored_other_transport,
        )

    def arrive(self, msg: Any, arrival: float) -> None:
        """A frame arrived: count it; the one it overwrote (if any) counts as dropped."""
        self.received += 1
        self.dropped += self.mailbox.put(msg, arrival)

    def select(self, publishers: dict[str, int]) -> bool:
        """Decide the transport in use from the matched publishers per subscribed transport:
        the only one subscribed; else raw when a raw publisher is matched, compressed when only
        a compressed one is; unchanged when none is. Returns True when it changed."""
        if len(self.transports) == 1:
            new = self.transports[0]
        else:
            new = next(
                (k for k in ('raw', 'compressed') if publishers.get(k, 0) > 0), self.transport
            )
        changed, self.transport = new != self.transport, new
        return changed

    def admit(self, transport: str, stamp_ns: int) -> bool:
        """Whether a frame that arrived on ``transport`` is this camera's to process (then call
        :meth:`arrive`). Refused, and counted in ``ignored_other_transport`` (not in
        ``received``): a frame of the transport not in use, and a frame whose (non-zero) stamp
        was already taken from the other transport — never two outputs for one stamp. Frames
        repeated on one transport (duplicates, all-zero stamps) are admitted. Never raises."""
        if not self.transport:
            self.transport = transport  # a frame before any publisher was seen: use it
        duplicate = stamp_ns != 0 and any(s == stamp_ns and t != transport for s, t in self.recent)
        if transport != self.transport or duplicate:
            self.ignored_other_transport += 1
            return False
        if stamp_ns != 0:
            self.recent.append((stamp_ns, transport))
        return True

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


#: seconds over which the scheduler remembers each camera's use of the worker
USAGE_WINDOW_S = 2.0


class Scheduler:
    """Which camera the worker serves next: max-min fair by worker time, weighted by priority.

    Each camera's recent use of the worker (seconds of work, decaying with time constant
    :data:`USAGE_WINDOW_S`, divided by its weight) is tracked through :meth:`charge`; the
    pending camera that used the least is served (ties in round-robin order). So a camera that
    needs less than an equal share of the worker is served as soon as its frame arrives (it
    waits at most for the frame in progress) and keeps its frames beside a fast one; cameras
    that want more than their share split the rest equally (by time: a camera of costly 4K
    frames gets fewer frames, not more time). Two busy cameras of equal cost share equally — the
    max-min fair share; ``camera_priorities`` weights move it. Without :meth:`charge` (all
    costs zero) this is plain round robin.

    ``max_rate_hz`` > 0 caps each camera's output rate (a frame is not started sooner than
    1/cap after the camera's previous one; the frames meanwhile are overwritten and dropped).
    In latency mode (``limit_s`` > 0) a frame that has waited longer than ``limit_s`` is
    dropped (counted in its camera's ``dropped``) and that camera is skipped until its next
    frame arrives.
    """

    def __init__(
        self,
        cameras: dict[str, Camera],
        weights: dict[str, float] | None = None,
        max_rate_hz: float = 0.0,
    ) -> None:
        self._cameras = cameras
        self._order = list(cameras)
        self._weights = {k: float((weights or {}).get(k, 1.0)) for k in self._order}
        self._min_period = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self._usage = {k: 0.0 for k in self._order}  # decayed worker seconds, at self._t
        self._t = 0.0
        self._last_start = {k: float('-inf') for k in self._order}
        self._next = 0

    @property
    def order(self) -> list[str]:
        """The camera keys in serving order (the layout's order)."""
        return list(self._order)

    def _eligible(self, key: str, now: float, limit_s: float) -> bool:
        """Whether camera ``key`` has a frame to serve now (drops one that waited too long)."""
        cam = self._cameras[key]
        waited = cam.mailbox.waited(now)
        if waited is None:
            return False
        if limit_s > 0 and waited > limit_s:
            cam.mailbox.take()
            cam.dropped += 1
            return False
        return now - self._last_start[key] >= self._min_period

    def _decay(self, now: float) -> None:
        """Age the usage counters to ``now``."""
        if now > self._t:
            factor = math.exp(-(now - self._t) / USAGE_WINDOW_S)
            self._usage = {k: u * factor for k, u in self._usage.items()}
            self._t = now

    def take(self, now: float, limit_s: float = 0.0) -> tuple[Camera, Any, float] | None:
        """``(camera, message, arrival)`` of the next frame to serve, or None when none is
        pending (or every pending camera is at its rate cap: see :meth:`wait_s`). Call with
        the node's lock held; ``now`` is ``time.perf_counter()``."""
        n = len(self._order)
        best: tuple[float, int, str] | None = None
        for i in range(n):
            key = self._order[(self._next + i) % n]
            if self._eligible(key, now, limit_s):
                tag = (self._usage[key] / self._weights[key], i, key)
                best = tag if best is None or tag < best else best
        if best is None:
            return None
        _, i, key = best
        self._last_start[key] = now
        self._next = (self._next + i + 1) % n
        job = self._cameras[key].mailbox.take()
        assert job is not None  # eligible: the mailbox holds a frame (lock held)
        msg, arrival = job
        return self._cameras[key], msg, arrival

    def set_max_rate(self, max_rate_hz: float) -> None:
        """Change the per-camera rate cap (Hz, 0 = none)."""
        self._min_period = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0

    def charge(self, cam: Camera, seconds: float, now: float) -> None:
        """The worker spent ``seconds`` on ``cam``'s frame (processed, bad or failed), done at
        ``now`` (``time.perf_counter()``)."""
        self._decay(now)
        self._usage[cam.key] += max(seconds, 0.0)

    def wait_s(self, now: float) -> float | None:
        """Seconds until a camera held back by the rate cap may be served; None when none is."""
        waits = [
            self._last_start[k] + self._min_period - now
            for k in self._order
            if self._cameras[k].mailbox and self._min_period > 0
        ]
        return max(min(waits), 0.0) if waits else None
