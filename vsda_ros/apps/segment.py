"""``vsda segment``: offline segmentation of a frame folder, a video or a bag → label masks,
colour masks, an overlay video and strip, and a JSON summary (mIoU with labels)."""
from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vsda_ros.apps._common import (
    EPILOG,
    add_allow_unknown_labels,
    add_backend_args,
    check_output_dir,
    check_output_file,
    fraction,
    label_map_choices,
    positive_float,
    positive_int,
    zoo_names,
)
from vsda_ros.data.integrity import reading
from vsda_ros.data.sources import FrameSource, read_label
from vsda_ros.evaluation.metrics import ConfusionMatrix, percentiles_ms
from vsda_ros.inference import Segmenter
from vsda_ros.models.zoo import label_mapping
from vsda_ros.visualize import colorize, overlay, palette_array, strip

#: frames whose stamps set the overlay video's rate when the source does not say (a bag)
RATE_FRAMES = 8


@dataclass
class SegmentConfig:
    """Options of ``vsda segment`` (see its ``--help``)."""

    model: str
    input: Path
    out: Path
    size: tuple[int, int] | None = None
    device: str = 'cpu'
    labels: Path | None = None
    label_map: str | None = None
    json_path: Path | None = None
    write_overlay: bool = True
    alpha: float = 0.5
    max_frames: int | None = None
    progress: bool = True
    topic: str | None = None
    allow_truncated: bool = False
    backend: str = 'torch'
    precision: str = 'fp32'
    fps: float = 15.0       # frame rate of a folder input (a video or a bag carries its own)
    allow_unknown_labels: bool = False


@dataclass
class _Outputs:
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


def _refuse_collisions(source: FrameSource) -> None:
    """Two input images with one stem (``f_1.png``, ``f_1.jpg``) would write one output name
    (``labels/f_1.png``): refuse before anything is written."""
    clashes = source.stem_collisions()
    if clashes:
        listing = '; '.join(' and '.join(names) for names in list(clashes.values())[:3])
        more = f' (and {len(clashes) - 3} more)' if len(clashes) > 3 else ''
        raise ValueError(f'input folder {source.path} has images that would share an output '
                         f'name ({listing}{more} → the same <stem>.png); rename or move one of '
                         'each, nothing was written')


def run_segment(cfg: SegmentConfig) -> dict:
    """Segment every frame, write outputs under ``cfg.out`` and return the JSON summary.

    Writes ``labels/<frame>.png`` (mono8 class ids), ``color/<frame>.png`` and, unless
    disabled, ``overlay.mp4`` (at the source's frame rate: a video's own, a bag's from its
    header stamps, a folder's ``fps``) plus ``overlay_strip.png``. With ``labels`` the summary
    holds ``miou`` and ``per_class_iou`` (percent) over the label classes: the model's own, or
    the CamVid-11 classes when ``label_map`` maps the model's classes there; label values ≥
    the number of classes (CamVid's void 11, Cityscapes' ignore 255) are not scored; any other
    value is an error (:class:`~vsda_ros.evaluation.metrics.LabelError` naming the label file
    and the values) unless ``allow_unknown_labels``, which scores such pixels as ignored and
    counts them (``unknown_label_pixels``). Also
    ``frames_expected`` (what the input announces, capped by ``max_frames``),
    ``frames_read``, ``input_complete`` and ``input_problems``.

    A damaged or truncated input (a bag that fails its checks, a video with fewer frames than
    its container announces) is an error unless ``allow_truncated``; then its readable frames
    are segmented, with a warning, and the summary says what was missing. A run that fails
    removes the files it wrote (and the folders it created, when empty), the JSON summary
    included. ``out`` and ``json_path`` are checked before any work.

    Raises:
        FileNotFoundError / ValueError: bad input, a missing label file, an unknown map, two
            input images with the same stem (their outputs would overwrite each other).
        LabelError (a ValueError): label ids that are neither a class nor an ignore value.
        OSError: ``out`` or ``json_path`` cannot be written (under a regular file, on a
            read-only file system, …).
        IncompleteInputError (a ValueError): damaged / truncated input without
            ``allow_truncated``; the message says which partial outputs were removed.
    """
    from vsda_ros.pipeline import PipelineConfig, build_pipeline

    _check_paths(cfg)
    source = _open_source(cfg)
    pipe = build_pipeline(PipelineConfig(  # an export folder loads like a name
        model=cfg.model, input_size=cfg.size, device=cfg.device, backend=cfg.backend,
        precision=cfg.precision, temporal_weights='none', progress=cfg.progress))
    segmenter, (mapping, class_names) = pipe.segmenter, label_mapping(cfg.label_map, pipe.meta)
    # the label set decides what is not scored: values ≥ its number of classes (CamVid-11's
    # void 11; 255 for Cityscapes train ids), as vsda eval does
    confusion = (ConfusionMatrix(len(class_names), ignore_index=len(class_names),
                                 allow_unknown=cfg.allow_unknown_labels)
                 if cfg.labels else None)
    outputs = _Outputs()
    try:
        with reading(allow_incomplete=cfg.allow_truncated) as reads:
            result = _segment_frames(cfg, source, segmenter, palette_array(pipe.meta.palette),
                                     mapping, confusion, outputs)
        summary = _summary(cfg, segmenter, result, reads.last)
        if confusion is not None:
            summary.update(_scores(confusion, class_names, cfg.label_map))
        if cfg.json_path:
            outputs.mkdir(Path(cfg.json_path).parent)
            outputs.files.append(Path(cfg.json_path))
            _write_text(Path(cfg.json_path), json.dumps(summary, indent=2) + '\n')
    except Exception as exc:
        _take_back(outputs, exc, cfg.out)
        raise
    return summary


