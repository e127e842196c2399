"""sensor_msgs images ⇄ numpy, with validation.

Decoding is :mod:`vsda_ros.data.decode` (shared with the bag reader); this module adds the
rclpy side: dispatch on the message type and numpy → ``sensor_msgs/Image``.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from vsda_ros.data.decode import BYTES_PER_PIXEL, compressed_to_rgb, image_to_rgb  # noqa: F401


def message_to_rgb(msg: Image | CompressedImage) -> np.ndarray:
    """Either image message → H×W×3 uint8 RGB (see :func:`image_to_rgb`)."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)


def numpy_to_image(array: np.ndarray, header=None, encoding: str | None = None) -> Image:
    """H×W uint8 → mono8 or H×W×3 uint8 → rgb8 ``sensor_msgs/Image``, with ``header`` copied."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f'expected uint8, got {array.dtype}')
    if array.ndim == 2:
        enc, channels = 'mono8', 1
    elif array.ndim == 3 and array.shape[2] == 3:
        enc, channels = 'rgb8', 3
    else:
        raise ValueError(f'expected H×W or H×W×3, got shape {array.shape}')
    if encoding is not None and encoding != enc:
        raise ValueError(f'array of shape {array.shape} cannot be encoded as {encoding}')
    msg = Image()
    if header is not None:
        msg.header.stamp.sec = header.stamp.sec
        msg.header.stamp.nanosec = header.stamp.nanosec
        msg.header.frame_id = header.frame_id
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = enc
    msg.is_bigendian = 0
    msg.step = msg.width * channels
    msg.data = array.tobytes()
    return msg


def mono8_to_array(msg: Image) -> np.ndarray:
    """A mono8 ``sensor_msgs/Image`` (e.g. the node's ``mask``) → H×W uint8 (a copy).

    Raises ``ValueError`` for another encoding or a size that does not match.
    """
    if msg.encoding != 'mono8':
        raise ValueError(f'expected a mono8 image, got {msg.encoding!r}')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if step < w or step * h != len(msg.data):
        raise ValueError(f'mono8 data size {len(msg.data)} does not fit {w}x{h} (step {step})')
    return np.frombuffer(msg.data, np.uint8).reshape(h, step)[:, :w].copy()
