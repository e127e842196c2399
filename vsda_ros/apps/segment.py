"""``vsda segment``: offline segmentation of a frame folder, a video or a bag → label masks,
colour masks, an overlay video and strip, and a JSON summary (mIoU with labels)."""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

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
from vsda_ros.apps._segment_outputs import (
    Outputs,
    OverlayVideo,
    print_summary,
    score_keys,
    summary_keys,
    take_back,
    write_masks,
    write_strip,
)
from vsda_ros.data.integrity import reading
from vsda_ros.data.sources import FrameSource, read_label
from vsda_ros.evaluation.metrics import ConfusionMatrix
from vsda_ros.inference import Segmenter
from vsda_ros.models.zoo import label_mapping
from vsda_ros.visualize import overlay, palette_array


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
    fps: float = 15.0  # frame rate of a folder input (a video or a bag carries its own)
    allow_unknown_labels: bool = False


def _refuse_collisions(source: FrameSource) -> None:
    """Two input images with one stem (``f_1.png``, ``f_1.jpg``) would write one output name
    (``labels/f_1.png``): refuse before anything is written."""
    clashes = source.stem_collisions()
    if clashes:
        listing = '; '.join(' and '.join(names) for names in list(clashes.values())[:3])
        more = f' (and {len(clashes) - 3} more)' if len(clashes) > 3 else ''
        raise ValueError(
            f'input folder {source.path} has images that would share an output '
            f'name ({listing}{more} → the same <stem>.png); rename or move one of '
            'each, nothing was written'
        )


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
    _check_paths(cfg)
    source = _open_source(cfg)
    segmenter, lut, (mapping, class_names) = _load(cfg)
    # the label set decides what is not scored: values ≥ its number of classes (CamVid-11's
    # void 11; 255 for Cityscapes train ids), as vsda eval does
    confusion = (
        ConfusionMatrix(
            len(class_names), ignore_index=len(class_names), allow_unknown=cfg.allow_unknown_labels
        )
        if cfg.labels
        else None
    )
    outputs = Outputs()
    try:
        with reading(allow_incomplete=cfg.allow_truncated) as reads:
            result = _segment_frames(cfg, source, segmenter, lut, mapping, confusion, outputs)
        summary = summary_keys(cfg.out, segmenter, result, reads.last)
        if confusion is not None:
            summary.update(score_keys(confusion, class_names, cfg.label_map))
        if cfg.json_path:
            _write_summary(Path(cfg.json_path), summary, outputs)
    except Exception as exc:
        take_back(outputs, exc, cfg.out)
        raise
    return summary


def _load(cfg: SegmentConfig) -> tuple[Segmenter, np.ndarray, tuple]:
    """The segmenter of ``cfg.model`` (an export folder loads like a name), its palette as a
    colour look-up table and the ``(mapping, class_names)`` of ``cfg.label_map``."""
    from vsda_ros.pipeline import PipelineConfig, build_pipeline

    pipe = build_pipeline(
        PipelineConfig(
            model=cfg.model,
            input_size=cfg.size,
            device=cfg.device,
            backend=cfg.backend,
            precision=cfg.precision,
            temporal_weights='none',
            progress=cfg.progress,
        )
    )
    return (
        pipe.segmenter,
        palette_array(pipe.meta.palette),
        label_mapping(cfg.label_map, pipe.meta),
    )


def _check_paths(cfg: SegmentConfig) -> None:
    """Before any work: the outputs can be written, the labels folder exists."""
    check_output_dir(cfg.out, '--out')
    if cfg.json_path:
        check_output_file(cfg.json_path, '--json')
    if cfg.labels and not Path(cfg.labels).is_dir():
        raise FileNotFoundError(f'labels folder {cfg.labels} does not exist')


def _write_summary(path: Path, summary: dict, outputs: Outputs) -> None:
    """The JSON summary at ``path`` (recorded in ``outputs``, its folder created)."""
    outputs.mkdir(path.parent)
    outputs.files.append(path)
    _write_text(path, json.dumps(summary, indent=2) + '\n')


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