def _check_paths(cfg: SegmentConfig) -> None:
    """Before any work: the outputs can be written, the labels folder exists."""
    check_output_dir(cfg.out, '--out')
    if cfg.json_path:
        check_output_file(cfg.json_path, '--json')
    if cfg.labels and not Path(cfg.labels).is_dir():
        raise FileNotFoundError(f'labels folder {cfg.labels} does not exist')


def _take_back(outputs: _Outputs, exc: Exception, out: Path) -> None:
    """Remove what a failed run wrote and say so in ``exc``'s message (when it has one)."""
    removed = outputs.remove()
    if not removed:
        return
    note = f' (removed the {removed} partial output files from {out})'
    if isinstance(exc, OSError) and exc.strerror:
        exc.strerror += note
    elif len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (exc.args[0] + note,)


def _scores(confusion: ConfusionMatrix, class_names: list[str], label_map: str | None) -> dict:
    """The summary's score keys: ``miou``, ``pixel_accuracy``, ``per_class_iou`` (percent),
    ``label_map`` and ``unknown_label_pixels``."""
    iou = confusion.iou() * 100
    return {'miou': confusion.miou() * 100,
            'pixel_accuracy': confusion.pixel_accuracy() * 100,
            'per_class_iou': {n: (None if np.isnan(v) else float(v))
                              for n, v in zip(class_names, iou, strict=True)},
            'label_map': label_map,
            'unknown_label_pixels': confusion.unknown_pixels}


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (one place, so a test can make it fail)."""
    path.write_text(text)


def _open_source(cfg: SegmentConfig):
    """The frame source of ``cfg.input``: a bag (:class:`~vsda_ros.data.bags.BagSource`), or a
    folder / video (:class:`FrameSource`, after refusing output-name collisions)."""
    from vsda_ros.data.bags import BagSource, is_bag
    if is_bag(cfg.input):
        return BagSource(cfg.input, cfg.topic)
    source = FrameSource(cfg.input, fps=cfg.fps)
    _refuse_collisions(source)
    return source


def _summary(cfg: SegmentConfig, segmenter: Segmenter, result: dict, stats) -> dict:
    """The summary keys of every run (without the scores) from the frame loop's result and
    the input's read statistics (``None`` without a checked pass)."""
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
        'out': str(cfg.out),
        'frames_expected': (stats.frames_expected if stats and stats.frames_expected is not None
                            else result['total']),
        'frames_read': frames,
        'input_complete': stats.complete if stats else True,
        'input_problems': list(stats.problems) if stats else [],
    }


def source_rate(source) -> float | None:
    """The frame rate a source announces: a video's container rate, a folder's ``fps``;
    ``None`` for a bag (its rate comes from the header stamps: :class:`_OverlayVideo`)."""
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


