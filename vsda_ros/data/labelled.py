"""One entry point for (frame, label) streams from any source kind: :func:`open_labelled`.

Source kinds:

* an **image folder**, with an optional label folder in

  - CamVid layout: the label has the image's file name (``0016E5_07959.png`` in both), or
  - Cityscapes layout: ``<stem>_leftImg8bit.png`` ↔ ``<stem>_gtFine_labelIds.png`` (converted
    to the 19 train ids, 255 = ignore, by :data:`CITYSCAPES_LABEL_TO_TRAIN`) or, when only that
    exists, ``<stem>_gtFine_labelTrainIds.png`` / ``_gtFine_trainIds.png`` (used as is);
* a **video file** (no labels);
* a **rosbag2** bag (folder, ``.mcap`` or ``.db3``): labels from the label topic named in
  ``labels``, or from the bag's one image topic whose name ends in ``labels``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import numpy as np

from vsda_ros.data.bags import BagSource, image_topics, is_bag, is_label_topic
from vsda_ros.data.sources import FrameSource, read_label
from vsda_ros.frames import Frame

#: Cityscapes label id → train id for the 19 evaluated classes (the official table of
#: cityscapesScripts' ``labels.py``); every other id (0–6 void, parking, rail track, guard
#: rail, bridge, tunnel, polegroup, caravan, trailer, license plate) → 255.
CITYSCAPES_TRAIN_IDS: dict[int, int] = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
IGNORE = 255
#: the same table as a 256-entry lookup: ``CITYSCAPES_LABEL_TO_TRAIN[label_ids]``.
CITYSCAPES_LABEL_TO_TRAIN = np.full(256, IGNORE, np.uint8)
for _label_id, _train_id in CITYSCAPES_TRAIN_IDS.items():
    CITYSCAPES_LABEL_TO_TRAIN[_label_id] = _train_id

CITYSCAPES_IMAGE_SUFFIX = '_leftImg8bit'
_CITYSCAPES_LABEL_IDS = '_gtFine_labelIds'
_CITYSCAPES_TRAIN_IDS = ('_gtFine_labelTrainIds', '_gtFine_trainIds')


def cityscapes_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """H×W Cityscapes label ids → H×W uint8 train ids (0..18, 255 = ignore)."""
    label_ids = np.asarray(label_ids)
    if label_ids.dtype != np.uint8:  # e.g. uint16 PNGs: ids above 255 are not classes
        label_ids = np.where((label_ids < 0) | (label_ids > 255), 0, label_ids).astype(np.uint8)
    return CITYSCAPES_LABEL_TO_TRAIN[label_ids]


def label_path(image: Path, labels: Path) -> tuple[Path, bool]:
    """The label file for ``image`` in folder ``labels`` and whether it holds Cityscapes label
    ids that still need :func:`cityscapes_to_train_ids`.

    Raises:
        FileNotFoundError: no label file for ``image``.
    """
    stem = image.stem
    if stem.endswith(CITYSCAPES_IMAGE_SUFFIX):
        base = stem[: -len(CITYSCAPES_IMAGE_SUFFIX)]
        candidate = labels / f'{base}{_CITYSCAPES_LABEL_IDS}.png'
        if candidate.is_file():
            return candidate, True
        for tail in _CITYSCAPES_TRAIN_IDS:
            if (labels / f'{base}{tail}.png').is_file():
                return labels / f'{base}{tail}.png', False
        raise FileNotFoundError(
            f'no label for {image.name} in {labels} (expected {candidate.name})'
        )
    for candidate in (labels / image.name, labels / f'{stem}.png'):
        if candidate.is_file():
            return candidate, False
    raise FileNotFoundError(
        f'no label for {image.name} in {labels} (expected {labels / image.name} or {stem}.png)'
    )


def _folder(
    frames: FrameSource, label_dir: Path | None
) -> Iterator[tuple[Frame, np.ndarray | None]]:
    for path, frame in zip(frames.files(), frames, strict=False):
        if label_dir is None:
            yield frame, None
            continue
        lpath, convert = label_path(path, label_dir)
        label = read_label(lpath)
        if convert:
            label = cityscapes_to_train_ids(label)
        if label.shape != frame.image.shape[:2]:
            raise ValueError(
                f'label {lpath} is {label.shape[1]}x{label.shape[0]} but frame '
                f'{path.name} is {frame.size[0]}x{frame.size[1]}'
            )
        yield frame, label


def _bag_source(source: Path, topic: str | None, labels: str | None) -> BagSource:
    label_topic = labels
    if label_topic is None:
        found = [t for t in image_topics(source) if is_label_topic(t) and t != topic]
        if len(found) > 1:
            raise ValueError(
                f'bag {source} has several label topics ({", ".join(found)}); '
                'choose one with labels=…'
            )
        label_topic = found[0] if found else None
    return BagSource(source, topic=topic, label_topic=label_topic)


def _take(stream: Iterator, max_frames: int | None) -> Iterator:
    """The first ``max_frames`` items (all for ``None``), without reading one more."""
    if max_frames is not None and max_frames < 0:
        raise ValueError(f'max_frames must be >= 0, not {max_frames}')
    return stream if max_frames is None else itertools.islice(stream, max_frames)


def open_labelled(
    source: str | Path,
    topic: str | None = None,
    labels: str | Path | None = None,
    fps: float = 15.0,
    max_frames: int | None = None,
) -> Iterator[tuple[Frame, np.ndarray | None]]:
    """(frame, label or ``None``) pairs in time order from a folder, a video or a bag.

    Args:
        source: image folder, video file, or rosbag2 bag (folder, ``.mcap``, ``.db3``).
        topic: the bag's image topic (``None``: its only non-label image topic).
        labels: a label folder for an image folder; a label topic for a bag (``None``: the one
            image topic whose name ends in ``labels``, if any); must be ``None`` for a video.
        fps: frame rate that stamps folder frames (index / fps); videos use their own rate.
        max_frames: stop after this many frames.

    The source, the label folder and the bag's topics are checked at once; a frame's label file
    when that frame is reached.

    Raises:
        FileNotFoundError: ``source`` or the label folder is missing; (while iterating) a
            frame's label file is missing.
        ValueError: an unknown source kind, labels for a video, a topic for a folder, an
            unknown or ambiguous topic; (while iterating) a label whose size differs from its
            frame.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f'source {source} does not exist')
    if is_bag(source):
        bag = _bag_source(source, topic, None if labels is None else str(labels))
        return _take(bag.labelled(), max_frames)
    if topic is not None:
        raise ValueError(f'topic={topic!r} given, but {source} is not a bag')
    frames = FrameSource(source, fps=fps)
    if frames.is_video:
        if labels is not None:
            raise ValueError(f'{source} is a video; videos have no labels')
        return _take(((frame, None) for frame in frames), max_frames)
    label_dir = Path(labels) if labels is not None else None
    if label_dir is not None and not label_dir.is_dir():
        raise FileNotFoundError(f'label folder {label_dir} does not exist')
    return _take(_folder(frames, label_dir), max_frames)
