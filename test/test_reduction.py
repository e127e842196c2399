"""Score reductions (labels = first argmax over C, confidence = round(max softmax × 255)):
the numpy/OpenCV passes agree with torch's definitions, ties and NaN included (issue 26 item
5: the publish path's largest cost)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vsda_ros.inference.reduction import argmax_first, confidence_255, max_softmax_255


def _torch_reference(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.from_numpy(scores)
    best, idx = t.max(dim=0)
    return idx.numpy().astype(np.uint8), max_softmax_255(t, best).to(torch.uint8).numpy()


@pytest.mark.parametrize('shape', [(11, 36, 48), (19, 64, 128), (3, 7, 5), (1, 4, 4)])
@pytest.mark.parametrize('scale', [1.0, 4.0, 30.0])
def test_labels_and_confidence_match_torch(shape, scale):
    rng = np.random.default_rng(sum(shape))
    scores = (rng.standard_normal(shape) * scale).astype(np.float32)
    labels, best = argmax_first(scores)
    ref_labels, ref_conf = _torch_reference(scores)
    assert np.array_equal(labels, ref_labels)
    assert np.array_equal(best, scores.max(axis=0))
    conf = confidence_255(scores, best)
    assert conf.dtype == np.uint8 and conf.shape == shape[1:]
    diff = np.abs(conf.astype(int) - ref_conf)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # exp implementations differ in ulps


def test_ties_go_to_the_lowest_class_and_nan_is_refused():
    scores = np.random.default_rng(0).integers(-2, 2, (7, 30, 40)).astype(np.float32)
    labels, best = argmax_first(scores)
    assert np.array_equal(labels, torch.from_numpy(scores).max(dim=0).indices.numpy())
    scores[:, 3, 4] = 1.0  # an all-equal pixel → class 0, confidence 255/7
    labels, best = argmax_first(scores)
    assert labels[3, 4] == 0 and confidence_255(scores, best)[3, 4] == round(255 / 7)
    scores[2, 5, 5] = np.nan
    assert argmax_first(scores) is None  # the caller falls back to torch


def test_segmenter_postprocess_uses_them_and_torch_on_nan():
    from vsda_ros.inference import Segmenter
    from vsda_ros.models.zoo import ZOO, build

    seg = Segmenter(build(copy.deepcopy(ZOO['espnet-camvid'].meta)).eval())
    logits = torch.randn(1, 11, 24, 32) * 3
    labels, confidence = seg.postprocess(logits, (48, 64))
    up = torch.nn.functional.interpolate(
        logits, size=(48, 64), mode='bilinear', align_corners=False
    )[0]
    ref_labels, ref_conf = _torch_reference(up.numpy())
    assert np.array_equal(labels, ref_labels)
    assert np.abs(confidence().astype(int) - ref_conf).max() <= 1
    logits[0, 4, 3, 3] = float('nan')
    labels, confidence = seg.postprocess(logits, (24, 32))
    assert labels[3, 3] == 4 and confidence().shape == (24, 32)  # torch's max: the NaN's index