class _OverlayVideo:
    """``overlay.mp4`` at the source's frame rate.

    With ``rate`` known (a video, a folder) the file opens on the first frame; otherwise (a
    bag) the first :data:`RATE_FRAMES` frames are held until their stamps give the rate
    (1 / the median step; ``fallback`` when the stamps do not advance).
    """

    def __init__(self, path: Path, outputs: _Outputs, rate: float | None,
                 fallback: float) -> None:
        self.path, self.outputs, self.rate, self.fallback = path, outputs, rate, fallback
        self.pending: list[tuple[float, np.ndarray]] = []
        self.writer = None

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
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*'mp4v'),
                                      float(rate), (w, h))
        pending, self.pending = self.pending, []
        for _, rgb in pending:
            self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Write what is held (a short bag) and release the file."""
        if self.writer is None and self.pending:
            self._open()
        if self.writer is not None:
            self.writer.release()


def _segment_frames(cfg: SegmentConfig, source, segmenter: Segmenter, lut: np.ndarray,
                    mapping, confusion: ConfusionMatrix | None, outputs: _Outputs) -> dict:
    """The frame loop of :func:`run_segment`: segments and writes every frame, recording each
    file it writes in ``outputs``; the overlay video and strip are finished before it returns
    (the video also when it raises)."""
    outputs.mkdir(cfg.out / 'labels')
    outputs.mkdir(cfg.out / 'color')
    video = (_OverlayVideo(cfg.out / 'overlay.mp4', outputs, source_rate(source), cfg.fps)
             if cfg.write_overlay else None)
    strip_tiles: list[np.ndarray] = []
    total = len(source) if cfg.max_frames is None else min(len(source), cfg.max_frames)
    latency, frames, shape = [], 0, None
    stage_ms: dict[str, list[float]] = {}
    # islice: never pull a frame past max_frames (a source's end-of-input check would run)
    frames_in = source if cfg.max_frames is None else itertools.islice(source, cfg.max_frames)
    t_start = time.perf_counter()
    try:
        for frame in tqdm(frames_in, total=total, desc='segment', unit='frame',
                          disable=not cfg.progress):
            t0 = time.perf_counter()
            seg = segmenter.segment(frame.image)
            latency.append((time.perf_counter() - t0) * 1e3)
            for k, v in seg.timings_ms.items():
                stage_ms.setdefault(k, []).append(v)
            shape = frame.image.shape[:2]
            color = _write_masks(outputs, cfg.out, Path(frame.name).stem, seg.labels, lut)
            if video is not None:
                blended = overlay(frame.image, color, cfg.alpha)
                video.write(frame.stamp, blended)
                if frames % max(1, total // 6) == 0 and len(strip_tiles) < 6:
                    strip_tiles.append(blended)
            if confusion is not None:
                _score(cfg, frame.name, seg.labels, mapping, confusion)
            frames += 1
        wall = time.perf_counter() - t_start
    finally:
        if video is not None:
            video.close()
    if strip_tiles:
        _write(outputs, cfg.out / 'overlay_strip.png',
               cv2.cvtColor(strip(strip_tiles), cv2.COLOR_RGB2BGR))
    return {'frames': frames, 'latency': latency, 'stage_ms': stage_ms, 'shape': shape,
            'wall': wall, 'total': total}


def _write_masks(outputs: _Outputs, out: Path, stem: str, labels: np.ndarray,
                 lut: np.ndarray) -> np.ndarray:
    """Write ``labels/<stem>.png`` and ``color/<stem>.png``; returns the RGB colour mask."""
    _write(outputs, out / 'labels' / f'{stem}.png', labels)
    color = colorize(labels, lut)
    _write(outputs, out / 'color' / f'{stem}.png', cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
    return color


def _score(cfg: SegmentConfig, name: str, labels: np.ndarray, mapping,
           confusion: ConfusionMatrix) -> None:
    """Add one frame's prediction (mapped to the label classes) against its label file."""
    label_path = Path(cfg.labels) / name
    if not label_path.is_file():
        raise FileNotFoundError(f'no label {label_path} for frame {name}')
    pred = mapping[labels] if mapping is not None else labels
    confusion.update(pred, read_label(label_path), where=str(label_path))


def _write(outputs: _Outputs, path: Path, image: np.ndarray) -> None:
    """``cv2.imwrite`` that records the file and fails loudly (``OSError``)."""
    outputs.files.append(path)
    if not cv2.imwrite(str(path), image):
        raise OSError(f'cannot write {path}')


