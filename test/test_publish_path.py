"""The lean publish path gives what the code before it gave (issue 26 item 5): bit for bit,
except the confidence, now computed with OpenCV's exp per class
(:func:`~vsda_ros.inference.reduction.confidence_255`), which may differ by 1 on a few pixels
per million from torch's (labels, colours and overlays stay bit-identical).

The reference implementations below are the previous code, copied: Segmenter.postprocess
(torch max + whole-frame softmax sum), colorize (``lut[labels]``), overlay (a fresh
``cv2.addWeighted``) and numpy_to_image (``tobytes``). No timing here: speed is measured by
benchmarks/publish_path.py.
"""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vsda_ros.inference.segmenter import Segmenter, SegmenterConfig, output_factor
from vsda_ros.visualize import colorize, overlay, palette_array


def ref_postprocess(logits: torch.Tensor, out_hw: tuple[int, int], max_pixels: int):
    """Segmenter.postprocess before the change: (labels, confidence)."""
    k = output_factor(out_hw, max_pixels)
    work_hw = (-(-out_hw[0] // k), -(-out_hw[1] // k))
    if tuple(logits.shape[-2:]) != work_hw:
        logits = F.interpolate(logits, size=work_hw, mode='bilinear', align_corners=False)
    best, labels = logits[0].max(dim=0)

    def full(small: torch.Tensor) -> np.ndarray:
        arr = small.to(torch.uint8).cpu().numpy()
        if k > 1:
            arr = np.repeat(np.repeat(arr, k, axis=0), k, axis=1)[: out_hw[0], : out_hw[1]]
        return np.ascontiguousarray(arr)

    total = torch.exp(logits[0] - best).sum(dim=0)
    return full(labels), full(total.reciprocal_().mul_(255.0).round_())


def new_postprocess(logits: torch.Tensor, out_hw: tuple[int, int], max_pixels: int):
    stub = SimpleNamespace(
        config=SegmenterConfig(max_output_pixels=max_pixels),
    )
    with torch.inference_mode():
        labels, confidence = Segmenter.postprocess(stub, logits, out_hw)
        return labels, confidence()


CASES = [  # classes, logits h×w, output h×w, max_output_pixels
    (19, 64, 128, (64, 128), 1 << 30),  # no upsampling
    (11, 36, 48, (360, 480), 1 << 30),  # bilinear upsampling
    (11, 37, 53, (357, 473), 1 << 30),  # odd sizes
    (19, 40, 64, (200, 301), 20_000),  # reduced grid, repeated back (k > 1)
    (2, 33, 47, (33, 47), 1 << 30),
    (255, 8, 9, (8, 9), 1 << 30),  # the largest class count the fast path takes
    (300, 8, 9, (8, 9), 1 << 30),  # beyond uint8: torch's path
]


def assert_confidence(got: np.ndarray, want: np.ndarray) -> None:
    """Within 1 of torch's, on < 0.1 % of the pixels."""
    assert got.dtype == want.dtype and got.shape == want.shape
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


@pytest.mark.parametrize('classes,h,w,out_hw,max_pixels', CASES)
@pytest.mark.parametrize('kind', ['normal', 'wide', 'ties'])
def test_postprocess_bit_identical_on_random_logits(classes, h, w, out_hw, max_pixels, kind):
    g = torch.Generator().manual_seed(classes * 1000 + h)
    logits = torch.randn(1, classes, h, w, generator=g)
    if kind == 'wide':
        logits *= 30.0  # saturated softmax, exp underflow
    elif kind == 'ties':
        logits = (logits * 0.7).round()  # many exact ties: the first index must win
    want = ref_postprocess(logits, out_hw, max_pixels)
    got = new_postprocess(logits, out_hw, max_pixels)
    assert got[0].dtype == np.uint8 and got[0].shape == out_hw
    np.testing.assert_array_equal(got[0], want[0])
    assert_confidence(got[1], want[1])


def test_postprocess_nan_and_inf_fall_back_to_torch():
    logits = torch.randn(1, 5, 20, 30, generator=torch.Generator().manual_seed(3))
    logits[0, 2, 3, 4] = float('nan')
    logits[0, 1, 5, 6] = float('inf')
    logits[0, :, 7, 8] = float('-inf')
    want = ref_postprocess(logits, (20, 30), 1 << 30)
    got = new_postprocess(logits, (20, 30), 1 << 30)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])  # NaN: torch's path


def test_postprocess_non_contiguous_and_half_logits():
    base = torch.randn(1, 30, 7, generator=torch.Generator().manual_seed(4))
    logits = base.permute(0, 2, 1).reshape(1, 7, 30, 1).expand(1, 7, 30, 12)
    for x in (logits, logits.half()):
        want, got = ref_postprocess(x, (30, 12), 1 << 30), new_postprocess(x, (30, 12), 1 << 30)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_postprocess_bit_identical_on_a_real_frame(real_data):
    from vsda_ros.models.zoo import load_model

    model = load_model('espnet-camvid').eval()
    seg = Segmenter(model, SegmenterConfig(input_size=(240, 180)))
    path = sorted((real_data / 'camvid' / 'val').glob('*.png'))[0]
    rgb = np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    logits = seg.logits(seg.preprocess(rgb))
    for out_hw in ((180, 240), rgb.shape[:2]):  # the network size, and upsampled to the frame
        want = ref_postprocess(logits, out_hw, seg.config.max_output_pixels)
        labels, confidence = seg.postprocess(logits, out_hw)
        np.testing.assert_array_equal(labels, want[0])
        assert_confidence(confidence(), want[1])
    result = seg.segment(rgb)
    np.testing.assert_array_equal(
        result.labels,
        ref_postprocess(
            seg.logits(seg.preprocess(rgb)), rgb.shape[:2], seg.config.max_output_pixels
        )[0],
    )


