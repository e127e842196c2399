"""Class names, palettes and label maps of the label sets the published models use.

Cityscapes (19 train ids, 255 = ignore) and CamVid-11 (11 = void); ``LABEL_MAPS`` maps a
model's classes onto another label set for scoring (``--map cityscapes-camvid``).
"""

from __future__ import annotations

import numpy as np

from vsda_ros.models.base import ModelMeta

CITYSCAPES_CLASSES = [
    'road',
    'sidewalk',
    'building',
    'wall',
    'fence',
    'pole',
    'traffic light',
    'traffic sign',
    'vegetation',
    'terrain',
    'sky',
    'person',
    'rider',
    'car',
    'truck',
    'bus',
    'train',
    'motorcycle',
    'bicycle',
]
CITYSCAPES_PALETTE = [
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
]
CAMVID_CLASSES = [
    'sky',
    'building',
    'pole',
    'road',
    'pavement',
    'tree',
    'sign',
    'fence',
    'car',
    'pedestrian',
    'bicyclist',
]
CAMVID_PALETTE = [
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
]
#: CamVid label value meaning "void" (ignored by metrics).
CAMVID_VOID = 11
#: Cityscapes train id → CamVid-11 id (see ../shared/data/MODELS.md).
CITYSCAPES_TO_CAMVID = [3, 4, 1, 1, 7, 2, 6, 6, 5, 5, 0, 9, 10, 8, 8, 8, 8, 10, 10]
#: named label mappings for ``--map``.
LABEL_MAPS: dict[str, list[int]] = {'cityscapes-camvid': CITYSCAPES_TO_CAMVID}


def label_mapping(name: str | None, meta: ModelMeta) -> tuple[np.ndarray | None, list[str]]:
    """(LUT from model class ids to label class ids, label class names) for ``LABEL_MAPS``
    entry ``name``; ``None`` → (``None``, the model's own classes).

    Raises ``ValueError`` for an unknown map or one made for another number of classes.
    """
    if not name:
        return None, list(meta.classes)
    if name not in LABEL_MAPS:
        raise ValueError(f'unknown label map {name!r}; known: {sorted(LABEL_MAPS)}')
    mapping = np.asarray(LABEL_MAPS[name], dtype=np.uint8)
    if len(mapping) != meta.num_classes:
        raise ValueError(
            f'label map {name} maps {len(mapping)} classes but model '
            f'{meta.name} has {meta.num_classes}'
        )
    return mapping, list(CAMVID_CLASSES)


def label_palette(name: str | None, meta: ModelMeta) -> list[tuple[int, int, int]]:
    """Colours of the label classes of :func:`label_mapping` (same arguments)."""
    return list(meta.palette) if not name else list(CAMVID_PALETTE)
