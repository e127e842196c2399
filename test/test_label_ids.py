"""Label ids that are neither a class nor an ignore value are an error, never silently void
(issue 24, item 5: labels holding 200 scored 69.27 → 53.19 mIoU without a word)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vsda_ros.evaluation.metrics import ConfusionMatrix, LabelError
from vsda_ros.evaluation.temporal import load_clip
from vsda_ros.models.zoo import ZOO


def test_class_ids_and_ignore_values_are_scored_as_before() -> None:
    cm = ConfusionMatrix(11, ignore_index=11)
    label = np.array([[0, 10, 11, 255]], np.uint8)
    cm.update(np.array([[0, 10, 3, 3]], np.uint8), label)
    assert cm.matrix.sum() == 2 and cm.miou() == 1.0


def test_an_unknown_id_names_the_label_and_the_value() -> None:
    cm = ConfusionMatrix(11, ignore_index=11)
    with pytest.raises(LabelError, match=r'frame_7\.png: label ids 12, 200 are neither'):
        cm.update(
            np.zeros((1, 4), np.uint8), np.array([[0, 200, 12, 11]], np.uint8), where='frame_7.png'
        )


def test_allowed_unknown_ids_are_skipped_and_counted() -> None:
    cm = ConfusionMatrix(11, ignore_index=11, allow_unknown=True)
    cm.update(np.zeros((1, 4), np.uint8), np.array([[0, 200, 12, 11]], np.uint8))
    assert cm.unknown_pixels == 2 and cm.matrix.sum() == 1


def _folder(tmp_path: Path, value: int) -> tuple[Path, Path]:
    images, labels = tmp_path / 'img', tmp_path / 'lab'
    images.mkdir(parents=True)
    labels.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f'f_{i}.png'), np.full((36, 48, 3), 90, np.uint8))
        label = np.full((36, 48), 3, np.uint8)
        label[:4, :4] = value if i == 1 else 3
        cv2.imwrite(str(labels / f'f_{i}.png'), label)
    return images, labels


def test_load_clip_refuses_unknown_ids_naming_the_frame(tmp_path: Path) -> None:
    images, labels = _folder(tmp_path, 200)
    with pytest.raises(LabelError) as err:
        load_clip(str(images), str(labels), ZOO['espnet-camvid'].meta)
    assert 'f_1.png' in str(err.value) and '200' in str(err.value)


def test_load_clip_accepts_the_void_and_255(tmp_path: Path) -> None:
    for value in (11, 255):
        images, labels = _folder(tmp_path / str(value), value)
        clip = load_clip(str(images), str(labels), ZOO['espnet-camvid'].meta)
        assert clip.unknown_label_pixels == 0


def test_load_clip_can_count_unknown_ids_instead(tmp_path: Path) -> None:
    images, labels = _folder(tmp_path, 200)
    clip = load_clip(str(images), str(labels), ZOO['espnet-camvid'].meta, allow_unknown_labels=True)
    assert clip.unknown_label_pixels == 16
    cm = clip.confusion_matrix()
    cm.update(np.full((36, 48), 3, np.uint8), clip.labels[1])
    assert cm.unknown_pixels == 16
