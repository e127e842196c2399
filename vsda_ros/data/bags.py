"""rosbag2 bags of camera images (and label masks): read them as frames, write them from frames.

Pure Python through ``rosbags`` (mcap and sqlite3 storage, the CDR bytes rclpy writes and reads)
and ``rosbags-image`` for decoding; no rclpy, so the offline tools and tests need no ROS.

A bag as this module writes it (:func:`write_bag`)::

    /camera/image_raw              sensor_msgs/msg/Image, rgb8        (compression='none')
    /camera/image_raw/compressed   sensor_msgs/msg/CompressedImage    (compression='jpeg'/'png')
    /camera/labels                 sensor_msgs/msg/Image, mono8 class ids, the image's header

with each message logged at its header stamp. :class:`BagSource` reads any bag whose images are
``sensor_msgs/msg/Image`` (every encoding rosbags-image converts: rgb8, bgr8, mono8/16, bayer,
yuv422, …) or ``sensor_msgs/msg/CompressedImage`` (jpeg, png).

Damage: mcap bags written here carry a CRC-32 per chunk (rosbags writes 0, "not available"; we
fill it in after writing, as the MCAP spec defines it: CRC-32 of the uncompressed records).
Before a pass :class:`BagSource` checks the storage (:func:`check_storage`: every chunk CRC that
is not 0, the record structure; for sqlite3 ``PRAGMA quick_check``), turns any error of the
storage reader into one clear :class:`~vsda_ros.data.integrity.IncompleteInputError`, and after
a full pass compares the messages read with the counts the bag announces. An incomplete bag is an
error unless the caller allows it (:func:`vsda_ros.data.integrity.reading`). sqlite3 has no
checksums of its own: a damaged *message payload* in a ``.db3`` cannot be detected, only damage to
its structure.
"""
from __future__ import annotations

import logging
import os
import shutil
import struct
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from vsda_ros.data.integrity import (ALLOW_HINT, IncompleteInputError, ReadStats,
                                     allow_incomplete, report_read)
from vsda_ros.frames import Frame

log = logging.getLogger(__name__)

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
IMAGE_TYPES = (IMAGE, COMPRESSED)
BAG_SUFFIXES = ('.mcap', '.db3')
STORAGES = ('mcap', 'sqlite3')
COMPRESSIONS = ('none', 'jpeg', 'png')
#: how many warnings about undecodable messages one iteration logs before it only counts.
_MAX_WARNINGS = 5


def typestore():
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
        return (path / 'metadata.yaml').is_file() or len(_storage_files(path)) == 1
    return False


def _storage_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in BAG_SUFFIXES and p.is_file())


def open_reader(path: str | Path):
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
        files = _storage_files(path)
        if len(files) != 1:
            raise ValueError(f'{path} is not a rosbag2 bag (no metadata.yaml, and '
                             f'{len(files)} .mcap/.db3 files instead of one)')
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


# ---------------------------------------------------------------------------------------------
# integrity: chunk CRCs, storage checks, storage errors

_MCAP_MAGIC = b'\x89MCAP0\r\n'
_OP_FOOTER, _OP_CHUNK, _OP_DATA_END = 0x02, 0x06, 0x0F
#: offset of ``uncompressed_crc`` in a chunk record: op (1) + length (8) + start, end and
#: uncompressed size (3 × 8).
_CHUNK_CRC_AT = 9 + 24


class _Broken(Exception):
    """The mcap record structure is damaged (a length runs past the file, an unknown op)."""


@dataclass
class _Chunk:
    index: int
    offset: int           # of the chunk record (its op byte)
    start: int            # message log times, ns
    end: int
    uncompressed_size: int
    crc: int
    compression: str
    data_offset: int      # of the (compressed) records
    data_size: int

    def where(self) -> str:
        return (f'chunk {self.index} at byte {self.offset} (log time {self.start * 1e-9:.3f}–'
                f'{self.end * 1e-9:.3f} s)')


def _storage_file(path: Path) -> Path | None:
    """The one ``.mcap``/``.db3`` file of a bag (``None`` when there are several or none)."""
    if path.is_file():
        return path
    files = _storage_files(path) if path.is_dir() else []
    return files[0] if len(files) == 1 else None


