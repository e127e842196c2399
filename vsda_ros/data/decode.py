"""Image messages → numpy, with validation: the one decoder for live and recorded data.

Works on any object shaped like ``sensor_msgs/Image`` or ``CompressedImage`` — rclpy messages
(the node, through :mod:`vsda_ros.ros.conversions`) and rosbags messages (bags, through
:mod:`vsda_ros.data.bags`) alike — so it imports no rclpy. Decoding goes through
``rosbags.image``; before that, every raw ``Image`` is checked so that a malformed message raises
a ``ValueError`` with a clear message instead of a numpy/OpenCV error or a silently wrong
picture.

- :func:`message_to_rgb`: either message type → H×W×3 uint8 RGB (dispatches to
  :func:`image_to_rgb` / :func:`compressed_to_rgb`);
- :func:`label_to_array`: a mono8/mono16 Image of class ids → H×W uint8/uint16.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
from rosbags.image import ImageError, compressed_image_to_cvimage, image_to_cvimage

#: encoding → bytes per pixel, for every raw encoding we can turn into rgb8.
BYTES_PER_PIXEL: dict[str, int] = {
    'rgb8': 3,
    'bgr8': 3,
    'rgba8': 4,
    'bgra8': 4,
    'mono8': 1,
    'rgb16': 6,
    'bgr16': 6,
    'rgba16': 8,
    'bgra16': 8,
    'mono16': 2,
    'bayer_rggb8': 1,
    'bayer_bggr8': 1,
    'bayer_gbrg8': 1,
    'bayer_grbg8': 1,
    'bayer_rggb16': 2,
    'bayer_bggr16': 2,
    'bayer_gbrg16': 2,
    'bayer_grbg16': 2,
    'yuv422': 2,
    'uyvy': 2,
    'yuv422_yuy2': 2,
    'yuyv': 2,
}
_YUV422 = {'yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv'}


def _check_rgb(img: np.ndarray, what: str) -> np.ndarray:
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(
            f'{what}: decoding did not give an H×W×3 uint8 image '
            f'(got {None if img is None else (img.dtype, img.shape)})'
        )
    return np.ascontiguousarray(img)


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image → H×W×3 uint8 RGB (a copy that does not alias ``msg``).

    Raises:
        ValueError: empty image, unknown encoding, ``step``/size mismatch, odd width for YUV 4:2:2.
    """
    enc = msg.encoding
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    n = len(msg.data)
    if h == 0 or w == 0 or n == 0:
        raise ValueError(f'empty image ({w}x{h}, {n} data bytes)')
    if enc not in BYTES_PER_PIXEL:
        raise ValueError(
            f'unsupported image encoding {enc!r}; supported: {", ".join(sorted(BYTES_PER_PIXEL))}'
        )
    bpp = BYTES_PER_PIXEL[enc]
    if enc in _YUV422 and w % 2:
        raise ValueError(f'{enc} image has odd width {w} (4:2:2 needs an even width)')
    if step < w * bpp:
        raise ValueError(f'step {step} is smaller than width×bytes-per-pixel = {w}×{bpp} for {enc}')
    if step * h != n:
        raise ValueError(f'data size {n} != step×height = {step}×{h} = {step * h}')
    buf = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, step)
    if step != w * bpp:  # drop row padding: rosbags assumes tightly packed rows
        buf = buf[:, : w * bpp]
    packed = SimpleNamespace(
        encoding=enc,
        height=h,
        width=w,
        is_bigendian=msg.is_bigendian,
        data=np.ascontiguousarray(buf).data,
    )
    try:
        # rosbags' stub names its generated Image class; it reads only the fields set above
        img = image_to_cvimage(packed, 'rgb8')  # type: ignore[arg-type]
    except (ImageError, cv2.error) as exc:
        raise ValueError(f'cannot convert {enc} to rgb8: {exc}') from None
    if np.shares_memory(img, buf):  # rgb8 → rgb8 is a no-op view of the message's buffer
        img = img.copy()
    return _check_rgb(img, enc)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png, colour or grey) → H×W×3 uint8 RGB.

    Raises:
        ValueError: empty data or data that OpenCV cannot decode.
    """
    if len(msg.data) == 0:
        raise ValueError(f'empty compressed image (format {msg.format!r})')
    try:
        img = compressed_image_to_cvimage(msg, 'rgb8')
    except (AssertionError, ImageError, cv2.error):
        # rosbags decodes with IMREAD_ANYCOLOR; a grey JPEG then cannot go bgr8→rgb8.
        bgr = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(
                f'cannot decode compressed image (format {msg.format!r}, {len(msg.data)} bytes)'
            ) from None
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return _check_rgb(img, f'compressed ({msg.format})')


def message_to_rgb(msg: Any) -> np.ndarray:
    """An Image or a CompressedImage (rclpy or rosbags) → H×W×3 uint8 RGB, a fresh array.

    A message with a ``format`` field is a CompressedImage (:func:`compressed_to_rgb`), any
    other an Image (:func:`image_to_rgb`).

    Raises:
        ValueError: the message cannot be decoded (also when rosbags-image fails on it with a
            ``TypeError``).
    """
    try:
        return compressed_to_rgb(msg) if hasattr(msg, 'format') else image_to_rgb(msg)
    except TypeError as exc:  # rosbags-image on a message it cannot handle at all
        raise ValueError(
            f'cannot convert {getattr(msg, "encoding", "image")} to rgb8: {exc}'
        ) from None


#: label encodings → (canonical encoding, bytes per pixel).
_LABEL_ENCODINGS = {
    'mono8': ('mono8', 1),
    '8UC1': ('mono8', 1),
    'mono16': ('mono16', 2),
    '16UC1': ('mono16', 2),
}


def label_to_array(msg: Any) -> np.ndarray:
    """A mono8 / mono16 (or 8UC1 / 16UC1) Image of class ids → H×W uint8 / uint16, a fresh
    array (row padding dropped, big-endian mono16 swapped to native).

    Raises:
        ValueError: another encoding, an empty image, or ``step``/data size that do not fit.
    """
    if msg.encoding not in _LABEL_ENCODINGS:
        raise ValueError(f'label image has encoding {msg.encoding!r}; expected mono8 or mono16')
    enc, bpp = _LABEL_ENCODINGS[msg.encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if h == 0 or w == 0 or step < w * bpp or step * h != data.size:
        raise ValueError(f'label {enc} {w}x{h}: step {step} and {data.size} bytes do not fit')
    rows = data.reshape(h, step)[:, : w * bpp]
    if bpp == 1:
        return rows.copy()
    return np.ascontiguousarray(rows).view('>u2' if msg.is_bigendian else '<u2').astype(np.uint16)
