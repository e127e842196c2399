"""Labelled source frames for the whole-network recipes: loaded once, sampled as random crops.

Any labelled folder that :func:`vsda_ros.data.labelled.open_labelled` reads works: CamVid layout
(label = the image's file name) or Cityscapes layout (``*_leftImg8bit.png`` ↔
``*_gtFine_labelIds.png``, converted to the 19 train ids, 255 = ignore). Labels are mapped to
the *model's* class ids once, at load time (:data:`SOURCE_MAPS`); everything that is not a model
class becomes :data:`IGNORE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vsda_ros.models.zoo import CITYSCAPES_TO_CAMVID

#: label value the losses skip.
IGNORE = 255

#: CamVid-11 id → Cityscapes train id (Sky→sky, Building→building, Pole→pole, Road→road,
#: Pavement→sidewalk, Tree→vegetation, SignSymbol→traffic sign, Fence→fence, Car→car,
#: Pedestrian→person, Bicyclist→bicycle); CamVid void (11) → ignore.
CAMVID_TO_CITYSCAPES = [10, 2, 5, 0, 1, 8, 7, 4, 13, 11, 18]

#: name → (LUT from source label id to model class id, number of model classes it is for).
SOURCE_MAPS: dict[str, tuple[list[int], int]] = {
    'camvid-cityscapes': (CAMVID_TO_CITYSCAPES, 19),
    'cityscapes-camvid': (CITYSCAPES_TO_CAMVID, 11),
}


def source_lut(name: str | None, num_classes: int) -> np.ndarray:
    """A 256-entry uint8 LUT: source label id → model class id (``IGNORE`` elsewhere).

    ``None`` keeps ids below ``num_classes``. Raises ``ValueError`` for an unknown map or one
    made for another number of model classes.
    """
    lut = np.full(256, IGNORE, np.uint8)
    if name is None:
        lut[:num_classes] = np.arange(num_classes, dtype=np.uint8)
        return lut
    if name not in SOURCE_MAPS:
        raise ValueError(f'unknown source_map {name!r}; known: {", ".join(SOURCE_MAPS)}')
    table, classes = SOURCE_MAPS[name]
    if classes != num_classes:
        raise ValueError(
            f'source_map {name} maps to {classes} classes but the model has {num_classes}'
        )
    lut[: len(table)] = np.asarray(table, dtype=np.uint8)
    return lut


def resize_pair(
    image: np.ndarray, label: np.ndarray, height: int, size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (area) and its label (nearest) to ``size`` = (w, h), or to ``height``
    keeping the aspect when ``size`` is ``None``."""
    if size is None:
        h = int(height)
        size = (int(round(image.shape[1] * h / image.shape[0])), h)
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image, label
    return (
        cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA),
        cv2.resize(label, tuple(size), interpolation=cv2.INTER_NEAREST),
    )


@dataclass
class LabelledSource:
    """In-memory labelled frames: ``images`` H×W×3 uint8 RGB, ``labels`` H×W uint8 model class
    ids (``IGNORE`` = 255 elsewhere)."""

    images: list[np.ndarray]
    labels: list[np.ndarray]

    @classmethod
    def load(
        cls,
        folder: str | Path,
        labels: str | Path,
        num_classes: int,
        source_map: str | None = None,
        height: int = 360,
        size: tuple[int, int] | None = None,
        max_frames: int | None = None,
    ) -> 'LabelledSource':
        """Read a labelled folder (see the module docstring) and map its labels.

        Raises ``FileNotFoundError`` (missing folder or label file) or ``ValueError`` (bad map,
        empty folder, label/frame size mismatch).
        """
        from vsda_ros.data.labelled import open_labelled

        lut = source_lut(source_map, num_classes)
        images, labs = [], []
        for frame, label in open_labelled(folder, labels=labels, max_frames=max_frames):
            img, lab = resize_pair(frame.image, lut[label], height, size)
            images.append(img)
            labs.append(lab)
        if not images:
            raise ValueError(f'no labelled frames in {folder}')
        return cls(images, labs)

    def __len__(self) -> int:
        return len(self.images)

    def sample(
        self, rng: np.random.Generator, batch: int, crop: tuple[int, int] | None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``batch`` random frames, each randomly cropped to ``crop`` = (w, h) and flipped
        horizontally with probability ½; returns (images, labels)."""
        images, labels = [], []
        for _ in range(batch):
            k = int(rng.integers(len(self.images)))
            img, lab = self.images[k], self.labels[k]
            if crop is not None:
                h, w = img.shape[:2]
                cw, ch = min(crop[0], w), min(crop[1], h)
                x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                img, lab = img[y0 : y0 + ch, x0 : x0 + cw], lab[y0 : y0 + ch, x0 : x0 + cw]
            if rng.random() < 0.5:
                img, lab = img[:, ::-1], lab[:, ::-1]
            images.append(np.ascontiguousarray(img))
            labels.append(np.ascontiguousarray(lab))
        return images, labels
