"""``vsda replay``'s ROS tool: publish a bag's camera (and label) topics over ROS 2, as recorded.

Each message is published as the bag's own serialized CDR bytes (``Publisher.publish(bytes)``
→ ``publish_raw``), so subscribers receive exactly what was recorded, bit for bit, without a
deserialize/serialize round trip. Header stamps therefore stay as recorded — a node that measures
latency from the header stamp (``segmentation_node``'s end-to-end diagnostic) sees the age of
the recording; with ``restamp=True`` (``--restamp``) every header stamp is rewritten to the time
of publishing instead (an image and the label with the same recorded stamp get the same new
stamp, so they still match), at the cost of one deserialize/serialize per message.

Timing: message *i* goes out at ``start + (t_i - t_0) / rate`` on the monotonic clock, where
``t_i`` is its log time in the bag; a slow publisher never skips messages, it publishes late (the
summary reports how late). Publishers are reliable with depth ``qos_depth`` (compatible with
best-effort subscribers such as ``segmentation_node``'s).

Network rule and domain: ``vsda replay`` (:mod:`vsda_ros.apps.replay`) and :func:`replay_bag`
(when it creates its own node) call :func:`use_environment_domain` before rclpy starts:
discovery stays on loopback (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) and the domain is
the environment's ``ROS_DOMAIN_ID``, 0 when unset — like every ROS tool, so that the replay
meets a node the user started by hand. (``vsda demo`` / ``vsda bench``, which start their own
node, keep a private random domain through
:func:`~vsda_ros.ros.tools.launcher.confine_to_loopback`.)

Damage: the bag's storage is checked before anything is published
(:func:`~vsda_ros.data.bags.check_storage`), and a storage error or a pass that gives fewer
messages than the bag announces ends the replay with one clear error
(:class:`~vsda_ros.data.integrity.IncompleteInputError`).

Topic names, remaps, message classes and restamping: :mod:`vsda_ros.ros.tools.replay_topics`.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from vsda_ros.data.bag_storage import check_storage
from vsda_ros.data.bags import IMAGE_TYPES, is_label_topic, open_reader, read_messages
from vsda_ros.data.integrity import IncompleteInputError
from vsda_ros.ros.tools.launcher import fastdds_profile
from vsda_ros.ros.tools.replay_topics import (
    Restamper,
    check_topic_names,
    message_class,
    parse_remaps,
)

#: the highest ROS_DOMAIN_ID Fast DDS's default port mapping allows.
MAX_DOMAIN_ID = 232


def use_environment_domain() -> tuple[int, str]:
    """Loopback-only discovery in the environment's ROS domain, before rclpy starts.

    Sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (network rule: never leave loopback),
    keeps ``ROS_DOMAIN_ID`` when it is set and sets it to 0 — the ROS default — when it is not,
    and uses the package's Fast DDS profile unless the user set their own.

    Returns:
        ``(domain id, 'ROS_DOMAIN_ID' or 'default')``.

    Raises:
        ValueError: ``ROS_DOMAIN_ID`` is not an integer 0..232.
    """
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    raw = os.environ.get('ROS_DOMAIN_ID', '').strip()
    origin = 'ROS_DOMAIN_ID' if raw else 'default'
    try:
        domain = int(raw) if raw else 0
    except ValueError:
        domain = -1
    if not 0 <= domain <= MAX_DOMAIN_ID:
        raise ValueError(
            f'ROS_DOMAIN_ID={raw!r} is not a domain id (an integer 0..{MAX_DOMAIN_ID})'
        )
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    profile = fastdds_profile()
    if profile:
        os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', profile)
    return domain, origin


@contextmanager
def _own_node() -> Iterator[Any]:
    """A node in a context of its own. Unlike ``launcher.client_node`` it does not hand
    ``sys.argv`` to rclpy, whose ``OLD:=NEW`` parsing would apply ``--remap`` a second time."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    try:
        node = rclpy.create_node('vsda_replay', context=context)
        try:
            yield node
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def replay_bag(
    path: str | Path,
    rate: float = 1.0,
    topics: Iterable[str] | None = None,
    loop: bool = False,
    remap: Iterable[str] | dict[str, str] | None = None,
    start_delay: float = 1.0,
    wait_subscribers: int = 0,
    wait_timeout: float = 30.0,
    restamp: bool = False,
    qos_depth: int = 10,
    node: Any = None,
    stop: threading.Event | None = None,
    max_loops: int | None = None,
    on_message: Callable[[str, int], None] | None = None,
    progress: bool = False,
) -> dict:
    """Publish the bag's topics over ROS 2 at the recorded timing scaled by ``rate``.

    Args:
        path: bag folder, ``.mcap`` or ``.db3``.
        rate: speed factor (2.0 = twice as fast); must be > 0.
        topics: bag topics to publish (default: every Image / CompressedImage topic, labels
            included); any type importable by rclpy works.
        loop: start over at the end (until Ctrl-C, ``stop`` is set, or ``max_loops`` passes);
            the gap between passes is one mean message period.
        remap: ``OLD:=NEW`` strings or a ``{OLD: NEW}`` dict renaming bag topics.
        start_delay: seconds between creating the publishers (after waiting for subscribers)
            and the first message, so that subscribers can match.
        wait_subscribers: before starting, wait until every replayed non-label topic has at
            least this many subscribers (``RuntimeError`` after ``wait_timeout`` s).
        restamp: rewrite header stamps to the publish time (see the module docstring).
        qos_depth: depth of the reliable publishers.
        node: publish from this rclpy node (the caller spins it, if it needs to); default: a
            node of our own in a context of our own, after :func:`use_environment_domain`.
        stop: set it from another thread to end the replay early.
        max_loops: with ``loop``, stop after this many passes.
        on_message: called as ``on_message(out_topic, index)`` after each publish.
        progress: show a tqdm progress bar.

    Returns:
        ``{'bag', 'rate', 'loops', 'published', 'seconds', 'recorded_duration',
        'achieved_rate', 'late_ms_p50', 'late_ms_p95', 'restamped', 'interrupted',
        'domain_id', 'topics': {out_topic: {'bag_topic', 'type', 'published', 'rate'}}}``;
        ``achieved_rate`` is messages/s over the whole replay, per-topic ``rate`` the same for
        that topic; ``domain_id`` the ROS domain published in.

    Raises:
        FileNotFoundError: no bag at ``path``.
        ValueError: bad rate, unknown topic or remap, a topic name that is invalid in ROS 2
            (the message names ``--remap``), a type rclpy cannot import.
        IncompleteInputError (a ValueError): the bag is damaged (found before publishing, or
            while reading: a storage error, or fewer messages than the bag announces).
        RuntimeError: subscribers did not appear within ``wait_timeout``.
    """
    if not rate > 0:
        raise ValueError(f'rate must be > 0, not {rate}')
    path = Path(path)
    reader = open_reader(path)
    try:
        types = {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()
    listing = ', '.join(f'{t} ({m})' for t, m in sorted(types.items())) or 'none'
    chosen = list(topics) if topics else [t for t, m in types.items() if m in IMAGE_TYPES]
    if not chosen:
        raise ValueError(f'bag {path} has no image topics to replay (topics: {listing})')
    unknown = [t for t in chosen if t not in types]
    if unknown:
        raise ValueError(f'bag {path} has no topic {", ".join(unknown)} (topics: {listing})')
    renames = parse_remaps(remap)
    bad = [t for t in renames if t not in chosen]
    if bad:
        raise ValueError(f'remap of {", ".join(bad)}: not a replayed topic ({", ".join(chosen)})')
    classes = {t: message_class(types[t]) for t in chosen}
    check_topic_names(chosen, renames)
    problems = check_storage(path)
    if problems:
        more = f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''
        raise IncompleteInputError(
            f'bag {path} is damaged: {problems[0]}{more}; nothing was published'
        )

    def run(on: Any) -> dict:
        return _replay(
            path,
            on,
            chosen,
            types,
            classes,
            renames,
            rate,
            loop,
            start_delay,
            wait_subscribers,
            wait_timeout,
            restamp,
            qos_depth,
            stop,
            max_loops,
            on_message,
            progress,
        )

    if node is not None:
        return run(node)
    use_environment_domain()  # network rule, before rclpy starts
    with _own_node() as own:
        return run(own)


def _replay(
    path: Path,
    node: Any,
    chosen: list[str],
    msgtypes: dict[str, str],
    classes: dict[str, type],
    renames: dict[str, str],
    rate: float,
    loop: bool,
    start_delay: float,
    wait_subscribers: int,
    wait_timeout: float,
    restamp: bool,
    qos_depth: int,
    stop: threading.Event | None,
    max_loops: int | None,
    on_message: Callable[[str, int], None] | None,
    progress: bool,
) -> dict:
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from tqdm import tqdm

    stop = stop or threading.Event()
    domain_id = _domain_id(node)
    qos = QoSProfile(depth=qos_depth, reliability=ReliabilityPolicy.RELIABLE)
    out_name = {t: renames.get(t, t) for t in chosen}
    pubs = {t: node.create_publisher(classes[t], out_name[t], qos) for t in chosen}
    counts = {t: 0 for t in chosen}
    late: list[float] = []
    restamper = Restamper(node) if restamp else None
    interrupted = False
    loops = 0
    t_start = t_end = time.monotonic()
    recorded_ns = 0
    bar = None
    reader = None
    try:
        if wait_subscribers > 0:
            watched = [t for t in chosen if not is_label_topic(out_name[t])] or chosen
            deadline = time.monotonic() + wait_timeout
            while not all(pubs[t].get_subscription_count() >= wait_subscribers for t in watched):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f'no {wait_subscribers} subscriber(s) on '
                        f'{", ".join(out_name[t] for t in watched)} after {wait_timeout:.0f} s'
                    )
                if stop.wait(0.05):
                    break
        stop.wait(start_delay)

        reader = open_reader(path)
        conns = [c for c in reader.connections if c.topic in pubs]
        total = sum(c.msgcount for c in conns)
        pass_total = total
        bar = tqdm(
            total=None if loop else total,
            unit='msg',
            desc=f'replay {path.name}',
            disable=not progress,
        )
        t_start = time.monotonic()
        offset_ns = 0  # where the current pass starts on the replay's time line (bag time)
        first_ns: int | None = None
        last_ns = 0  # the last stamp of the pass, once first_ns is set
        while not stop.is_set():
            first_ns, last_ns = None, 0
            in_pass = 0
            if restamper is not None:
                restamper.clear()  # a new pass gets new stamps for the same recorded ones
            for conn, ts, raw in read_messages(reader, conns, path):
                if first_ns is None:
                    first_ns = ts
                last_ns = ts
                target = t_start + (offset_ns + ts - first_ns) * 1e-9 / rate
                wait = target - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    break
                if stop.is_set():
                    break
                data = raw if isinstance(raw, bytes) else bytes(raw)
                if restamper is not None:
                    data = restamper(data, classes[conn.topic])
                pubs[conn.topic].publish(data)
                late.append(max(0.0, time.monotonic() - target))
                counts[conn.topic] += 1
                in_pass += 1
                bar.update()
                if on_message is not None:
                    on_message(out_name[conn.topic], counts[conn.topic] - 1)
            loops += 1
            if not stop.is_set() and in_pass < pass_total:
                raise IncompleteInputError(
                    f'bag {path} is damaged: its storage gave {in_pass} '
                    f'of the {pass_total} messages it announces'
                )
            if first_ns is None or not loop or (max_loops is not None and loops >= max_loops):
                break
            span = last_ns - first_ns
            recorded_ns = max(recorded_ns, span)
            gap = span // (in_pass - 1) if in_pass > 1 else 100_000_000
            offset_ns += span + gap
        if first_ns is not None:
            recorded_ns = max(recorded_ns, last_ns - first_ns)
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:  # rclpy's SIGINT handler may shut the context down first
        if type(exc).__name__ not in ('ExternalShutdownException', 'RCLError'):
            raise
        interrupted = True
    finally:
        t_end = time.monotonic()
        if bar is not None:
            bar.close()
        if reader is not None:
            reader.close()
        for pub in pubs.values():
            try:
                if not interrupted:  # reliable QoS: let the last samples be delivered first
                    pub.wait_for_all_acked(Duration(seconds=2.0))
                node.destroy_publisher(pub)
            except Exception:  # noqa: BLE001 - the context may already be shut down
                pass
    seconds = max(t_end - t_start, 1e-9)
    published = sum(counts.values())
    lat = np.asarray(late) * 1e3 if late else np.zeros(1)
    return {
        'bag': str(path),
        'rate': rate,
        'loops': loops,
        'published': published,
        'seconds': seconds,
        'recorded_duration': recorded_ns * 1e-9,
        'achieved_rate': published / seconds,
        'late_ms_p50': float(np.percentile(lat, 50)),
        'late_ms_p95': float(np.percentile(lat, 95)),
        'restamped': restamp,
        'interrupted': interrupted or stop.is_set(),
        'domain_id': domain_id,
        'topics': {
            out_name[t]: {
                'bag_topic': t,
                'type': msgtypes[t],
                'published': counts[t],
                'rate': counts[t] / seconds,
            }
            for t in chosen
        },
    }