def _mcap_chunks(fh: Any, size: int) -> Iterator[_Chunk]:
    """The chunk records of an mcap file, walking its data section record by record.

    Raises:
        _Broken: not an mcap file, a record that runs past the end of the file, a record type
            that cannot occur (0 or 0x10–0x7f), or no Data End / Footer record (truncated).
    """
    fh.seek(0)
    if fh.read(8) != _MCAP_MAGIC:
        raise _Broken('not an mcap file (bad magic bytes)')
    pos, index = 8, 0
    while pos + 9 <= size:
        fh.seek(pos)
        op, length = struct.unpack('<BQ', fh.read(9))
        body = pos + 9
        if op == 0 or 0x10 <= op < 0x80 or body + length > size:
            raise _Broken(f'record structure broken at byte {pos} (type 0x{op:02x}, length '
                          f'{length} of a {size}-byte file)')
        if op in (_OP_DATA_END, _OP_FOOTER):
            return
        if op == _OP_CHUNK:
            if length < 40:
                raise _Broken(f'chunk record at byte {pos} is only {length} bytes')
            start, end, usize, crc, clen = struct.unpack('<QQQII', fh.read(32))
            compression = fh.read(clen).decode('utf-8', 'replace')
            (dsize,) = struct.unpack('<Q', fh.read(8))
            data_offset = body + 28 + 4 + clen + 8
            if data_offset + dsize > body + length:
                raise _Broken(f'chunk record at byte {pos}: its records run past the chunk')
            yield _Chunk(index, pos, start, end, usize, crc, compression, data_offset, dsize)
            index += 1
        pos = body + length
    raise _Broken(f'the file ends at byte {size} before its Data End record (truncated)')


def _decompress(data: bytes, compression: str) -> bytes:
    if compression == '':
        return data
    if compression == 'lz4':
        import lz4.frame
        return lz4.frame.decompress(data)
    if compression == 'zstd':
        try:
            from compression import zstd  # Python ≥ 3.14
        except ImportError:
            from backports import zstd  # what rosbags uses before 3.14
        return zstd.decompress(data)
    raise ValueError(f'unknown chunk compression {compression!r}')


def _check_mcap(file: Path) -> list[str]:
    """One line per damaged chunk (CRC or size mismatch, undecompressable) or broken record
    structure; chunks with CRC 0 ("not available") cannot be checked and are passed."""
    problems: list[str] = []
    with file.open('rb') as fh:
        try:
            for chunk in _mcap_chunks(fh, os.fstat(fh.fileno()).st_size):
                if not chunk.crc:
                    continue
                fh.seek(chunk.data_offset)
                try:
                    raw = _decompress(fh.read(chunk.data_size), chunk.compression)
                except Exception as exc:  # noqa: BLE001 - any decoder error is damage
                    problems.append(f'{chunk.where()}: cannot decompress ({exc})')
                    continue
                if len(raw) != chunk.uncompressed_size or zlib.crc32(raw) != chunk.crc:
                    problems.append(f'{chunk.where()}: checksum mismatch')
        except (_Broken, struct.error) as exc:
            problems.append(str(exc) or 'record structure broken')
    return problems


def _check_sqlite(file: Path) -> list[str]:
    """``PRAGMA quick_check`` of a ``.db3`` opened read-only: its structural problems."""
    import sqlite3

    try:
        con = sqlite3.connect(f'{file.resolve().as_uri()}?mode=ro', uri=True)
    except sqlite3.Error as exc:
        return [f'sqlite3: {exc}']
    try:
        rows = [r[0] for r in con.execute('PRAGMA quick_check(5)').fetchall()]
    except sqlite3.Error as exc:
        return [f'sqlite3: {exc}']
    finally:
        con.close()
    if rows == ['ok']:
        return []
    lines = [line.strip() for row in rows for line in str(row).splitlines()]
    return [f'sqlite3 quick_check: {line}' for line in lines
            if line and not line.startswith('***')]


