"""Offline segmentation of a frame folder or video: the engine behind ``vsda segment``."""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vsda_ros.data.integrity import reading
from vsda_ros.data.sources import FrameSource, read_label
from vsda_ros.evaluation.metrics import ConfusionMatrix, percentiles_ms
from vsda_ros.inference import Segmenter, SegmenterConfig
from vsda_ros.models.zoo import CAMVID_VOID, label_mapping, load_model
from vsda_ros.visualize import colorize, overlay, palette_array, strip


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
    disabled, ``overlay.mp4`` plus ``overlay_strip.png``. With ``labels`` the summary holds
    ``miou`` and ``per_class_iou`` (percent), computed on the CamVid-11 classes when
    ``label_map`` maps the model's classes there. The summary also holds ``frames_expected``
    (what the input announces, capped by ``max_frames``), ``frames_read``, ``input_complete``
    and ``input_problems``.

    A damaged or truncated input (a bag that fails its checks, a video with fewer frames than
    its container announces) is an error unless ``allow_truncated``; then its readable frames
    are segmented, with a warning, and the summary says what was missing. A run that fails
    removes the files it wrote (and the folders it created, when empty).

    Raises:
        FileNotFoundError / ValueError: bad input, a missing label file, an unknown map, two
            input images with the same stem (their outputs would overwrite each other).
        IncompleteInputError (a ValueError): damaged / truncated input without
            ``allow_truncated``; the message says which partial outputs were removed.
    """
    from vsda_ros.data.bags import BagSource, is_bag
    source = BagSource(cfg.input, cfg.topic) if is_bag(cfg.input) else FrameSource(cfg.input)
    if isinstance(source, FrameSource):
        _refuse_collisions(source)
    from vsda_ros.inference.export import resolve_model
    source_model, export_dir = resolve_model(cfg.model)  # an export folder loads like a name
    model = load_model(source_model, progress=cfg.progress)
    segmenter = Segmenter(model, SegmenterConfig(
        input_size=cfg.size, device=cfg.device, backend=cfg.backend, precision=cfg.precision,
        export_dir=export_dir))
    meta = segmenter.meta
    lut = palette_array(meta.palette)

    mapping, class_names = label_mapping(cfg.label_map, meta)
    confusion = ConfusionMatrix(len(class_names), ignore_index=CAMVID_VOID) if cfg.labels else None
    if cfg.labels and not Path(cfg.labels).is_dir():
        raise FileNotFoundError(f'labels folder {cfg.labels} does not exist')

    outputs = _Outputs()
    try:
        with reading(allow_incomplete=cfg.allow_truncated) as reads:
            result = _segment_frames(cfg, source, segmenter, lut, mapping, confusion, outputs)
    except Exception as exc:
        removed = outputs.remove()
        if removed and len(exc.args) == 1 and isinstance(exc.args[0], str):
            exc.args = (f'{exc.args[0]} (removed the {removed} partial output files from '
                        f'{cfg.out})',)
        raise
    frames, latency, stage_ms, shape, wall = (result[k] for k in (
        'frames', 'latency', 'stage_ms', 'shape', 'wall'))
    stats = reads.last
    total = result['total']
    summary = {
        'frames': frames,
        'model': meta.name,
        'device': str(segmenter.device),
        'backend': segmenter.backend,
        'precision': segmenter.precision,
        'input_size': list(segmenter.input_size),
        'frame_size': [int(shape[1]), int(shape[0])] if shape else None,
        'latency_ms': percentiles_ms(latency, (50, 95)),
        'stage_ms': {k: percentiles_ms(v, (50, 95)) for k, v in stage_ms.items()},
        'fps': frames / wall if wall > 0 else None,
        'out': str(cfg.out),
        'frames_expected': (stats.frames_expected if stats and stats.frames_expected is not None
                            else total),
        'frames_read': frames,
        'input_complete': stats.complete if stats else True,
        'input_problems': list(stats.problems) if stats else [],
    }
    if confusion is not None:
        iou = confusion.iou() * 100
        summary['miou'] = confusion.miou() * 100
        summary['pixel_accuracy'] = confusion.pixel_accuracy() * 100
        summary['per_class_iou'] = {n: (None if np.isnan(v) else float(v))
                                    for n, v in zip(class_names, iou)}
        summary['label_map'] = cfg.label_map
    if cfg.json_path:
        outputs.mkdir(Path(cfg.json_path).parent)
        Path(cfg.json_path).write_text(json.dumps(summary, indent=2) + '\n')
    return summary


def _segment_frames(cfg: SegmentConfig, source, segmenter: Segmenter, lut: np.ndarray,
                    mapping, confusion: ConfusionMatrix | None, outputs: _Outputs) -> dict:
    """The frame loop of :func:`run_segment`: segments and writes every frame, recording each
    file it writes in ``outputs``; the overlay video and strip are finished before it returns
    (or released when it raises)."""
    outputs.mkdir(cfg.out / 'labels')
    outputs.mkdir(cfg.out / 'color')
    writer = None
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
            stem = Path(frame.name).stem
            _write(outputs, cfg.out / 'labels' / f'{stem}.png', seg.labels)
            color = colorize(seg.labels, lut)
            _write(outputs, cfg.out / 'color' / f'{stem}.png',
                   cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
            if cfg.write_overlay:
                blended = overlay(frame.image, color, cfg.alpha)
                if writer is None:
                    h, w = blended.shape[:2]
                    outputs.files.append(cfg.out / 'overlay.mp4')
                    writer = cv2.VideoWriter(str(cfg.out / 'overlay.mp4'),
                                             cv2.VideoWriter_fourcc(*'mp4v'), 15.0, (w, h))
                writer.write(cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
                if frames % max(1, total // 6) == 0 and len(strip_tiles) < 6:
                    strip_tiles.append(blended)
            if confusion is not None:
                label_path = Path(cfg.labels) / frame.name
                if not label_path.is_file():
                    raise FileNotFoundError(f'no label {label_path} for frame {frame.name}')
                pred = mapping[seg.labels] if mapping is not None else seg.labels
                confusion.update(pred, read_label(label_path))
            frames += 1
        wall = time.perf_counter() - t_start
    finally:
        if writer is not None:
            writer.release()
    if strip_tiles:
        _write(outputs, cfg.out / 'overlay_strip.png',
               cv2.cvtColor(strip(strip_tiles), cv2.COLOR_RGB2BGR))
    return {'frames': frames, 'latency': latency, 'stage_ms': stage_ms, 'shape': shape,
            'wall': wall, 'total': total}


def _write(outputs: _Outputs, path: Path, image: np.ndarray) -> None:
    """``cv2.imwrite`` that records the file and fails loudly (``OSError``)."""
    outputs.files.append(path)
    if not cv2.imwrite(str(path), image):
        raise OSError(f'cannot write {path}')
