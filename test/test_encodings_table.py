"""The image-encoding table of docs/install.md is what the node does.

For every row marked **yes** in the "node" column a real ``sensor_msgs/Image`` of that encoding is
built from a known RGB picture and decoded with ``vsda_ros.ros.conversions.message_to_rgb`` (the
node's decoder) to an H×W×3 uint8 array close to the picture; every row marked **no** must be
rejected with a ``ValueError``; and every encoding the decoder knows is in the table.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('rclpy')
from sensor_msgs.msg import Image  # noqa: E402

from vsda_ros.data.decode import BYTES_PER_PIXEL  # noqa: E402
from vsda_ros.ros.conversions import message_to_rgb  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / 'docs' / 'install.md'
H, W = 24, 32


def _table() -> dict[str, str]:
    """encoding → 'yes'/'no' from the rows ``| `enc` | cv_bridge | node | … |``."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r'\|\s*`([^`]+)`\s*\|[^|]*\|\s*(yes|no)\s*\|', line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


TABLE = _table()


def _picture() -> np.ndarray:
    """A smooth RGB picture whose channels differ everywhere (channel-order mistakes show)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    r = 40 + 170 * x / (W - 1)
    g = 30 + 150 * y / (H - 1)
    b = np.full_like(r, 200.0) - 60 * x / (W - 1)
    return np.stack([r, g, b], axis=-1).round().astype(np.uint8)


def _grey(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Mosaic: ``pattern`` names the colours of the 2×2 cell, row by row (e.g. 'rggb')."""
    out = np.empty(rgb.shape[:2], rgb.dtype)
    for i, colour in enumerate(pattern):
        dy, dx = divmod(i, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, 'rgb'.index(colour)]
    return out


def _yuv422(rgb: np.ndarray, order: str) -> np.ndarray:
    """BT.601 limited-range 4:2:2, chroma averaged over each pixel pair; order 'uyvy'/'yuyv'."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    u2 = (u[:, 0::2] + u[:, 1::2]) / 2
    v2 = (v[:, 0::2] + v[:, 1::2]) / 2
    y0, y1 = y[:, 0::2], y[:, 1::2]
    parts = [u2, y0, v2, y1] if order == 'uyvy' else [y0, u2, y1, v2]
    packed = np.stack(parts, axis=-1).reshape(rgb.shape[0], -1)
    return np.clip(packed.round(), 0, 255).astype(np.uint8)


def _u16(a: np.ndarray) -> np.ndarray:
    return a.astype('<u2') * 257


#: encoding → (the message's pixel array from the RGB picture, what decoding must give back
#: (RGB, or grey in all channels), the mean absolute error allowed)
def _encode(encoding: str, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    grey3 = np.repeat(_grey(rgb)[..., None], 3, axis=-1)
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    if encoding in ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'rgb16', 'bgr16', 'rgba16', 'bgra16'):
        arr = rgb[..., ::-1] if encoding.startswith('bgr') else rgb
        if 'a' in encoding[3:4]:
            arr = np.concatenate([arr, alpha], axis=-1)
        return (_u16(arr) if encoding.endswith('16') else arr), rgb, 0.5
    if encoding in ('mono8', 'mono16'):
        grey = _grey(rgb)
        return (_u16(grey) if encoding == 'mono16' else grey), grey3, 0.5
    if encoding.startswith('bayer_'):
        pattern = encoding[len('bayer_') : -2 if encoding.endswith('16') else -1]
        mosaic = _bayer(rgb, pattern)
        return (_u16(mosaic) if encoding.endswith('16') else mosaic), rgb, 8.0
    if encoding in ('yuv422', 'uyvy'):
        return _yuv422(rgb, 'uyvy'), rgb, 6.0
    if encoding in ('yuv422_yuy2', 'yuyv'):
        return _yuv422(rgb, 'yuyv'), rgb, 6.0
    raise AssertionError(f'no encoder for {encoding} in this test: add one to _encode')


def _message(encoding: str, pixels: np.ndarray) -> Image:
    msg = Image()
    msg.header.frame_id = 'camera'
    msg.height, msg.width = H, W
    msg.encoding = encoding
    msg.is_bigendian = 0
    data = np.ascontiguousarray(pixels).tobytes()
    msg.step = len(data) // H
    msg.data = data
    return msg


def test_table_lists_every_encoding_the_decoder_knows():
    assert len(TABLE) >= 20, f'the encoding table in {DOC.name} did not parse: {TABLE}'
    missing = set(BYTES_PER_PIXEL) - set(TABLE)
    assert not missing, f'decoded by the node but not in the table of {DOC.name}: {missing}'
    wrong = {e for e in BYTES_PER_PIXEL if TABLE[e] != 'yes'}
    assert not wrong, f'decoded by the node but marked "no" in {DOC.name}: {wrong}'


@pytest.mark.parametrize('encoding', sorted(e for e, node in TABLE.items() if node == 'yes'))
def test_accepted_encoding_decodes_to_rgb(encoding):
    rgb = _picture()
    pixels, expected, tolerance = _encode(encoding, rgb)
    out = message_to_rgb(_message(encoding, pixels))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    # away from the border (demosaicing edges)
    err = np.abs(out.astype(np.int16) - expected.astype(np.int16))[2:-2, 2:-2].mean()
    assert err <= tolerance, f'{encoding}: mean abs error {err:.2f} > {tolerance}'


@pytest.mark.parametrize('encoding', sorted(e for e, node in TABLE.items() if node == 'no'))
def test_rejected_encoding_raises_a_clear_error(encoding):
    channels = int(m.group(1)) if (m := re.search(r'C(\d)$', encoding)) else 1
    dtype = {'8U': np.uint8, '16': np.uint16, '32': np.float32}.get(encoding[:2], np.uint8)
    pixels = np.zeros((H, W, channels), dtype)
    with pytest.raises(ValueError, match=re.escape(encoding)):
        message_to_rgb(_message(encoding, pixels))