def check_storage(path: str | Path) -> list[str]:
    """Damage found in a bag's storage file without decoding messages: one line per problem,
    ``[]`` when none was found.

    mcap: the record structure of the data section and the CRC-32 of every chunk that carries
    one (bags from :func:`write_bag` do; chunks with CRC 0 cannot be checked). sqlite3: ``PRAGMA
    quick_check`` (structure only: sqlite keeps no checksum of the message data). Reads the
    whole file once. A bag split into several storage files is not checked (``[]``).
    """
    file = _storage_file(Path(path))
    if file is None:
        return []
    if file.suffix == '.mcap':
        return _check_mcap(file)
    if file.suffix == '.db3':
        return _check_sqlite(file)
    return []


def seal_mcap(file: str | Path) -> int:
    """Fill in the CRC-32 of every chunk of an mcap file whose CRC is 0; returns how many.

    ``rosbags`` 0.11 writes every chunk with ``uncompressed_crc`` 0 ("not available"), so a
    damaged chunk would be read as if it were fine. The MCAP spec defines the chunk CRC as the
    CRC-32 of the uncompressed records; this walks the file's chunks and patches each CRC in
    place (4 bytes per chunk; nothing else changes).

    Raises:
        ValueError: the file's record structure is broken.
    """
    file = Path(file)
    sealed = 0
    with file.open('r+b') as fh:
        try:
            chunks = list(_mcap_chunks(fh, os.fstat(fh.fileno()).st_size))
        except _Broken as exc:
            raise ValueError(f'cannot seal {file}: {exc}') from None
        for chunk in chunks:
            if chunk.crc:
                continue
            fh.seek(chunk.data_offset)
            raw = _decompress(fh.read(chunk.data_size), chunk.compression)
            fh.seek(chunk.offset + _CHUNK_CRC_AT)
            fh.write(struct.pack('<I', zlib.crc32(raw)))
            sealed += 1
    return sealed


def _damaged(path: Path, problems: list[str]) -> str:
    more = f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''
    return f'bag {path} is damaged: {problems[0]}{more}'


def read_messages(reader: Any, connections: list, path: str | Path
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
                f'({type(exc).__name__}: {exc})') from None
        n += 1
        yield item


# ---------------------------------------------------------------------------------------------
# decoding


def _stamp(msg: Any) -> float:
    return int(msg.header.stamp.sec) + int(msg.header.stamp.nanosec) * 1e-9


def _stamp_key(msg: Any) -> tuple[int, int]:
    return int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)


def decode_rgb(msg: Any) -> np.ndarray:
    """A deserialized Image or CompressedImage → H×W×3 uint8 RGB (a fresh array), through the
    node's own decoder (:mod:`vsda_ros.data.decode`).

    Raises:
        ValueError: the message cannot be decoded.
    """
    from vsda_ros.data.decode import compressed_to_rgb, image_to_rgb

    try:
        return compressed_to_rgb(msg) if hasattr(msg, 'format') else image_to_rgb(msg)
    except TypeError as exc:  # rosbags-image on a message it cannot handle at all
        raise ValueError(f'cannot convert {getattr(msg, "encoding", "image")} to rgb8: {exc}') from None


def decode_label(msg: Any) -> np.ndarray:
    """A mono8 / mono16 (or 8UC1 / 16UC1) Image of class ids → H×W uint8 / uint16 array.

    Raises:
        ValueError: another encoding, or malformed data.
    """
    enc = {'8UC1': 'mono8', '16UC1': 'mono16'}.get(msg.encoding, msg.encoding)
    if enc not in ('mono8', 'mono16'):
        raise ValueError(f'label image has encoding {msg.encoding!r}; expected mono8 or mono16')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    bpp = 1 if enc == 'mono8' else 2
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if h == 0 or w == 0 or step < w * bpp or step * h != data.size:
        raise ValueError(f'label {enc} {w}x{h}: step {step} and {data.size} bytes do not fit')
    rows = np.ascontiguousarray(data.reshape(h, step)[:, : w * bpp])
    if bpp == 1:
        return rows
    return rows.view('>u2' if msg.is_bigendian else '<u2').astype(np.uint16)


