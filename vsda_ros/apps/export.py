"""``vsda export``: a model → static ONNX graphs (and OpenVINO IR), int8 calibrated on the
user's frames, every backend/precision checked against torch; the folder loads as a model.

The graph export, the quantizer and the export folder format are the inference core's
(:mod:`vsda_ros.inference.export`); this module is the command that drives them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsda_ros.apps._common import (
    EPILOG,
    add_allow_unknown_labels,
    check_output_dir,
    label_map_choices,
    positive_int,
)
from vsda_ros.inference.export import (
    SIDECAR,
    ExportInfo,
    export_onnx,
    export_openvino,
    quantize_int8,
)


@dataclass
class ExportConfig:
    """Options of ``vsda export`` (see its ``--help``).

    Attributes:
        model: zoo name, checkpoint file or an export folder.
        size: (width, height) of the exported input; ``None`` = the model's native size.
        out: the export folder.
        formats: ``onnx`` (always written) and/or ``openvino`` (IR next to it).
        precisions: what to prepare and check: fp32 always; bf16 (a compile hint, checked);
            int8 (quantized from ``calibrate``).
        calibrate: unlabelled frames for int8 (folder, video or rosbag2).
        calibrate_frames: how many of them (evenly spread).
        validate: frames for the accuracy check (default: ``calibrate``, else the real CamVid
            val clip when VSDA_DATA_DIR has it); ``labels`` (+ ``label_map``) adds mIoU.
        validate_frames: at most this many validation frames.
        allow_unknown_labels: score label ids that are neither a class nor an ignore value as
            ignored (counted in each check's ``unknown_label_pixels``) instead of failing.
    """

    model: str
    out: Path
    size: tuple[int, int] | None = None
    formats: tuple[str, ...] = ('onnx',)
    precisions: tuple[str, ...] = ('fp32',)
    calibrate: str | None = None
    calibrate_frames: int = 32
    topic: str | None = None
    validate: str | None = None
    labels: str | None = None
    label_map: str | None = None
    validate_frames: int = 16
    progress: bool = True
    allow_unknown_labels: bool = False


def _spread(images: list, n: int) -> list:
    """At most ``n`` of ``images``, evenly spread (first and last included)."""
    if len(images) <= n:
        return images
    idx = np.linspace(0, len(images) - 1, n).round().astype(int)
    return [images[i] for i in idx]


def run_export(cfg: ExportConfig, echo=print) -> dict:
    """Export, quantize and check ``cfg.model``; returns the sidecar's validation record.

    Raises ``ValueError`` for bad options (unknown format/precision, int8 without
    ``calibrate``), ``FileNotFoundError`` for missing inputs, ``BackendUnavailable`` when the
    backends needed are not installed.
    """
    from vsda_ros.evaluation.temporal import load_clip
    from vsda_ros.pipeline import PipelineConfig, build_pipeline

    _check(cfg)
    # the reference: torch fp32 at the export size, with the model's own temporal modules
    pipe = build_pipeline(
        PipelineConfig(model=cfg.model, input_size=cfg.size, progress=cfg.progress)
    )
    model, ref = pipe.model, pipe.segmenter
    size = ref.input_size  # (w, h)
    echo(f'exporting {model.meta.name} at {size[0]}x{size[1]} to {cfg.out} ...')
    info = export_onnx(
        model,
        size,
        Path(cfg.out),
        temporal_extra=pipe.modules.to_extra() if pipe.modules.loaded() else None,
    )
    if 'int8' in cfg.precisions:
        assert cfg.calibrate is not None  # _check: int8 needs calibration frames
        frames = _spread(
            load_clip(cfg.calibrate, None, model.meta, topic=cfg.topic).images, cfg.calibrate_frames
        )
        echo(f'int8: calibrating on {len(frames)} frames of {cfg.calibrate} ...')
        quantize_int8(info, frames, ref.preprocess)
    if 'openvino' in cfg.formats:
        for p in ('fp32', 'int8'):
            if p in info.graphs['onnx']:
                export_openvino(info, p)
    if not _validate(cfg, pipe, info, echo):
        return {}
    info.save()
    echo(f'export: {info.path} (use it as model: {info.path}; sidecar {SIDECAR})')
    return info.validation


def _check(cfg: ExportConfig) -> None:
    """``ValueError`` for an unknown format or precision, or int8 without frames."""
    bad = set(cfg.formats) - {'onnx', 'openvino'}
    if bad:
        raise ValueError(f'unknown format(s) {sorted(bad)} (use onnx, openvino)')
    bad = set(cfg.precisions) - {'fp32', 'bf16', 'int8'}
    if bad:
        raise ValueError(f'unknown precision(s) {sorted(bad)} (use fp32, bf16, int8)')
    if 'int8' in cfg.precisions and not cfg.calibrate:
        raise ValueError(
            'int8 needs --calibrate FOLDER|VIDEO|BAG: unlabelled frames of your own data'
        )


def _validation_source(cfg: ExportConfig) -> str | None:
    """The frames of the accuracy check: ``validate``, else ``calibrate``, else CamVid val
    when the data folder has it (``None``: nothing to check on)."""
    from vsda_ros.paths import data_dir

    vsource = cfg.validate or cfg.calibrate
    if vsource is None:
        root = data_dir()
        if root and (root / 'camvid' / 'val').is_dir():
            vsource = str(root / 'camvid' / 'val')
    return vsource


def _validate(cfg: ExportConfig, pipe, info: ExportInfo, echo) -> bool:
    """Check every installed backend × precision of the export against torch on real frames
    and record each check in ``info.validation`` (printed with ``echo``); ``False`` when
    there are no frames to check on."""
    from vsda_ros.evaluation.accuracy import Reference, measure, within_limits
    from vsda_ros.evaluation.temporal import load_clip
    from vsda_ros.inference import Segmenter, SegmenterConfig

    vsource = _validation_source(cfg)
    labels = cfg.labels if cfg.validate else None
    if vsource is None:
        echo('no frames to validate on (--validate FRAMES): accuracy not checked')
        return False
    clip = load_clip(
        vsource,
        labels,
        pipe.meta,
        cfg.label_map,
        max_frames=None,
        topic=cfg.topic,
        allow_unknown_labels=cfg.allow_unknown_labels,
    )
    pick = _spread(list(range(len(clip.images))), cfg.validate_frames)
    images = [clip.images[i] for i in pick]
    labs = [clip.labels[i] for i in pick] if labels else None
    echo(
        f'validating against torch on {len(images)} frames of {vsource}'
        + (' (with labels)' if labs else '')
        + ':'
    )
    combos = _combos(cfg)
    reference = Reference(pipe.segmenter, images)
    for backend, precision in combos:
        seg = Segmenter(
            pipe.model,
            SegmenterConfig(
                input_size=tuple(pipe.segmenter.input_size),
                backend=backend,
                precision=precision,
                export_dir=info.path,
            ),
        )
        r = measure(seg, pipe.segmenter, images, labs, clip if labs else None, reference)
        ok, why = within_limits(precision, r)
        r.update(within_limits=ok, check=why, frames=len(images), source=str(vsource))
        if labs:
            r['unknown_label_pixels'] = clip.unknown_label_pixels
        info.validation[f'{backend}/{precision}'] = r
        _echo_check(backend, precision, r, ok, why, echo)
    return True


def _combos(cfg: ExportConfig) -> list[tuple[str, str]]:
    """The installed (backend, precision) pairs the export is checked on: fp32 always, bf16
    and int8 when exported (no bf16 on ONNX Runtime)."""
    from vsda_ros.inference.backends import installed

    combos = [
        (b, p)
        for b in ('openvino', 'onnxruntime')
        if installed(b)
        for p in ('fp32', 'bf16', 'int8')
        if p == 'fp32' or p in cfg.precisions
    ]
    return [(b, p) for b, p in combos if not (b == 'onnxruntime' and p == 'bf16')]


def _echo_check(backend: str, precision: str, r: dict, ok: bool, why: str, echo) -> None:
    """One validation line (and the per-class IoU with labels)."""
    miou = f'  mIoU {r["miou"]:.2f} (torch {r["ref_miou"]:.2f})' if 'miou' in r else ''
    echo(
        f'  {backend:>11s} {precision}: max logit error {r["max_logit_error"]:.2e}  '
        f'argmax agreement {r["argmax_agreement"]:.3f} %{miou}  -> '
        f'{"within" if ok else "OUTSIDE"} the limits ({why})'
    )
    if 'per_class_iou' in r:
        echo(
            '      per-class IoU: '
            + ', '.join(
                f'{n} {v:.1f}'
                + ('' if r['ref_per_class_iou'][n] is None else f'/{r["ref_per_class_iou"][n]:.1f}')
                for n, v in r['per_class_iou'].items()
                if v is not None
            )
            + ' (this/torch)'
        )


# ------------------------------------------------------------------------------ command line
EXPORT_DESCRIPTION = (
    'Export the model contract (features, head and the whole network) as '
    'static graphs at --size with torch.onnx (dynamo), optionally as OpenVINO '
    'IR, quantize to int8 on your own unlabelled frames (--calibrate), and '
    'check every backend/precision against torch on real frames (max logit '
    'error, argmax agreement; mIoU and per-class IoU with --labels). OUT holds '
    'the graphs, model.pt and vsda_export.json (meta, size, weights sha256, '
    'the checks); use OUT as a model name: vsda segment --model OUT --backend '
    "openvino, or the node's model: OUT. precision auto picks bf16/int8 only "
    'when the recorded check is within the limits (fp32: 99.9 % agreement, '
    '0.05 mIoU; bf16/int8: 1.0 mIoU).'
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``vsda export``."""
    p = subparsers.add_parser(
        'export',
        help='export a model to ONNX / OpenVINO (fp32, bf16, int8), checked vs torch',
        description=EXPORT_DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument('--model', required=True, help='zoo name, checkpoint file or export folder')
    _add_graph_args(p)
    _add_validation_args(p)
    p.add_argument('--out', required=True, help='export folder')
    p.add_argument('--quiet', dest='progress', action='store_false', help='no progress bars')
    p.set_defaults(func=run)
    return p


def _add_graph_args(p: argparse.ArgumentParser) -> None:
    """What is exported: size, format, precisions, int8 calibration frames."""
    p.add_argument(
        '--size',
        default=None,
        help="input WIDTHxHEIGHT of the graphs (default: the model's native)",
    )
    p.add_argument(
        '--format',
        default='openvino',
        choices=['onnx', 'openvino'],
        help='onnx, or openvino (ONNX + OpenVINO IR) (default: %(default)s)',
    )
    p.add_argument(
        '--precision',
        default='fp32,bf16',
        help='comma-separated: fp32 (always), bf16 (checked; a compile hint), int8 '
        '(needs --calibrate) (default: %(default)s)',
    )
    p.add_argument(
        '--calibrate',
        default=None,
        metavar='FOLDER|VIDEO|BAG',
        help='unlabelled frames of your data for int8 calibration',
    )
    p.add_argument(
        '--calibrate-frames',
        type=positive_int,
        default=32,
        help='calibration frames, spread over the source (default: %(default)s)',
    )
    p.add_argument('--topic', default=None, help='image topic of a bag source')


def _add_validation_args(p: argparse.ArgumentParser) -> None:
    """The accuracy check against torch: frames, labels, label map."""
    p.add_argument(
        '--validate',
        default=None,
        metavar='FRAMES',
        help='frames for the accuracy check (default: --calibrate, else VSDA_DATA_DIR/camvid/val)',
    )
    p.add_argument('--labels', default=None, help='labels of --validate (adds mIoU)')
    p.add_argument(
        '--map',
        dest='label_map',
        default=None,
        choices=label_map_choices(),
        help='map the model classes to the labels (e.g. cityscapes-camvid)',
    )
    add_allow_unknown_labels(p)
    p.add_argument(
        '--validate-frames',
        type=positive_int,
        default=16,
        help='at most this many validation frames (default: %(default)s)',
    )


def run(args: argparse.Namespace) -> int:
    """``vsda export``: export and check; returns 0."""
    from vsda_ros.apps._common import config_from_args
    from vsda_ros.inference import parse_size

    cfg = config_from_args(
        ExportConfig,
        args,
        out=Path(args.out),
        size=parse_size(args.size),
        formats=('onnx', 'openvino') if args.format == 'openvino' else ('onnx',),
        precisions=tuple(args.precision.split(',')),
    )
    check_output_dir(cfg.out, '--out')  # before the model is loaded and exported
    run_export(cfg)
    return 0
