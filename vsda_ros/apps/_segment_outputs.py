"""What one ``vsda segment`` run writes and reports: the record of the files it created (so that
a failed run can take them back), the mask writers, ``overlay.mp4`` at the source's frame rate,
the JSON summary's keys and the human summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vsda_ros.data.sources import FrameSource
from vsda_ros.evaluation.metrics import ConfusionMatrix, percentiles_ms
from vsda_ros.inference import Segmenter
from vsda_ros.visualize import colorize, strip

#: frames whose stamps set the overlay video's rate when the source does not say (a bag)
RATE_FRAMES = 8


@dataclass
class Outputs:
    """The files and folders one run created, so that a failed run can take them back."""

    files: list[Path] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)

    def mkdir(self, path: Path) -> None:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        path.mkdir(parents=True, exist_ok=True)
        self.dirs.extend(missing)  # deepest first

    def remove(self) -> int:
        """Delete what was created (folders only when empty); returns the number of files."""
        removed = 0
        for f in self.files:
            if f.is_file():
                f.unlink()
                removed += 1
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError:  # not empty: it holds something we did not write
                pass
        return removed


def take_back(outputs: Outputs, exc: Exception, out: Path) -> None:
    """Remove what a failed run wrote and say so in ``exc``'s message (when it has one)."""
    removed = outputs.remove()
    if not removed:
        return
    note = f' (removed the {removed} partial output files from {out})'
    if isinstance(exc, OSError) and exc.strerror:
        exc.strerror += note
    elif len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (exc.args[0] + note,)


def write_image(outputs: Outputs, path: Path, image: np.ndarray) -> None:
    """``cv2.imwrite`` that records the file and fails loudly (``OSError``)."""
    outputs.files.append(path)
    if not cv2.imwrite(str(path), image):
        raise OSError(f'cannot write {path}')


