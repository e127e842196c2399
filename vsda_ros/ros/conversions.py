"""sensor_msgs images ⇄ numpy, with validation.

Decoding is :mod:`vsda_ros.data.decode`, the one implementation shared with the bag reader
(:mod:`vsda_ros.data.bags`): rclpy messages go through exactly the code recorded ones do. This
module adds the rclpy side: numpy → ``sensor_msgs/Image``.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from vsda_ros.data.decode import (
    BYTES_PER_PIXEL,
    compressed_to_rgb,
    image_to_rgb,
    label_to_array,
    message_to_rgb,
)

__all__ = [
    'BYTES_PER_PIXEL',
    'compressed_to_rgb',
    'image_message',
    'image_to_rgb',
    'message_to_rgb',
    'mono8_to_array',
    'numpy_to_image',
]


def numpy_to_image(array: np.ndarray, header=None, encoding: str | None = None) -> Image:
    """H×W uint8 → mono8 or H×W×3 uint8 → rgb8 ``sensor_msgs/Image``, with ``header`` copied."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f'expected uint8, got {array.dtype}')
    if array.ndim == 2:
        enc = 'mono8'
    elif array.ndim == 3 and array.shape[2] == 3:
        enc = 'rgb8'
    else:
        raise ValueError(f'expected H×W or H×W×3, got shape {array.shape}')
    if encoding is not None and encoding != enc:
        raise ValueError(f'array of shape {array.shape} cannot be encoded as {encoding}')
    return image_message(array.tobytes(), array.shape, header)


def image_message(data: bytes | bytearray, shape: tuple[int, ...], header=None) -> Image:
    """A mono8 (``shape`` H×W) or rgb8 (H×W×3) ``sensor_msgs/Image`` around ``data`` (the
    pixels, row-major, no padding), with ``header``'s stamp and frame_id copied.

    ``data`` must be ``bytes`` or ``bytearray``: the message's ``data`` setter turns those into
    its ``array.array`` with one memcpy, while a numpy array or memoryview would be converted
    element by element. The message owns a copy, so a caller may reuse ``data`` at once.
    """
    channels = 1 if len(shape) == 2 else int(shape[2])
    msg = Image()
    if header is not None:
        msg.header.stamp.sec = header.stamp.sec
        msg.header.stamp.nanosec = header.stamp.nanosec
        msg.header.frame_id = header.frame_id
    msg.height, msg.width = int(shape[0]), int(shape[1])
    msg.encoding = 'mono8' if channels == 1 else 'rgb8'
    msg.is_bigendian = 0
    msg.step = msg.width * channels
    msg.data = data
    return msg


def mono8_to_array(msg: Image) -> np.ndarray:
    """A mono8 ``sensor_msgs/Image`` (e.g. the node's ``mask``) → H×W uint8 (a copy), through
    :func:`~vsda_ros.data.decode.label_to_array`.

    Raises ``ValueError`` for another encoding, an empty image, or a size that does not match.
    """
    if msg.encoding != 'mono8':
        raise ValueError(f'expected a mono8 image, got {msg.encoding!r}')
    return label_to_array(msg)
