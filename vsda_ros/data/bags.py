"""rosbag2 bags of camera images (and label masks): read them as frames.

Pure Python through ``rosbags`` (mcap and sqlite3 storage, the CDR bytes rclpy writes and reads)
and :mod:`vsda_ros.data.decode` (the node's own decoder) for images; no rclpy, so the offline
tools and tests need no ROS. Writing is :mod:`vsda_ros.data.bag_writer`, storage integrity
(chunk CRCs, sqlite ``quick_check``) :mod:`vsda_ros.data.bag_storage`.

A bag as :func:`~vsda_ros.data.bag_writer.write_bag` writes it::

    /camera/image_raw              sensor_msgs/msg/Image, rgb8        (compression='none')
    /camera/image_raw/compressed   sensor_msgs/msg/CompressedImage    (compression='jpeg'/'png')
    /camera/labels                 sensor_msgs/msg/Image, mono8 class ids, the image's header

with each message logged at its header stamp. :class:`BagSource` reads any bag whose images are
``sensor_msgs/msg/Image`` (every encoding rosbags-image converts: rgb8, bgr8, mono8/16, bayer,
yuv422, …) or ``sensor_msgs/msg/CompressedImage`` (jpeg, png).

Damage: before a pass :class:`BagSource` checks the storage
(:func:`~vsda_ros.data.bag_storage.check_storage`), turns any error of the storage reader into
one clear :class:`~vsda_ros.data.integrity.IncompleteInputError`, and after a full pass compares
the messages read with the counts the bag announces. An incomplete bag is an error unless the
caller allows it (:func:`vsda_ros.data.integrity.reading`).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vsda_ros.data.bag_storage import BAG_SUFFIXES, check_storage, storage_files
from vsda_ros.data.decode import label_to_array, message_to_rgb
from vsda_ros.data.integrity import (
    ALLOW_HINT,
    IncompleteInputError,
    ReadStats,
    allow_incomplete,
    report_read,
)
from vsda_ros.frames import Frame

log = logging.getLogger(__name__)

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
IMAGE_TYPES = (IMAGE, COMPRESSED)
#: how many warnings about undecodable messages one iteration logs before it only counts.
_MAX_WARNINGS = 5
#: the image and label decoders, under the names this module has always had (one
#: implementation: :mod:`vsda_ros.data.decode`, shared with the node).
decode_rgb = message_to_rgb
decode_label = label_to_array


def typestore() -> Any:
    """The rosbags typestore used for every bag here (ROS 2 Kilted message definitions;
    ``sensor_msgs/Image`` and ``CompressedImage`` are identical from Humble on)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def is_bag(path: str | Path) -> bool:
    """Whether ``path`` is a rosbag2: a ``.mcap``/``.db3`` file, or a folder holding
    ``metadata.yaml`` or exactly one such file."""
    path = Path(path)
    if path.is_file():
        return path.suffix in BAG_SUFFIXES
    if path.is_dir():
        return (path / 'metadata.yaml').is_file() or len(storage_files(path)) == 1
    return False


def open_reader(path: str | Path) -> Any:
    """An opened ``rosbags.rosbag2.Reader`` for a bag folder or a single ``.mcap``/``.db3``.

    A folder without ``metadata.yaml`` is read through its one storage file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a rosbag2 bag, or it cannot be opened.
    """
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'bag {path} does not exist')
    target = path
    if path.is_dir() and not (path / 'metadata.yaml').is_file():
        files = storage_files(path)
        if len(files) != 1:
            raise ValueError(
                f'{path} is not a rosbag2 bag (no metadata.yaml, and '
                f'{len(files)} .mcap/.db3 files instead of one)'
            )
        target = files[0]
    elif path.is_file() and path.suffix not in BAG_SUFFIXES:
        raise ValueError(f'{path} is not a rosbag2 bag (expected a folder, .mcap or .db3)')
    try:
        reader = Reader(target)
        reader.open()
    except ReaderError as exc:
        raise ValueError(f'cannot open bag {path}: {exc}') from None
    return reader


def image_topics(path: str | Path) -> dict[str, str]:
    """Topic → message type for the ``sensor_msgs/msg/Image`` and ``CompressedImage`` topics."""
    reader = open_reader(path)
    try:
        return {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}
    finally:
        reader.close()


def is_label_topic(topic: str) -> bool:
    """Label topics are named ``…labels`` (``/camera/labels``, ``/camera/gt_labels``)."""
    return topic.rstrip('/').endswith('labels')


def _damaged(path: Path, problems: list[str]) -> str:
    more = f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''
    return f'bag {path} is damaged: {problems[0]}{more}'