def _segment_frames(
    cfg: SegmentConfig,
    source,
    segmenter: Segmenter,
    lut: np.ndarray,
    mapping,
    confusion: ConfusionMatrix | None,
    outputs: Outputs,
) -> dict:
    """The frame loop of :func:`run_segment`: segments and writes every frame, recording each
    file it writes in ``outputs``; the overlay video and strip are finished before it returns
    (the video also when it raises)."""
    outputs.mkdir(cfg.out / 'labels')
    outputs.mkdir(cfg.out / 'color')
    video = None
    if cfg.write_overlay:
        video = OverlayVideo.for_source(cfg.out, outputs, source, cfg.fps)
    strip_tiles: list[np.ndarray] = []
    total = len(source) if cfg.max_frames is None else min(len(source), cfg.max_frames)
    latency, frames, shape = [], 0, None
    stage_ms: dict[str, list[float]] = {}
    # islice: never pull a frame past max_frames (a source's end-of-input check would run)
    frames_in = source if cfg.max_frames is None else itertools.islice(source, cfg.max_frames)
    t_start = time.perf_counter()
    try:
        for frame in tqdm(
            frames_in, total=total, desc='segment', unit='frame', disable=not cfg.progress
        ):
            t0 = time.perf_counter()
            seg = segmenter.segment(frame.image)
            latency.append((time.perf_counter() - t0) * 1e3)
            for k, v in seg.timings_ms.items():
                stage_ms.setdefault(k, []).append(v)
            shape = frame.image.shape[:2]
            color = write_masks(outputs, cfg.out, Path(frame.name).stem, seg.labels, lut)
            if video is not None:
                take = frames % max(1, total // 6) == 0 and len(strip_tiles) < 6
                _add_overlay(video, strip_tiles if take else None, frame, color, cfg.alpha)
            if confusion is not None:
                _score(cfg, frame.name, seg.labels, mapping, confusion)
            frames += 1
        wall = time.perf_counter() - t_start
    finally:
        if video is not None:
            video.close()
    if strip_tiles:
        write_strip(outputs, cfg.out / 'overlay_strip.png', strip_tiles)
    return {
        'frames': frames,
        'latency': latency,
        'stage_ms': stage_ms,
        'shape': shape,
        'wall': wall,
        'total': total,
    }


def _add_overlay(
    video: OverlayVideo,
    strip_tiles: list[np.ndarray] | None,
    frame,
    color: np.ndarray,
    alpha: float,
) -> None:
    """Blend the H×W×3 RGB ``color`` mask over ``frame.image`` into the overlay video (and,
    when ``strip_tiles`` is given, onto the strip)."""
    blended = overlay(frame.image, color, alpha)
    video.write(frame.stamp, blended)
    if strip_tiles is not None:
        strip_tiles.append(blended)


def _score(
    cfg: SegmentConfig, name: str, labels: np.ndarray, mapping, confusion: ConfusionMatrix
) -> None:
    """Add one frame's prediction (mapped to the label classes) against its label file."""
    label_path = Path(cfg.labels or '') / name  # called with labels only
    if not label_path.is_file():
        raise FileNotFoundError(f'no label {label_path} for frame {name}')
    pred = mapping[labels] if mapping is not None else labels
    confusion.update(pred, read_label(label_path), where=str(label_path))


# ------------------------------------------------------------------------------ command line
def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsda segment``."""
    p = subparsers.add_parser(
        'segment',
        help='segment a frame folder or a video offline',
        description='Segment every frame of a folder of images or a video file; write label '
        'masks (OUT/labels/<frame>.png, class ids), colour masks (OUT/color/), an '
        'overlay video and strip, and a JSON summary. With --labels, also mIoU.',
        epilog=EPILOG,
    )
    p.add_argument(
        '--model',
        default='espnet-camvid',
        help=f'zoo name ({", ".join(zoo_names())}) or a checkpoint file (default: %(default)s)',
    )
    p.add_argument(
        '--input',
        required=True,
        help='folder of images, a video file, or a rosbag2 (mcap or sqlite3)',
    )
    p.add_argument(
        '--topic', default=None, help='image topic of a bag input (default: its only image topic)'
    )
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument(
        '--size',
        default=None,
        help="network input WIDTHxHEIGHT, e.g. 480x360 (default: the model's native)",
    )
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto (default: cpu)')
    add_backend_args(p)
    _add_scoring_and_output_args(p)
    p.add_argument('--quiet', dest='progress', action='store_false', help='no progress bar')
    p.set_defaults(func=run)
    return p


def _add_scoring_and_output_args(p: argparse.ArgumentParser) -> None:
    """``vsda segment``'s label scoring (``--labels``, ``--map``) and output options."""
    p.add_argument(
        '--labels',
        default=None,
        help='folder of label PNGs with the same file names (class ids, 11 = void)',
    )
    p.add_argument(
        '--map',
        dest='label_map',
        default=None,
        choices=label_map_choices(),
        help='map the model classes before scoring (e.g. Cityscapes → CamVid-11)',
    )
    add_allow_unknown_labels(p)
    p.add_argument('--json', default=None, help='summary JSON path (default: OUT/summary.json)')
    p.add_argument('--alpha', type=fraction, default=0.5, help='overlay blend (default: 0.5)')
    p.add_argument(
        '--no-overlay',
        dest='write_overlay',
        action='store_false',
        help='skip the overlay video and strip',
    )
    p.add_argument(
        '--fps',
        type=positive_float,
        default=SegmentConfig.fps,
        help='frame rate of a folder input, the rate of its overlay video (videos '
        'and bags carry their own) (default: %(default)s)',
    )
    p.add_argument('--max-frames', type=positive_int, default=None, help='stop after N frames')
    p.add_argument(
        '--allow-truncated',
        action='store_true',
        help='segment what can be read of a truncated video (fewer frames than its '
        'container announces) or a damaged bag, with a warning, and record '
        'frames_expected / frames_read in the summary (default: such input is '
        'an error, exit 2, and the partial outputs are removed)',
    )


def run(args: argparse.Namespace) -> int:
    """``vsda segment``: segment, print the summary; returns 0."""
    from vsda_ros.apps._common import config_from_args
    from vsda_ros.inference import parse_size

    cfg = config_from_args(
        SegmentConfig,
        args,
        input=Path(args.input),
        out=Path(args.out).resolve(),
        size=parse_size(args.size),
        labels=Path(args.labels) if args.labels else None,
        json_path=Path(args.json) if args.json else Path(args.out) / 'summary.json',
    )
    print_summary(run_segment(cfg), cfg.out, cfg.write_overlay, cfg.json_path)
    return 0
