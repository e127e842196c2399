"""Offline segmentation of a frame folder or video: the engine behind ``vsda segment``."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

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


def run_segment(cfg: SegmentConfig) -> dict:
    """Segment every frame, write outputs under ``cfg.out`` and return the JSON summary.

    Writes ``labels/<frame>.png`` (mono8 class ids), ``color/<frame>.png`` and, unless
    disabled, ``overlay.mp4`` plus ``overlay_strip.png``. With ``labels`` the summary holds
    ``miou`` and ``per_class_iou`` (percent), computed on the CamVid-11 classes when
    ``label_map`` maps the model's classes there.

    Raises:
        FileNotFoundError / ValueError: bad input, a missing label file, an unknown map.
    """
    from vsda_ros.data.bags import BagSource, is_bag
    source = BagSource(cfg.input, cfg.topic) if is_bag(cfg.input) else FrameSource(cfg.input)
    model = load_model(cfg.model, progress=cfg.progress)
    segmenter = Segmenter(model, SegmenterConfig(input_size=cfg.size, device=cfg.device))
    meta = segmenter.meta
    lut = palette_array(meta.palette)

    mapping, class_names = label_mapping(cfg.label_map, meta)
    confusion = ConfusionMatrix(len(class_names), ignore_index=CAMVID_VOID) if cfg.labels else None
    if cfg.labels and not Path(cfg.labels).is_dir():
        raise FileNotFoundError(f'labels folder {cfg.labels} does not exist')

    (cfg.out / 'labels').mkdir(parents=True, exist_ok=True)
    (cfg.out / 'color').mkdir(parents=True, exist_ok=True)
    writer = None
    strip_tiles: list[np.ndarray] = []
    total = len(source) if cfg.max_frames is None else min(len(source), cfg.max_frames)
    latency, frames, shape = [], 0, None
    stage_ms: dict[str, list[float]] = {}
    t_start = time.perf_counter()
    for frame in tqdm(source, total=total, desc='segment', unit='frame', disable=not cfg.progress):
        if cfg.max_frames is not None and frames >= cfg.max_frames:
            break
        t0 = time.perf_counter()
        seg = segmenter.segment(frame.image)
        latency.append((time.perf_counter() - t0) * 1e3)
        for k, v in seg.timings_ms.items():
            stage_ms.setdefault(k, []).append(v)
        shape = frame.image.shape[:2]
        stem = Path(frame.name).stem
        cv2.imwrite(str(cfg.out / 'labels' / f'{stem}.png'), seg.labels)
        color = colorize(seg.labels, lut)
        cv2.imwrite(str(cfg.out / 'color' / f'{stem}.png'), cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
        if cfg.write_overlay:
            blended = overlay(frame.image, color, cfg.alpha)
            if writer is None:
                h, w = blended.shape[:2]
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
    if writer is not None:
        writer.release()
    if strip_tiles:
        cv2.imwrite(str(cfg.out / 'overlay_strip.png'),
                    cv2.cvtColor(strip(strip_tiles), cv2.COLOR_RGB2BGR))

    summary = {
        'frames': frames,
        'model': meta.name,
        'device': str(segmenter.device),
        'input_size': list(segmenter.input_size),
        'frame_size': [int(shape[1]), int(shape[0])] if shape else None,
        'latency_ms': percentiles_ms(latency, (50, 95)),
        'stage_ms': {k: percentiles_ms(v, (50, 95)) for k, v in stage_ms.items()},
        'fps': frames / wall if wall > 0 else None,
        'out': str(cfg.out),
    }
    if confusion is not None:
        iou = confusion.iou() * 100
        summary['miou'] = confusion.miou() * 100
        summary['pixel_accuracy'] = confusion.pixel_accuracy() * 100
        summary['per_class_iou'] = {n: (None if np.isnan(v) else float(v))
                                    for n, v in zip(class_names, iou)}
        summary['label_map'] = cfg.label_map
    if cfg.json_path:
        Path(cfg.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.json_path).write_text(json.dumps(summary, indent=2) + '\n')
    return summary
