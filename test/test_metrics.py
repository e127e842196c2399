"""Confusion matrix and mIoU against hand-computed cases."""

import numpy as np
import pytest

from vsda_ros.evaluation.metrics import ConfusionMatrix, percentiles_ms


def test_hand_computed_miou_with_ignore():
    # labels: 0 0 1 1 / 2 2 255 255 ; preds: 0 1 1 1 / 2 0 2 2
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(pred, label)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # IoU0 = 1/(2+2-1) = 1/3, IoU1 = 2/(3+2-2) = 2/3, IoU2 = 1/(1+2-1) = 1/2
    np.testing.assert_allclose(cm.iou(), [1 / 3, 2 / 3, 1 / 2])
    assert cm.miou() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(4 / 6)


def test_absent_class_is_nan_and_skipped():
    cm = ConfusionMatrix(4, ignore_index=11)
    cm.update(np.array([0, 1, 1]), np.array([0, 1, 11]))
    iou = cm.iou()
    assert iou[0] == 1.0 and iou[1] == 1.0
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    assert cm.miou() == 1.0


def test_accumulates_over_frames():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 0]), np.array([0, 1]))
    cm.update(np.array([1, 1]), np.array([1, 1]))
    assert cm.matrix.tolist() == [[1, 0], [1, 2]]
    np.testing.assert_allclose(cm.iou(), [1 / 2, 2 / 3])


def test_bad_inputs_raise():
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match='shape'):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match='outside'):
        cm.update(np.array([5]), np.array([0]))


def test_percentiles():
    p = percentiles_ms([1.0, 2.0, 3.0, 4.0, 5.0], (50, 95))
    assert p['p50'] == 3.0 and p['p95'] == pytest.approx(4.8)
    assert np.isnan(percentiles_ms([])['p50'])