# ---------------------------------------------------------------------------------------------
# reading


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
                raise ValueError(f'bag {self.path}: {"no" if not candidates else "more than one"}'
                                 f' image topic; choose one with topic=… (image topics: '
                                 f'{listing})')
            self.topic = candidates[0]
        elif self.topic not in images:
            raise ValueError(f'bag {self.path} has no image topic {self.topic!r} '
                             f'(image topics: {listing})')
        if self.label_topic is not None and self._types.get(self.label_topic) != IMAGE:
            raise ValueError(f'bag {self.path} has no label topic {self.label_topic!r} of type '
                             f'{IMAGE} (image topics: {listing})')
        self.msgtype = images[self.topic]

    def __len__(self) -> int:
        """Number of messages on the image topic (including any that fail to decode)."""
        return self._counts.get(self.topic, 0)

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
            raise IncompleteInputError(f'{_damaged(self.path, problems)}; {ALLOW_HINT} (the '
                                       'messages before the damage)')
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
        return Frame(image, stamp=_stamp(msg), frame_id=str(msg.header.frame_id),
                     name=f'{index:06d}.png', camera=self.topic)

    def __iter__(self) -> Iterator[Frame]:
        self.skipped = 0
        index = 0
        for _, msg in self._messages((self.topic,)):
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

        for topic, msg in self._messages((self.topic, self.label_topic)):
            if topic == self.topic:
                frame = self._frame(msg, index)
                index += 1
                if frame is not None:
                    pending.append((_stamp_key(msg), frame))
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


# ---------------------------------------------------------------------------------------------
# writing


def _remove_bag(out: Path) -> None:
    """Delete an existing bag at ``out``, refusing anything that does not look like one."""
    if out.is_file() or out.is_symlink():
        if out.suffix not in BAG_SUFFIXES:
            raise FileExistsError(f'{out} exists and is not a bag; not overwriting it')
        out.unlink()
        return
    allowed = {'metadata.yaml'}
    strangers = [p.name for p in out.iterdir()
                 if p.name not in allowed and not (p.is_file() and p.suffix in BAG_SUFFIXES)]
    if strangers:
        raise FileExistsError(f'{out} exists and holds more than a bag ({", ".join(strangers[:3])}'
                              f'…); not deleting it')
    shutil.rmtree(out)


def _to_header(store: Any, stamp: float, frame_id: str) -> tuple[Any, int]:
    """A std_msgs/Header for ``stamp`` seconds, and the stamp in nanoseconds."""
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    ns = int(round(stamp * 1e9))
    if ns < 0:
        raise ValueError(f'negative stamp {stamp}')
    return Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000),
                  frame_id=frame_id), ns


