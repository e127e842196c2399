"""Frame sources for offline tools: a folder of images (+ optional labels) or a video file.

A video that ends before the frame count its container announces (a truncated or damaged file)
is reported through :func:`vsda_ros.data.integrity.report_read` at the end of a full pass: an
:class:`~vsda_ros.data.integrity.IncompleteInputError` unless the caller allows incomplete
inputs (``--allow-truncated``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from vsda_ros.data.integrity import ReadStats, report_read
from vsda_ros.frames import Frame

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')
VIDEO_SUFFIXES = ('.mp4', '.avi', '.mkv', '.mov', '.webm')


def _natural_key(path: Path) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', path.name)]


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file → H×W×3 uint8 RGB (raises ``ValueError`` if unreadable)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'cannot read image {path}')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path) -> np.ndarray:
    """A single-channel label PNG → H×W uint8 class ids."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise ValueError(f'cannot read label {path}')
    if label.ndim == 3:
        raise ValueError(f'label {path} has {label.shape[2]} channels; expected class ids')
    return label


@dataclass
class FrameSource:
    """Frames from ``path`` (an image folder, or a video file), in time order.

    Image folders are sorted by the numbers in their file names (``0016E5_07959.png`` …);
    videos give frames named ``<stem>_<index:06d>.png`` stamped index / fps.

    Raises (while iterating a video, at the end of a full pass):
        IncompleteInputError: the video gave fewer frames than its container announces
            (``cv2.CAP_PROP_FRAME_COUNT``, less 1 % for containers that estimate it), unless
            the caller allows it (:func:`vsda_ros.data.integrity.reading`).
    """

    path: Path
    fps: float = 15.0

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.exists():
            raise FileNotFoundError(f'input {self.path} does not exist')
        if self.path.is_file() and self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(
                f'input {self.path} is neither a folder of images nor a video '
                f'({", ".join(VIDEO_SUFFIXES)})'
            )
        if self.path.is_dir() and not self.files():
            raise ValueError(f'folder {self.path} holds no images ({", ".join(IMAGE_SUFFIXES)})')

    @property
    def is_video(self) -> bool:
        return self.path.is_file()

    def files(self) -> list[Path]:
        """The image files of a folder source, in time order."""
        return sorted(
            (p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key
        )

    def stem_collisions(self) -> dict[str, list[str]]:
        """Image files of a folder source that share a stem (``f_1.png`` and ``f_1.jpg``):
        ``{stem: [file names]}``, ``{}`` for none (and for a video)."""
        if self.is_video:
            return {}
        by_stem: dict[str, list[str]] = {}
        for f in self.files():
            by_stem.setdefault(f.stem, []).append(f.name)
        return {stem: names for stem, names in by_stem.items() if len(names) > 1}

    def __len__(self) -> int:
        if self.is_video:
            cap = cv2.VideoCapture(str(self.path))
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            cap.release()
            return n
        return len(self.files())

    def __iter__(self) -> Iterator[Frame]:
        if not self.is_video:
            for i, f in enumerate(self.files()):
                yield Frame(read_rgb(f), stamp=i / self.fps, name=f.name)
            return
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise ValueError(f'cannot open video {self.path}')
        fps = cap.get(cv2.CAP_PROP_FPS) or self.fps
        announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        try:
            i = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                yield Frame(
                    cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                    stamp=i / fps,
                    name=f'{self.path.stem}_{i:06d}.png',
                )
                i += 1
        finally:
            cap.release()
        # only after a full pass: a caller that stopped early never gets here
        expected = announced if announced > 0 else None
        report_read(
            ReadStats(str(self.path), 'video', expected, i, tolerance=(expected or 0) // 100)
        )
