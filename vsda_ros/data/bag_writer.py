"""Write camera frames (and label masks) as a rosbag2 bag of real ROS 2 CDR messages.

The layout (what :class:`~vsda_ros.data.bags.BagSource` and ``vsda replay`` read back)::

    /camera/image_raw              sensor_msgs/msg/Image, rgb8        (compression='none')
    /camera/image_raw/compressed   sensor_msgs/msg/CompressedImage    (compression='jpeg'/'png')
    /camera/labels                 sensor_msgs/msg/Image, mono8 class ids, the image's header

with each message logged at its header stamp. Pure Python through ``rosbags`` (mcap or sqlite3);
mcap chunks are sealed with their CRC-32 afterwards (:func:`~vsda_ros.data.bag_storage.seal_mcap`)
so that later damage is detected.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from vsda_ros.data.bag_storage import BAG_SUFFIXES, seal_mcap, storage_files
from vsda_ros.data.bags import COMPRESSED, IMAGE, typestore
from vsda_ros.frames import Frame

STORAGES = ('mcap', 'sqlite3')
COMPRESSIONS = ('none', 'jpeg', 'png')


@dataclass(frozen=True)
class _Layout:
    """Where and how :func:`write_bag` writes (its arguments after checking)."""

    topic: str
    label_topic: str
    compression: str
    frame_id: str
    jpeg_quality: int


@dataclass
class _Tally:
    """Messages written per topic and the first/last header stamp (ns)."""

    counts: dict[str, int]
    first: int | None = None
    last: int | None = None
    msgtypes: dict[str, str] = field(default_factory=dict)

    def stamp(self, ns: int) -> None:
        self.first = ns if self.first is None else min(self.first, ns)
        self.last = ns if self.last is None else max(self.last, ns)


def _remove_bag(out: Path) -> None:
    """Delete an existing bag at ``out``, refusing anything that does not look like one.

    Raises:
        FileExistsError: ``out`` is a file that is not ``.mcap``/``.db3``, or a folder that
            holds more than ``metadata.yaml`` and storage files.
    """
    if out.is_file() or out.is_symlink():
        if out.suffix not in BAG_SUFFIXES:
            raise FileExistsError(f'{out} exists and is not a bag; not overwriting it')
        out.unlink()
        return
    allowed = {'metadata.yaml'}
    strangers = [
        p.name
        for p in out.iterdir()
        if p.name not in allowed and not (p.is_file() and p.suffix in BAG_SUFFIXES)
    ]
    if strangers:
        raise FileExistsError(
            f'{out} exists and holds more than a bag ({", ".join(strangers[:3])}…); not deleting it'
        )
    shutil.rmtree(out)


def _to_header(store: Any, stamp: float, frame_id: str) -> tuple[Any, int]:
    """A std_msgs/Header for ``stamp`` seconds, and the stamp in nanoseconds.

    Raises:
        ValueError: a negative stamp.
    """
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    ns = int(round(stamp * 1e9))
    if ns < 0:
        raise ValueError(f'negative stamp {stamp}')
    return Header(
        stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame_id
    ), ns


def _check_options(storage: str, compression: str) -> None:
    """Raises ``ValueError`` for a storage or compression this module does not write."""
    if storage not in STORAGES:
        raise ValueError(f'storage must be one of {", ".join(STORAGES)}, not {storage!r}')
    if compression not in COMPRESSIONS:
        raise ValueError(
            f'compression must be one of {", ".join(COMPRESSIONS)}, not {compression!r}'
        )


def _clear_target(out: Path, overwrite: bool) -> None:
    """Make room for the bag at ``out``.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is false, or it is not a bag.
    """
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise FileExistsError(f'{out} exists; pass overwrite=True (--overwrite) to replace it')
        _remove_bag(out)


def _checked_image(frame: Frame, index: int) -> np.ndarray:
    """``frame.image`` if it is H×W×3 uint8; else ``ValueError`` naming the frame."""
    image = frame.image
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f'frame {frame.name or index}: expected H×W×3 uint8 '
            f'RGB, got {image.dtype} {image.shape}'
        )
    return image


def _image_cdr(store: Any, frame: Frame, image: np.ndarray, header: Any, layout: _Layout) -> Any:
    """The CDR bytes of ``image`` as an rgb8 Image (``compression='none'``, bit-exact) or a
    jpeg/png CompressedImage (BGR-encoded, ``format`` ``'rgb8; jpeg compressed bgr8'``).

    Raises:
        ValueError: OpenCV cannot encode the image.
    """
    h, w = image.shape[:2]
    if layout.compression == 'none':
        msg = store.types[IMAGE](
            header=header,
            height=h,
            width=w,
            encoding='rgb8',
            is_bigendian=0,
            step=3 * w,
            data=np.ascontiguousarray(image).reshape(-1),
        )
        return store.serialize_cdr(msg, IMAGE)
    ext, params = (
        ('.jpg', [cv2.IMWRITE_JPEG_QUALITY, int(layout.jpeg_quality)])
        if layout.compression == 'jpeg'
        else ('.png', [cv2.IMWRITE_PNG_COMPRESSION, 1])
    )
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f'cannot encode frame {frame.name} as {layout.compression}')
    msg = store.types[COMPRESSED](
        header=header, format=f'rgb8; {layout.compression} compressed bgr8', data=buf.reshape(-1)
    )
    return store.serialize_cdr(msg, COMPRESSED)


def _label_cdr(
    store: Any, frame: Frame, label: Any, header: Any, size: tuple[int, int], index: int
) -> Any:
    """The CDR bytes of ``label`` (H×W integer class ids in 0..255, ``size`` = (H, W)) as a
    mono8 Image with the image's ``header``.

    Raises:
        ValueError: the label's shape or dtype does not fit, or ids outside 0..255.
    """
    h, w = size
    label = np.asarray(label)
    if label.shape != (h, w) or label.dtype.kind not in 'ui':
        raise ValueError(
            f'label of frame {frame.name or index}: expected '
            f'{h}×{w} integer class ids, got {label.dtype} '
            f'{label.shape}'
        )
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f'label of frame {frame.name}: class ids outside 0..255')
    msg = store.types[IMAGE](
        header=header,
        height=h,
        width=w,
        encoding='mono8',
        is_bigendian=0,
        step=w,
        data=np.ascontiguousarray(label, dtype=np.uint8).reshape(-1),
    )
    return store.serialize_cdr(msg, IMAGE)


def _write_frames(
    writer: Any, store: Any, frames: Iterable[tuple[Frame, np.ndarray | None]], layout: _Layout
) -> _Tally:
    """Write every (frame, label) pair through the opened rosbags ``writer``; the label topic's
    connection is added with the first label. Raises what the helpers raise."""
    topic, label_topic = layout.topic, layout.label_topic
    msgtype = COMPRESSED if layout.compression != 'none' else IMAGE
    tally = _Tally({topic: 0, label_topic: 0}, msgtypes={topic: msgtype, label_topic: IMAGE})
    img_conn = writer.add_connection(topic, msgtype, typestore=store)
    label_conn = None
    for frame, label in frames:
        image = _checked_image(frame, tally.counts[topic])
        header, ns = _to_header(store, frame.stamp, frame.frame_id or layout.frame_id)
        writer.write(img_conn, ns, _image_cdr(store, frame, image, header, layout))
        tally.counts[topic] += 1
        if label is not None:
            data = _label_cdr(store, frame, label, header, image.shape[:2], tally.counts[topic] - 1)
            if label_conn is None:
                label_conn = writer.add_connection(label_topic, IMAGE, typestore=store)
            writer.write(label_conn, ns, data)
            tally.counts[label_topic] += 1
        tally.stamp(ns)
    return tally


def _summary(out: Path, storage: str, layout: _Layout, tally: _Tally) -> dict:
    """:func:`write_bag`'s return value."""
    topics = {t: {'type': tally.msgtypes[t], 'count': n} for t, n in tally.counts.items() if n}
    start = (tally.first or 0) * 1e-9
    end = (tally.last or 0) * 1e-9
    return {
        'path': str(out),
        'storage': storage,
        'compression': layout.compression,
        'frames': tally.counts[layout.topic],
        'labels': tally.counts[layout.label_topic],
        'topics': topics,
        'start': start,
        'end': end,
        'duration': end - start,
    }


def write_bag(
    out: str | Path,
    frames: Iterable[tuple[Frame, np.ndarray | None]],
    topic: str = '/camera/image_raw',
    label_topic: str = '/camera/labels',
    storage: str = 'mcap',
    compression: str = 'none',
    frame_id: str = 'camera',
    overwrite: bool = False,
    jpeg_quality: int = 95,
) -> dict:
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
    _check_options(storage, compression)
    _clear_target(out, overwrite)
    if compression != 'none' and not topic.rstrip('/').endswith('/compressed'):
        topic = topic.rstrip('/') + '/compressed'
    if label_topic == topic:
        raise ValueError(f'label topic and image topic are both {topic}')
    layout = _Layout(topic, label_topic, compression, frame_id, jpeg_quality)
    store = typestore()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer(out, version=Writer.VERSION_LATEST, storage_plugin=plugin)
    writer.open()
    try:
        tally = _write_frames(writer, store, frames, layout)
    except BaseException:
        writer.abort()
        shutil.rmtree(out, ignore_errors=True)
        raise
    writer.close()
    if storage == 'mcap':  # rosbags writes chunk CRC 0: fill them in so damage is detected
        for file in storage_files(out):
            seal_mcap(file)
    return _summary(out, storage, layout, tally)