def write_bag(out: str | Path, frames: Iterable[tuple[Frame, np.ndarray | None]],
              topic: str = '/camera/image_raw', label_topic: str = '/camera/labels',
              storage: str = 'mcap', compression: str = 'none', frame_id: str = 'camera',
              overwrite: bool = False, jpeg_quality: int = 95) -> dict:
    """Write ``(frame, label or None)`` pairs as a rosbag2 bag of real ROS 2 CDR messages.

    Images go on ``topic`` as ``sensor_msgs/msg/Image`` rgb8 (``compression='none'``; bit-exact)
    or as ``sensor_msgs/msg/CompressedImage`` (``'jpeg'``, ``'png'``) on ``topic + '/compressed'``
    (unless ``topic`` already ends with ``/compressed``). A label (H×W class ids ≤ 255, the
    frame's size) goes on ``label_topic`` as a mono8 Image with the image's header. Headers carry
    ``frame.stamp`` and ``frame.frame_id`` (or ``frame_id`` when the frame has none); every
    message is logged at its header stamp.

    Returns:
        ``{'path', 'storage', 'compression', 'frames', 'labels', 'topics': {topic: {'type',
        'count'}}, 'start', 'end', 'duration'}`` (times in seconds).

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is false (or it is not a bag).
        ValueError: bad storage/compression, a non-RGB frame, a label that does not fit; the
            partly written bag is removed.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    out = Path(out)
    if storage not in STORAGES:
        raise ValueError(f'storage must be one of {", ".join(STORAGES)}, not {storage!r}')
    if compression not in COMPRESSIONS:
        raise ValueError(f'compression must be one of {", ".join(COMPRESSIONS)}, '
                         f'not {compression!r}')
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise FileExistsError(f'{out} exists; pass overwrite=True (--overwrite) to replace it')
        _remove_bag(out)
    if compression != 'none' and not topic.rstrip('/').endswith('/compressed'):
        topic = topic.rstrip('/') + '/compressed'
    if label_topic == topic:
        raise ValueError(f'label topic and image topic are both {topic}')

    store = typestore()
    Image = store.types[IMAGE]
    Compressed = store.types[COMPRESSED]
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer(out, version=Writer.VERSION_LATEST, storage_plugin=plugin)
    counts = {topic: 0, label_topic: 0}
    first = last = None
    writer.open()
    try:
        img_conn = writer.add_connection(topic, COMPRESSED if compression != 'none' else IMAGE,
                                         typestore=store)
        label_conn = None
        for frame, label in frames:
            image = frame.image
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f'frame {frame.name or counts[topic]}: expected H×W×3 uint8 '
                                 f'RGB, got {image.dtype} {image.shape}')
            header, ns = _to_header(store, frame.stamp, frame.frame_id or frame_id)
            h, w = image.shape[:2]
            if compression == 'none':
                msg = Image(header=header, height=h, width=w, encoding='rgb8', is_bigendian=0,
                            step=3 * w, data=np.ascontiguousarray(image).reshape(-1))
                writer.write(img_conn, ns, store.serialize_cdr(msg, IMAGE))
            else:
                ext, params = ('.jpg', [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]) \
                    if compression == 'jpeg' else ('.png', [cv2.IMWRITE_PNG_COMPRESSION, 1])
                ok, buf = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
                if not ok:
                    raise ValueError(f'cannot encode frame {frame.name} as {compression}')
                msg = Compressed(header=header, format=f'rgb8; {compression} compressed bgr8',
                                 data=buf.reshape(-1))
                writer.write(img_conn, ns, store.serialize_cdr(msg, COMPRESSED))
            counts[topic] += 1
            if label is not None:
                label = np.asarray(label)
                if label.shape != (h, w) or label.dtype.kind not in 'ui':
                    raise ValueError(f'label of frame {frame.name or counts[topic] - 1}: expected '
                                     f'{h}×{w} integer class ids, got {label.dtype} '
                                     f'{label.shape}')
                if label.size and (label.min() < 0 or label.max() > 255):
                    raise ValueError(f'label of frame {frame.name}: class ids outside 0..255')
                if label_conn is None:
                    label_conn = writer.add_connection(label_topic, IMAGE, typestore=store)
                lmsg = Image(header=header, height=h, width=w, encoding='mono8',
                             is_bigendian=0, step=w,
                             data=np.ascontiguousarray(label, dtype=np.uint8).reshape(-1))
                writer.write(label_conn, ns, store.serialize_cdr(lmsg, IMAGE))
                counts[label_topic] += 1
            first = ns if first is None else min(first, ns)
            last = ns if last is None else max(last, ns)
    except BaseException:
        writer.abort()
        shutil.rmtree(out, ignore_errors=True)
        raise
    writer.close()
    if storage == 'mcap':  # rosbags writes chunk CRC 0: fill them in so damage is detected
        for file in _storage_files(out):
            seal_mcap(file)
    types = {topic: img_conn.msgtype, label_topic: IMAGE}
    topics = {t: {'type': types[t], 'count': n} for t, n in counts.items() if n}
    start = (first or 0) * 1e-9
    end = (last or 0) * 1e-9
    return {'path': str(out), 'storage': storage, 'compression': compression,
            'frames': counts[topic], 'labels': counts[label_topic], 'topics': topics,
            'start': start, 'end': end, 'duration': end - start}


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
    files = [path] if path.is_file() else _storage_files(path)
    storage = {'.mcap': 'mcap', '.db3': 'sqlite3'}.get(files[0].suffix if files else '', '?')
    duration = end - start
    topics = {t: {'type': types[t], 'count': n,
                  'rate': (n - 1) / duration if n > 1 and duration > 0 else None}
              for t, n in sorted(counts.items())}
    return {'path': str(path), 'storage': storage, 'messages': total, 'start': start,
            'end': end, 'duration': duration, 'topics': topics}
