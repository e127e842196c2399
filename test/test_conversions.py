"""sensor_msgs images ⇄ numpy (vsda_ros.ros.conversions): encodings and malformed messages."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip('sensor_msgs.msg')
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from vsda_ros.ros.conversions import (  # noqa: E402
    compressed_to_rgb,
    image_to_rgb,
    message_to_rgb,
    numpy_to_image,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)


def make_image(array: np.ndarray, encoding: str, pad: int = 0) -> Image:
    h, w = array.shape[:2]
    rows = array.reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


def test_rgb8_round_trip():
    out = image_to_rgb(make_image(RGB, 'rgb8'))
    assert out.dtype == np.uint8 and out.shape == (5, 6, 3)
    assert np.array_equal(out, RGB)


def test_bgr8_is_swapped_to_rgb():
    assert np.array_equal(image_to_rgb(make_image(RGB[..., ::-1].copy(), 'bgr8')), RGB)


def test_rgba8_drops_alpha():
    rgba = np.concatenate([RGB, np.full((5, 6, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb(make_image(rgba, 'rgba8')), RGB)


def test_mono8_becomes_grey_rgb():
    grey = RGB[..., 0].copy()
    out = image_to_rgb(make_image(grey, 'mono8'))
    assert out.shape == (5, 6, 3)
    for c in range(3):
        assert np.array_equal(out[..., c], grey)


def test_row_padding_is_dropped():
    assert np.array_equal(image_to_rgb(make_image(RGB, 'rgb8', pad=6)), RGB)


def test_yuv422_even_width_decodes():
    msg = make_image(RNG.integers(0, 256, (4, 6, 2), dtype=np.uint8), 'yuv422')
    assert image_to_rgb(msg).shape == (4, 6, 3)


def test_result_does_not_alias_message():
    msg = make_image(RGB, 'rgb8')
    out = image_to_rgb(msg)
    out[:] = 0
    assert np.array_equal(image_to_rgb(msg), RGB)


@pytest.mark.parametrize(
    'mutate, match',
    [
        (lambda m: setattr(m, 'data', b''), 'empty'),
        (lambda m: setattr(m, 'height', 0), 'empty'),
        (lambda m: setattr(m, 'step', m.step + 3), r'step×height'),
        (lambda m: setattr(m, 'step', m.step - 3), 'smaller than width'),
        (lambda m: setattr(m, 'data', bytes(m.data)[:-1]), r'data size'),
        (lambda m: setattr(m, 'encoding', 'weird42'), 'unsupported image encoding'),
        (lambda m: setattr(m, 'encoding', ''), 'unsupported image encoding'),
    ],
)
def test_bad_raw_images_raise_value_error(mutate, match):
    msg = make_image(RGB, 'rgb8')
    mutate(msg)
    with pytest.raises(ValueError, match=match):
        image_to_rgb(msg)


def test_yuv422_odd_width_is_rejected():
    msg = make_image(RNG.integers(0, 256, (4, 5, 2), dtype=np.uint8), 'yuv422')
    with pytest.raises(ValueError, match='odd width'):
        image_to_rgb(msg)


def test_compressed_jpeg_and_png():
    big = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_NEAREST)
    ok, png = cv2.imencode('.png', cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format='png')
    msg.data = png.tobytes()
    assert np.array_equal(message_to_rgb(msg), big)  # lossless: exact, and in RGB order
    ok, jpg = cv2.imencode('.jpg', cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format='jpeg')
    msg.data = jpg.tobytes()
    out = compressed_to_rgb(msg)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8


def test_compressed_grey_png_gives_rgb():
    ok, png = cv2.imencode('.png', RGB[..., 0])
    msg = CompressedImage(format='png')
    msg.data = png.tobytes()
    out = compressed_to_rgb(msg)
    assert out.shape == (5, 6, 3) and np.array_equal(out[..., 1], RGB[..., 0])


@pytest.mark.parametrize('data, match', [(b'', 'empty'), (b'not an image', 'cannot decode')])
def test_bad_compressed_raises_value_error(data, match):
    msg = CompressedImage(format='jpeg')
    msg.data = data
    with pytest.raises(ValueError, match=match):
        compressed_to_rgb(msg)


def test_numpy_to_image_mono8_and_rgb8_copy_header():
    src = Image()
    src.header.stamp.sec, src.header.stamp.nanosec, src.header.frame_id = 12, 345, 'cam'
    labels = RGB[..., 1].copy()
    m = numpy_to_image(labels, src.header)
    assert (m.encoding, m.height, m.width, m.step) == ('mono8', 5, 6, 6)
    assert (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == (12, 345, 'cam')
    assert np.array_equal(np.frombuffer(m.data, np.uint8).reshape(5, 6), labels)
    c = numpy_to_image(RGB, src.header)
    assert (c.encoding, c.step) == ('rgb8', 18)
    assert np.array_equal(image_to_rgb(c), RGB)
    src.header.frame_id = 'changed'
    assert c.header.frame_id == 'cam'  # a copy, not a reference


def test_numpy_to_image_rejects_bad_arrays():
    with pytest.raises(ValueError):
        numpy_to_image(RGB.astype(np.float32))
    with pytest.raises(ValueError):
        numpy_to_image(np.zeros((2, 2, 4), np.uint8))