def write_masks(
    outputs: Outputs, out: Path, stem: str, labels: np.ndarray, lut: np.ndarray
) -> np.ndarray:
    """Write ``labels/<stem>.png`` (the H×W uint8 class ids) and ``color/<stem>.png``; returns
    the H×W×3 RGB colour mask."""
    write_image(outputs, out / 'labels' / f'{stem}.png', labels)
    color = colorize(labels, lut)
    write_image(outputs, out / 'color' / f'{stem}.png', cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
    return color


def write_strip(outputs: Outputs, path: Path, tiles: list[np.ndarray]) -> None:
    """The overlay strip: the H×W×3 RGB ``tiles`` side by side, as a PNG at ``path``."""
    write_image(outputs, path, cv2.cvtColor(strip(tiles), cv2.COLOR_RGB2BGR))


def source_rate(source) -> float | None:
    """The frame rate a source announces: a video's container rate, a folder's ``fps``;
    ``None`` for a bag (its rate comes from the header stamps: :class:`OverlayVideo`)."""
    if not isinstance(source, FrameSource):
        return None
    if source.is_video:
        cap = cv2.VideoCapture(str(source.path))
        try:
            rate = cap.get(cv2.CAP_PROP_FPS)
        finally:
            cap.release()
        return float(rate) if rate and rate > 0 else source.fps
    return float(source.fps)


class OverlayVideo:
    """``overlay.mp4`` at the source's frame rate.

    With ``rate`` known (a video, a folder) the file opens on the first frame; otherwise (a
    bag) the first :data:`RATE_FRAMES` frames are held until their stamps give the rate
    (1 / the median step; ``fallback`` when the stamps do not advance).
    """

    def __init__(self, path: Path, outputs: Outputs, rate: float | None, fallback: float) -> None:
        self.path, self.outputs, self.rate, self.fallback = path, outputs, rate, fallback
        self.pending: list[tuple[float, np.ndarray]] = []
        self.writer: cv2.VideoWriter | None = None

    @classmethod
    def for_source(cls, out: Path, outputs: Outputs, source, fps: float) -> OverlayVideo:
        """``out/overlay.mp4`` at ``source``'s rate (:func:`source_rate`; a bag's from its
        stamps, ``fps`` when they do not advance)."""
        return cls(out / 'overlay.mp4', outputs, source_rate(source), fps)

    def write(self, stamp: float, rgb: np.ndarray) -> None:
        """Add one H×W×3 RGB frame taken at ``stamp`` (seconds)."""
        if self.writer is None:
            self.pending.append((stamp, rgb))
            if self.rate is None and len(self.pending) < RATE_FRAMES:
                return
            self._open()
            return
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def _open(self) -> None:
        rate = self.rate
        if rate is None:
            steps = np.diff([t for t, _ in self.pending])
            steps = steps[steps > 0]
            rate = 1.0 / float(np.median(steps)) if steps.size else self.fallback
        h, w = self.pending[0][1].shape[:2]
        self.outputs.files.append(self.path)
        writer = cv2.VideoWriter(
            str(self.path), cv2.VideoWriter.fourcc(*'mp4v'), float(rate), (w, h)
        )
        self.writer = writer
        pending, self.pending = self.pending, []
        for _, rgb in pending:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Write what is held (a short bag) and release the file."""
        if self.writer is None and self.pending:
            self._open()
        if self.writer is not None:
            self.writer.release()


def summary_keys(out: Path, segmenter: Segmenter, result: dict, stats) -> dict:
    """The summary keys of every run (without the scores) from the frame loop's result and
    the input's read statistics (``None`` without a checked pass); ``out`` is the output folder."""
    frames, shape, wall = result['frames'], result['shape'], result['wall']
    return {
        'frames': frames,
        'model': segmenter.meta.name,
        'device': str(segmenter.device),
        'backend': segmenter.backend,
        'precision': segmenter.precision,
        'input_size': list(segmenter.input_size),
        'frame_size': [int(shape[1]), int(shape[0])] if shape else None,
        'latency_ms': percentiles_ms(result['latency'], (50, 95)),
        'stage_ms': {k: percentiles_ms(v, (50, 95)) for k, v in result['stage_ms'].items()},
        'fps': frames / wall if wall > 0 else None,
        'out': str(out),
        'frames_expected': (
            stats.frames_expected
            if stats and stats.frames_expected is not None
            else result['total']
        ),
        'frames_read': frames,
        'input_complete': stats.complete if stats else True,
        'input_problems': list(stats.problems) if stats else [],
    }


def score_keys(confusion: ConfusionMatrix, class_names: list[str], label_map: str | None) -> dict:
    """The summary's score keys: ``miou``, ``pixel_accuracy``, ``per_class_iou`` (percent),
    ``label_map`` and ``unknown_label_pixels``."""
    iou = confusion.iou() * 100
    return {
        'miou': confusion.miou() * 100,
        'pixel_accuracy': confusion.pixel_accuracy() * 100,
        'per_class_iou': {
            n: (None if np.isnan(v) else float(v)) for n, v in zip(class_names, iou, strict=True)
        },
        'label_map': label_map,
        'unknown_label_pixels': confusion.unknown_pixels,
    }


def print_summary(s: dict, out: Path, write_overlay: bool, json_path: Path | None) -> None:
    """The human summary of a run: speed, scores per class, where the outputs are (under
    ``out``; the overlay files only with ``write_overlay``; the JSON summary at ``json_path``)."""
    lat = s['latency_ms']
    print(
        f'segmented {s["frames"]} frames with {s["model"]} at {s["input_size"][0]}x'
        f'{s["input_size"][1]} on {s["device"]} ({s["backend"]} {s["precision"]}): '
        f'latency p50 {lat["p50"]:.1f} ms, '
        f'p95 {lat["p95"]:.1f} ms'
    )
    if 'miou' in s:
        print(
            f'mIoU {s["miou"]:.2f} % over {len(s["per_class_iou"])} classes'
            + (f' (mapped {s["label_map"]})' if s['label_map'] else '')
        )
        if s['unknown_label_pixels']:
            print(
                f'{s["unknown_label_pixels"]} label pixels with unknown ids scored as '
                'ignored (--allow-unknown-labels)'
            )
        for name, v in s['per_class_iou'].items():
            print(f'  {name:>14s} ' + ('   n/a' if v is None else f'{v:6.2f}'))
    print(f'label masks: {out / "labels"}\ncolour masks: {out / "color"}')
    if write_overlay:
        print(f'overlay video: {out / "overlay.mp4"}\noverlay strip: {out / "overlay_strip.png"}')
    print(f'summary: {json_path}')
