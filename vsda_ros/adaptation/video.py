"""Unlabelled target video for training: frame pairs (and triples) at small time distances.

Sources are image folders (split into sequences by the file-name prefix before the last ``_``,
as in CamVid's ``0016E5_08079.png``) and video files. Frames are loaded once, resized so the
short side matches ``height`` (keeping the aspect), and kept in memory as uint8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vsda_ros.data.bags import is_bag
from vsda_ros.data.sources import FrameSource


def _video_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    cap.release()
    return float(fps)


def sequence_and_number(name: str) -> tuple[str, int]:
    """(sequence key, frame number) of a frame file name in a folder of several clips.

    The frame number is the last ``_``-separated part of the stem made only of digits, and the
    key is everything before it: ``0001TP_006690`` → (``0001TP``, 6690) (CamVid),
    ``aachen_000000_000017_leftImg8bit`` → (``aachen_000000``, 17) (Cityscapes sequences: the
    suffix after the number is not part of it), ``000123`` → (``''``, 123). A stem without such
    a part (``Seq05VD_f00030``) falls back to: key = the stem up to its last ``_``, number = its
    last run of digits (30); no digits at all gives 0.
    """
    parts = Path(name).stem.split('_')
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].isdigit():
            return '_'.join(parts[:i]), int(parts[i])
    stem = Path(name).stem
    digits = ''.join(ch if ch.isdigit() else ' ' for ch in stem).split()
    return (stem.rsplit('_', 1)[0] if '_' in stem else ''), (int(digits[-1]) if digits else 0)


@dataclass
class TargetVideo:
    """In-memory target sequences (lists of H×W×3 uint8 RGB frames, time order).

    Attributes:
        sequences: name → frames.
        dt: name → seconds between consecutive stored frames (videos: stride / fps; folders:
            the median step of the frame numbers in the file names / ``folder_fps``).
    """

    sequences: dict[str, list[np.ndarray]] = field(default_factory=dict)
    dt: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        paths: list[str | Path],
        height: int = 360,
        stride: int = 1,
        max_frames: int | None = None,
        folder_fps: float = 30.0,
    ) -> 'TargetVideo':
        """Load folders/videos/rosbag2 bags; ``stride`` keeps every n-th frame of a video or
        bag.

        Raises ``FileNotFoundError``/``ValueError`` for missing or unreadable inputs, and
        ``ValueError`` if no sequence has at least two frames.
        """
        seqs: dict[str, list[np.ndarray]] = {}
        numbers: dict[str, list[int]] = {}
        dt: dict[str, float] = {}
        for path in paths:
            if is_bag(path):  # a rosbag2: its (only) image topic, at its recorded rate
                _load_bag(Path(path), height, stride, seqs, dt)
                continue
            src = FrameSource(Path(path))
            for i, frame in enumerate(src):
                if src.is_video and i % stride:
                    continue
                seq, number = sequence_and_number(frame.name)
                key = f'{Path(path).name}:' + ('' if src.is_video else seq)
                if src.is_video:
                    dt[key] = stride / _video_fps(src.path)
                else:
                    numbers.setdefault(key, []).append(number)
                seqs.setdefault(key, []).append(_fit_height(frame.image, height))
                if max_frames and sum(len(v) for v in seqs.values()) >= max_frames:
                    break
        seqs = {k: v for k, v in seqs.items() if len(v) >= 2}
        if not seqs:
            raise ValueError(f'no sequence with at least two frames in {paths}')
        for key, nums in numbers.items():
            steps = np.diff(nums)
            dt[key] = float(np.median(steps)) / folder_fps if len(steps) else 1.0 / folder_fps
        return cls(seqs, {k: dt.get(k, 1.0 / folder_fps) for k in seqs})

    def __len__(self) -> int:
        return sum(len(v) for v in self.sequences.values())

    def sample(
        self,
        rng: np.random.Generator,
        length: int,
        max_distance: int,
        crop: tuple[int, int] | None,
        max_dt: float | None = None,
    ) -> list[np.ndarray]:
        """``length`` frames of one sequence, in time order, consecutive ones 1..max_distance
        apart, all cropped at the same random window ``crop`` = (w, h) (None = full frame).

        The sequence is drawn with probability proportional to its length, among those with
        enough frames and (with ``max_dt``) stored frames at most ``max_dt`` s apart.
        Raises ``ValueError`` when no sequence qualifies.
        """
        keys = [
            k
            for k, v in self.sequences.items()
            if len(v) > length - 1 and (max_dt is None or self.dt[k] <= max_dt)
        ]
        if not keys:
            raise ValueError(
                f'no target sequence has {length} frames at most {max_dt} s '
                f'apart (frame spacing: {self.dt})'
            )
        sizes = np.array([len(self.sequences[k]) for k in keys], dtype=np.float64)
        seq = self.sequences[keys[rng.choice(len(keys), p=sizes / sizes.sum())]]
        dists = rng.integers(1, max_distance + 1, size=length - 1)
        while dists.sum() > len(seq) - 1:
            dists = np.maximum(1, dists - 1)
        start = int(rng.integers(0, len(seq) - int(dists.sum())))
        idx = [start, *(start + np.cumsum(dists)).tolist()]
        frames = [seq[i] for i in idx]
        if crop is None:
            return frames
        h, w = frames[0].shape[:2]
        cw, ch = min(crop[0], w), min(crop[1], h)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return [np.ascontiguousarray(f[y0 : y0 + ch, x0 : x0 + cw]) for f in frames]


def _load_bag(path: Path, height: int, stride: int, seqs: dict, dt: dict) -> None:
    """Append a bag's image topic as one sequence (``stride``: every n-th message)."""
    from vsda_ros.data.bags import BagSource

    key = f'{path.name}:bag'
    stamps = []
    for i, frame in enumerate(BagSource(path)):
        if i % stride:
            continue
        seqs.setdefault(key, []).append(_fit_height(frame.image, height))
        stamps.append(frame.stamp)
    if len(stamps) >= 2:
        dt[key] = float(np.median(np.diff(stamps)))


def _fit_height(img: np.ndarray, height: int) -> np.ndarray:
    """H×W×3 → height×(W·height/H)×3 (area interpolation); unchanged if already that tall."""
    if img.shape[0] == height:
        return img
    w = int(round(img.shape[1] * height / img.shape[0]))
    return cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)
