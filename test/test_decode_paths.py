"""The node and the bag reader decode images with one implementation: the same message gives
identical arrays through ``vsda_ros.ros.conversions`` (rclpy messages, the node's path) and
through a rosbag2 bag read by :class:`~vsda_ros.data.bags.BagSource` (rosbags messages of the
same CDR bytes, the offline path)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip('sensor_msgs.msg')
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from vsda_ros.data.bags import COMPRESSED, IMAGE, BagSource  # noqa: E402
from vsda_ros.ros.conversions import message_to_rgb, mono8_to_array  # noqa: E402

H, W = 6, 8
RNG = np.random.default_rng(7)


def _raw(encoding: str, array: np.ndarray, pad: int = 0, bigendian: int = 0) -> Image:
    rows = np.ascontiguousarray(array).view(np.uint8).reshape(H, -1)
    if pad:
        rows = np.concatenate([rows, np.zeros((H, pad), np.uint8)], axis=1)
    msg = Image(height=H, width=W, encoding=encoding, is_bigendian=bigendian, step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


def _compressed(fmt: str, image: np.ndarray, ext: str) -> CompressedImage:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return CompressedImage(format=fmt, data=buf.tobytes())


def _cases() -> dict[str, Image | CompressedImage]:
    rgb = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    smooth = cv2.resize(RNG.integers(0, 256, (2, 2, 3), dtype=np.uint8), (W, H))
    return {
        'rgb8': _raw('rgb8', rgb),
        'rgb8_padded': _raw('rgb8', rgb, pad=4),
        'bgr8': _raw('bgr8', rgb),
        'mono8': _raw('mono8', rgb[..., 0]),
        'mono16': _raw('mono16', RNG.integers(0, 65536, (H, W), dtype=np.uint16)),
        'yuv422': _raw('yuv422', RNG.integers(0, 256, (H, W * 2), dtype=np.uint8)),
        'jpeg': _compressed('rgb8; jpeg compressed bgr8', smooth, '.jpg'),
        'jpeg_grey': _compressed('mono8; jpeg compressed mono8', smooth[..., 0], '.jpg'),
        'png': _compressed('rgb8; png compressed bgr8', rgb, '.png'),
    }


def _write(out: Path, messages: dict[str, tuple[str, object]]) -> None:
    """One topic per name, each message's rclpy CDR bytes written as they are."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from vsda_ros.data.bags import typestore

    store = typestore()
    writer = Writer(out, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        for i, (topic, (msgtype, msg)) in enumerate(messages.items()):
            conn = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conn, (i + 1) * 10**9, serialize_message(msg))
    finally:
        writer.close()


def test_node_path_and_bag_path_decode_every_encoding_identically(tmp_path: Path) -> None:
    cases = _cases()
    messages = {
        f'/{name}': (COMPRESSED if isinstance(msg, CompressedImage) else IMAGE, msg)
        for name, msg in cases.items()
    }
    _write(tmp_path / 'bag', messages)
    for topic, (_, msg) in messages.items():
        live = message_to_rgb(msg)
        frames = list(BagSource(tmp_path / 'bag', topic=topic))
        assert len(frames) == 1, topic
        recorded = frames[0].image
        assert live.dtype == recorded.dtype == np.uint8, topic
        assert live.shape == recorded.shape == (H, W, 3), topic
        assert np.array_equal(live, recorded), topic


def test_node_path_and_bag_path_decode_labels_identically(tmp_path: Path) -> None:
    labels = RNG.integers(0, 12, (H, W), dtype=np.uint8)
    image, label = (
        _raw('rgb8', RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)),
        _raw('mono8', labels, pad=2),
    )
    for msg in (image, label):
        msg.header.stamp.sec, msg.header.frame_id = 5, 'cam'
    _write(
        tmp_path / 'bag', {'/camera/image_raw': (IMAGE, image), '/camera/labels': (IMAGE, label)}
    )
    pairs = list(BagSource(tmp_path / 'bag', label_topic='/camera/labels').labelled())
    assert len(pairs) == 1
    recorded = pairs[0][1]
    assert np.array_equal(recorded, labels)
    assert np.array_equal(mono8_to_array(label), recorded)