@pytest.mark.parametrize('shape', [(512, 1024), (37, 53), (1, 1)])
def test_colorize_and_overlay_bit_identical(shape):
    rng = np.random.default_rng(5)
    lut = palette_array([tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(19)])
    labels = rng.integers(0, 256, shape).astype(np.uint8)  # ids beyond the palette: black
    image = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
    want_color = lut[labels]
    np.testing.assert_array_equal(colorize(labels, lut), want_color)
    out = np.empty((*shape, 3), np.uint8)
    assert colorize(labels, lut, out=out) is out
    np.testing.assert_array_equal(out, want_color)
    for alpha in (0.0, 0.35, 0.5, 1.0):
        want = cv2.addWeighted(image, 1.0 - alpha, want_color, alpha, 0.0)
        np.testing.assert_array_equal(overlay(image, want_color, alpha), want)
        blended = np.empty_like(image)
        np.testing.assert_array_equal(overlay(image, want_color, alpha, out=blended), want)


def test_colorize_other_label_dtypes_fall_back():
    lut = palette_array([(1, 2, 3), (4, 5, 6)])
    labels = np.array([[0, 1], [1, 0]], dtype=np.int64)
    np.testing.assert_array_equal(colorize(labels, lut), lut[labels])


# ---- the rclpy side: vsda_ros.ros.outputs -------------------------------------------------------
def ref_image_data(array: np.ndarray) -> bytes:
    """numpy_to_image's pixels before the change."""
    return np.ascontiguousarray(array).tobytes()


def _frame(h: int, w: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 12, (h, w)).astype(np.uint8)
    conf = rng.integers(0, 256, (h, w)).astype(np.uint8)
    rgb = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    return SimpleNamespace(labels=labels, confidence=conf), rgb


def _header(sec: int = 12, frame_id: str = 'cam_optical'):
    from std_msgs.msg import Header

    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = sec, 345
    return header


def test_output_messages_bit_identical_with_header_copied():
    pytest.importorskip('sensor_msgs.msg')
    from vsda_ros.ros.outputs import OUTPUTS, OutputWriter

    lut = palette_array(
        [tuple(int(v) for v in c) for c in np.random.default_rng(1).integers(0, 256, (12, 3))]
    )
    writer = OutputWriter(lut)
    kept = []
    for i, (h, w) in enumerate([(36, 48), (36, 48), (20, 31)]):  # reuse, then a new size
        seg, rgb = _frame(h, w, i)
        msgs = writer.messages(seg, rgb, _header(i), 0.4)
        color = lut[seg.labels]
        want = {
            'mask': seg.labels,
            'color_mask': color,
            'overlay': cv2.addWeighted(rgb, 0.6, color, 0.4, 0.0),
            'confidence': seg.confidence,
        }
        assert list(msgs) == list(OUTPUTS)
        for name, msg in msgs.items():
            arr = want[name]
            assert bytes(msg.data) == ref_image_data(arr), name
            assert (msg.height, msg.width) == (h, w)
            assert msg.encoding == ('mono8' if arr.ndim == 2 else 'rgb8')
            assert msg.step == w * (1 if arr.ndim == 2 else 3) and msg.is_bigendian == 0
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (i, 345)
            assert msg.header.frame_id == 'cam_optical'
        kept.append((msgs, {n: ref_image_data(a) for n, a in want.items()}))
    for msgs, want in kept:  # reused buffers never change a message already built
        assert all(bytes(msgs[n].data) == want[n] for n in msgs)


def test_publish_sends_mask_first_and_only_wanted_outputs():
    pytest.importorskip('sensor_msgs.msg')
    from vsda_ros.ros.outputs import OutputWriter

    sent, locked = [], []

    class Pub:
        def __init__(self, name: str) -> None:
            self.name = name

        def publish(self, msg) -> None:
            assert locked, 'published outside rcl()'
            sent.append((self.name, msg))

    @contextmanager
    def rcl():
        locked.append(1)
        try:
            yield
        finally:
            locked.pop()

    seg, rgb = _frame(10, 14, 7)
    pubs = {n: Pub(n) for n in ('mask', 'color_mask', 'overlay', 'confidence')}
    writer = OutputWriter(palette_array([(255, 0, 0)] * 12))
    assert writer.publish(pubs, seg, rgb, _header(), 0.5, lambda n: True, rcl) == [
        'mask',
        'color_mask',
        'overlay',
        'confidence',
    ]
    assert [n for n, _ in sent] == ['mask', 'color_mask', 'overlay', 'confidence']
    sent.clear()
    calls = []

    class Lazy:
        labels = seg.labels

        @property
        def confidence(self) -> np.ndarray:
            calls.append(1)
            return seg.confidence

    lazy = Lazy()
    assert writer.publish(pubs, lazy, rgb, _header(), 0.5, lambda n: n == 'overlay', rcl) == [
        'overlay'
    ]
    assert not calls  # the confidence is not computed when nobody listens
    expected = cv2.addWeighted(rgb, 0.5, palette_array([(255, 0, 0)] * 12)[seg.labels], 0.5, 0)
    assert bytes(sent[0][1].data) == expected.tobytes()