def _domain_id(node: Any) -> int | None:
    """The ROS domain the node's context joined (``None`` if rclpy cannot say)."""
    try:
        return int(node.context.get_domain_id())
    except Exception:  # noqa: BLE001 - an old rclpy, or a context already shut down
        return None


def print_summary(summary: dict) -> None:
    """The human summary of :func:`replay_bag`'s result."""
    state = ' (interrupted)' if summary['interrupted'] else ''
    print(
        f'replayed {summary["bag"]}{state}: {summary["published"]} messages in '
        f'{summary["seconds"]:.2f} s ({summary["achieved_rate"]:.1f} msg/s; recorded '
        f'{summary["recorded_duration"]:.2f} s, rate ×{summary["rate"]:g}, '
        f'{summary["loops"]} pass(es)); late p50 {summary["late_ms_p50"]:.1f} ms, '
        f'p95 {summary["late_ms_p95"]:.1f} ms'
    )
    width = max((len(t) for t in summary['topics']), default=0)
    for topic, t in summary['topics'].items():
        src = f'  (from {t["bag_topic"]})' if t['bag_topic'] != topic else ''
        print(
            f'  {topic:<{width}}  {t["type"]:<32} {t["published"]:>7} msgs  {t["rate"]:.2f} Hz{src}'
        )