# ------------------------------------------------------------------------------ command line
def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsda segment``."""
    p = subparsers.add_parser(
        'segment', help='segment a frame folder or a video offline',
        description='Segment every frame of a folder of images or a video file; write label '
                    'masks (OUT/labels/<frame>.png, class ids), colour masks (OUT/color/), an '
                    'overlay video and strip, and a JSON summary. With --labels, also mIoU.',
        epilog=EPILOG)
    p.add_argument('--model', default='espnet-camvid',
                   help=f'zoo name ({", ".join(zoo_names())}) or a checkpoint file '
                        '(default: %(default)s)')
    p.add_argument('--input', required=True,
                   help='folder of images, a video file, or a rosbag2 (mcap or sqlite3)')
    p.add_argument('--topic', default=None,
                   help='image topic of a bag input (default: its only image topic)')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--size', default=None,
                   help="network input WIDTHxHEIGHT, e.g. 480x360 (default: the model's native)")
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto (default: cpu)')
    add_backend_args(p)
    p.add_argument('--labels', default=None,
                   help='folder of label PNGs with the same file names (class ids, 11 = void)')
    p.add_argument('--map', dest='label_map', default=None, choices=label_map_choices(),
                   help='map the model classes before scoring (e.g. Cityscapes → CamVid-11)')
    add_allow_unknown_labels(p)
    p.add_argument('--json', default=None, help='summary JSON path (default: OUT/summary.json)')
    p.add_argument('--alpha', type=fraction, default=0.5, help='overlay blend (default: 0.5)')
    p.add_argument('--no-overlay', dest='write_overlay', action='store_false',
                   help='skip the overlay video and strip')
    p.add_argument('--fps', type=positive_float, default=SegmentConfig.fps,
                   help='frame rate of a folder input, the rate of its overlay video (videos '
                        'and bags carry their own) (default: %(default)s)')
    p.add_argument('--max-frames', type=positive_int, default=None, help='stop after N frames')
    p.add_argument('--allow-truncated', action='store_true',
                   help='segment what can be read of a truncated video (fewer frames than its '
                        'container announces) or a damaged bag, with a warning, and record '
                        'frames_expected / frames_read in the summary (default: such input is '
                        'an error, exit 2, and the partial outputs are removed)')
    p.add_argument('--quiet', dest='progress', action='store_false', help='no progress bar')
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``vsda segment``: segment, print the summary; returns 0."""
    from vsda_ros.apps._common import config_from_args
    from vsda_ros.inference import parse_size

    cfg = config_from_args(
        SegmentConfig, args, input=Path(args.input), out=Path(args.out).resolve(),
        size=parse_size(args.size), labels=Path(args.labels) if args.labels else None,
        json_path=Path(args.json) if args.json else Path(args.out) / 'summary.json')
    _print_summary(cfg, run_segment(cfg))
    return 0


def _print_summary(cfg: SegmentConfig, s: dict) -> None:
    """The human summary of a run: speed, scores per class, where the outputs are."""
    lat = s['latency_ms']
    print(f"segmented {s['frames']} frames with {s['model']} at {s['input_size'][0]}x"
          f"{s['input_size'][1]} on {s['device']} ({s['backend']} {s['precision']}): "
          f"latency p50 {lat['p50']:.1f} ms, "
          f"p95 {lat['p95']:.1f} ms")
    if 'miou' in s:
        print(f"mIoU {s['miou']:.2f} % over {len(s['per_class_iou'])} classes"
              + (f" (mapped {s['label_map']})" if s['label_map'] else ''))
        if s['unknown_label_pixels']:
            print(f"{s['unknown_label_pixels']} label pixels with unknown ids scored as "
                  'ignored (--allow-unknown-labels)')
        for name, v in s['per_class_iou'].items():
            print(f'  {name:>14s} ' + ('   n/a' if v is None else f'{v:6.2f}'))
    print(f"label masks: {cfg.out / 'labels'}\ncolour masks: {cfg.out / 'color'}")
    if cfg.write_overlay:
        print(f"overlay video: {cfg.out / 'overlay.mp4'}\n"
              f"overlay strip: {cfg.out / 'overlay_strip.png'}")
    print(f'summary: {cfg.json_path}')