def read_messages(
    reader: Any, connections: list, path: str | Path
) -> Iterator[tuple[Any, int, Any]]:
    """``reader.messages(connections=…)``, with any error of the storage reader (``apsw``
    ``CorruptError``, rosbags ``ReaderError``, ``struct``/overflow errors on garbage lengths …)
    turned into one clear line.

    Raises:
        IncompleteInputError: the storage could not be read; says after how many messages.
    """
    it = reader.messages(connections=connections)
    n = 0
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - whatever the storage reader fails with
            raise IncompleteInputError(
                f'bag {path} is damaged: reading failed after {n} messages '
                f'({type(exc).__name__}: {exc})'
            ) from None
        n += 1
        yield item


# ---------------------------------------------------------------------------------------------
# reading


def _stamp(msg: Any) -> float:
    return int(msg.header.stamp.sec) + int(msg.header.stamp.nanosec) * 1e-9


def _stamp_key(msg: Any) -> tuple[int, int]:
    return int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)


@dataclass
class BagSource:
    """Camera frames from a rosbag2 bag (folder, ``.mcap`` or ``.db3``), in log-time order.

    Args:
        path: the bag.
        topic: the image topic; ``None`` picks the only image topic that is not a label topic
            (see :func:`is_label_topic`) and raises ``ValueError`` naming them if there are more.
        label_topic: a mono8/mono16 Image topic of class ids for :meth:`labelled`; a label
            belongs to the image with exactly the same header stamp.

    Frames carry the header stamp in seconds, the header's ``frame_id``, ``camera`` = the topic
    and ``name`` = ``f'{index:06d}.png'`` (index of the message on the topic). Messages that
    cannot be decoded are skipped with a warning and counted in :attr:`skipped` (reset at the
    start of every iteration); they still use up their index.

    Raises (on construction):
        FileNotFoundError: the bag does not exist.
        ValueError: not a bag, no / ambiguous / unknown image topic, unknown label topic.
    """

    path: Path
    topic: str | None = None
    label_topic: str | None = None
    skipped: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        reader = open_reader(self.path)
        try:
            self._types = {c.topic: c.msgtype for c in reader.connections}
            self._counts: dict[str, int] = {}
            for c in reader.connections:
                self._counts[c.topic] = self._counts.get(c.topic, 0) + c.msgcount
        finally:
            reader.close()
        images = {t: m for t, m in self._types.items() if m in IMAGE_TYPES}
        listing = ', '.join(f'{t} ({m.rsplit("/", 1)[-1]})' for t, m in sorted(images.items()))
        listing = listing or 'none'
        if self.topic is None:
            candidates = [t for t in images if t != self.label_topic and not is_label_topic(t)]
            if len(candidates) != 1:
                raise ValueError(
                    f'bag {self.path}: {"no" if not candidates else "more than one"}'
                    f' image topic; choose one with topic=… (image topics: '
                    f'{listing})'
                )
            self.topic = candidates[0]
        elif self.topic not in images:
            raise ValueError(
                f'bag {self.path} has no image topic {self.topic!r} (image topics: {listing})'
            )
        if self.label_topic is not None and self._types.get(self.label_topic) != IMAGE:
            raise ValueError(
                f'bag {self.path} has no label topic {self.label_topic!r} of type '
                f'{IMAGE} (image topics: {listing})'
            )
        self.msgtype = images[self.topic]

    @property
    def _topic(self) -> str:
        """:attr:`topic`, which construction always resolves to a string."""
        assert self.topic is not None
        return self.topic

    def __len__(self) -> int:
        """Number of messages on the image topic (including any that fail to decode)."""
        return self._counts.get(self._topic, 0)

    def _messages(self, topics: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
        """(topic, message) in log-time order; a message that does not deserialize → None.

        The storage is checked first (:func:`check_storage`) and, after a full pass, the
        messages read are compared with the bag's counts; damage goes through
        :func:`~vsda_ros.data.integrity.report_read`.

        Raises:
            IncompleteInputError: the bag is damaged (before the first message when the check
                finds it) or gave fewer messages than it announces, unless allowed; then the
                pass reads up to the damage and stops there.
        """
        store = typestore()
        problems = check_storage(self.path)
        if problems and not allow_incomplete():
            raise IncompleteInputError(
                f'{_damaged(self.path, problems)}; {ALLOW_HINT} (the messages before the damage)'
            )
        read = {t: 0 for t in topics}
        reader = open_reader(self.path)
        try:
            conns = [c for c in reader.connections if c.topic in topics]
            try:
                for conn, _, raw in read_messages(reader, conns, self.path):
                    read[conn.topic] += 1
                    try:
                        msg = store.deserialize_cdr(raw, conn.msgtype)
                    except Exception as exc:  # noqa: BLE001 - any corrupt CDR is skipped
                        self._warn(f'{conn.topic}: cannot deserialize {conn.msgtype}: {exc}')
                        msg = None
                    yield conn.topic, msg
            except IncompleteInputError as exc:
                if not allow_incomplete():
                    raise
                problems.append(str(exc).split(': ', 1)[-1])
        finally:
            reader.close()
        # a full pass (a caller that stops early never gets here)
        for topic in topics[1:]:
            if read[topic] < self._counts.get(topic, 0):
                problems.append(f'{topic}: read {read[topic]} of {self._counts[topic]} messages')
        report_read(ReadStats(str(self.path), 'bag', len(self), read[topics[0]], problems))

    def _warn(self, text: str) -> None:
        self.skipped += 1
        if self.skipped <= _MAX_WARNINGS:
            log.warning('bag %s: skipped message: %s', self.path, text)
        elif self.skipped == _MAX_WARNINGS + 1:
            log.warning('bag %s: more undecodable messages; only counting them now', self.path)

    def _frame(self, msg: Any, index: int) -> Frame | None:
        if msg is None:
            return None
        try:
            image = decode_rgb(msg)
        except ValueError as exc:
            self._warn(f'{self.topic} #{index}: {exc}')
            return None
        return Frame(
            image,
            stamp=_stamp(msg),
            frame_id=str(msg.header.frame_id),
            name=f'{index:06d}.png',
            camera=self._topic,
        )

    def __iter__(self) -> Iterator[Frame]:
        self.skipped = 0
        index = 0
        for _, msg in self._messages((self._topic,)):
            frame = self._frame(msg, index)
            index += 1
            if frame is not None:
                yield frame
        self._summary()

    def _summary(self) -> None:
        if self.skipped:
            log.warning('bag %s: %d undecodable message(s) skipped', self.path, self.skipped)

    def labelled(self, window: int = 64) -> Iterator[tuple[Frame, np.ndarray | None]]:
        """(frame, label or ``None``) in log-time order; labels come from :attr:`label_topic`
        (all ``None`` without one), matched to images by identical header stamp.

        Both topics are read in one pass; an image waits for its label until a label with a
        later stamp was read, ``window`` more images arrived, or the bag ended.
        """
        if self.label_topic is None:
            for frame in self:
                yield frame, None
            return
        self.skipped = 0
        pending: deque[tuple[tuple[int, int], Frame]] = deque()
        labels: dict[tuple[int, int], np.ndarray] = {}
        newest_label: tuple[int, int] | None = None
        index = 0

        def ready(key: tuple[int, int]) -> bool:
            return key in labels or (newest_label is not None and newest_label > key)

        for topic, msg in self._messages((self._topic, self.label_topic)):
            if topic == self.topic:
                decoded = self._frame(msg, index)
                index += 1
                if decoded is not None:
                    pending.append((_stamp_key(msg), decoded))
            elif msg is not None:
                try:
                    labels[_stamp_key(msg)] = decode_label(msg)
                    newest_label = max(newest_label or (0, 0), _stamp_key(msg))
                except ValueError as exc:
                    self._warn(f'{self.label_topic}: {exc}')
            while pending and (ready(pending[0][0]) or len(pending) > window):
                key, frame = pending.popleft()
                yield frame, labels.pop(key, None)
            if len(labels) > 4 * window:  # labels whose image never came (or was skipped)
                for key in sorted(labels)[: len(labels) - 4 * window]:
                    del labels[key]
        for key, frame in pending:
            yield frame, labels.pop(key, None)
        self._summary()


def bag_info(path: str | Path) -> dict:
    """What a bag holds: ``{'path', 'storage', 'messages', 'start', 'end', 'duration',
    'topics': {topic: {'type', 'count', 'rate'}}}`` (seconds; rate in messages/s over the bag's
    duration, ``None`` with fewer than two messages)."""
    path = Path(path)
    reader = open_reader(path)
    try:
        counts: dict[str, int] = {}
        types: dict[str, str] = {}
        for c in reader.connections:
            counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
            types[c.topic] = c.msgtype
        total = reader.message_count
        start = reader.start_time * 1e-9 if total else 0.0
        end = reader.end_time * 1e-9 if total else 0.0
    finally:
        reader.close()
    files = [path] if path.is_file() else storage_files(path)
    storage = {'.mcap': 'mcap', '.db3': 'sqlite3'}.get(files[0].suffix if files else '', '?')
    duration = end - start
    topics = {
        t: {
            'type': types[t],
            'count': n,
            'rate': (n - 1) / duration if n > 1 and duration > 0 else None,
        }
        for t, n in sorted(counts.items())
    }
    return {
        'path': str(path),
        'storage': storage,
        'messages': total,
        'start': start,
        'end': end,
        'duration': duration,
        'topics': topics,
    }
