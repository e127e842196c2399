"""The evidence ``backend: auto`` decides on: compiled backends checked against torch when
their graphs are built, recorded in the export's sidecar.

**Rule.** ``auto`` takes the first candidate of
:func:`~vsda_ros.inference.backends.candidates` (fastest first, from the
measurements in docs/design/backends.md: OpenVINO bf16 where the CPU has native bf16, then
OpenVINO fp32, then ONNX Runtime; int8 only from a ``vsda export`` folder) whose recorded check
is within :class:`Limits` — fp32: argmax agreement with torch ≥ 99.9 % (and |ΔmIoU| ≤ 0.05
with labels); bf16/int8: the same agreement record *and* |ΔmIoU| ≤ 1.0 on labelled real
frames (never on agreement alone) — else torch fp32. Same machine and packages → same record →
same choice, so a node and an offline run with the defaults compute the same masks.

**Frames.** :data:`EVIDENCE_FRAMES` frames of ``VSDA_DATA_DIR/camvid/val`` (evenly spread,
with ``valannot`` labels for CamVid- and Cityscapes-class models), else a deterministic
synthetic set (no mIoU: bf16 is then not chosen). Agreement is measured at the network input
size. Failures: a candidate that does not compile is recorded as failed, not raised.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

if TYPE_CHECKING:
    from vsda_ros.inference.export_info import ExportInfo
    from vsda_ros.models.base import ModelMeta, SegmentationModel

#: frames checked per candidate at build time (start-up cost: see docs/design/backends.md).
EVIDENCE_FRAMES = 4
EVIDENCE_VERSION = 1


@dataclass
class Limits:
    """Accuracy limits, in mIoU points (percent) and percent of pixels."""

    fp32_miou: float = 0.05
    fp32_agreement: float = 99.9
    low_miou: float = 1.0


def within_limits(precision: str, result: dict, limits: Limits | None = None) -> tuple[bool, str]:
    """Whether ``result`` (``argmax_agreement``; ``miou`` and ``ref_miou`` with labels) is
    within the limits for ``precision``, and a one-line reason. Without labels bf16/int8 are
    not within the limits (the mIoU limit is unchecked)."""
    limits = limits or Limits()
    agree = result['argmax_agreement']
    d = None if result.get('miou') is None else result['miou'] - result['ref_miou']
    if precision == 'fp32':
        ok = agree >= limits.fp32_agreement and (d is None or abs(d) <= limits.fp32_miou)
        return ok, (
            f'agreement {agree:.3f} % (≥ {limits.fp32_agreement}), ΔmIoU '
            + ('n/a' if d is None else f'{d:+.3f}')
            + f' (±{limits.fp32_miou})'
        )
    if d is None:
        return False, (
            f'agreement {agree:.2f} %; no labels, so the mIoU limit '
            f'(±{limits.low_miou}) is unchecked: not validated'
        )
    return abs(d) <= limits.low_miou, (
        f'ΔmIoU {d:+.3f} (limit ±{limits.low_miou}), agreement {agree:.2f} %'
    )


def runtime_key(device: torch.device) -> str:
    """What a record is valid for: device kind, backend versions and CPU capabilities."""
    from vsda_ros.inference.backends import native_bf16

    parts = [device.type, f'bf16={native_bf16()}']
    for pkg in ('openvino', 'onnxruntime'):
        try:
            parts.append(f'{pkg}={importlib.metadata.version(pkg)}')
        except importlib.metadata.PackageNotFoundError:
            parts.append(f'{pkg}=none')
    return hashlib.sha256('|'.join(parts).encode()).hexdigest()[:12]


def evidence_frames(
    meta: ModelMeta, size: tuple[int, int]
) -> tuple[list[np.ndarray], list | None, str]:
    """(images at ``size``, labels in the model's class ids or ``None``, description)."""
    import cv2

    from vsda_ros.data.sources import read_rgb
    from vsda_ros.paths import data_dir

    w, h = size
    root = data_dir()
    val = root / 'camvid' / 'val' if root else None
    if val is not None and val.is_dir():
        files = sorted(val.glob('*.png'))
        if files:
            pick = [
                files[i]
                for i in np.linspace(0, len(files) - 1, EVIDENCE_FRAMES).round().astype(int)
            ]
            images = [cv2.resize(read_rgb(f), (w, h), interpolation=cv2.INTER_LINEAR) for f in pick]
            labels = _labels(meta, pick, size)
            return (
                images,
                labels,
                (f'{len(images)} real frames of {val}' + (' (labelled)' if labels else '')),
            )
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    images = [
        cv2.resize(np.roll(base, i, axis=1), (w, h), interpolation=cv2.INTER_CUBIC)
        for i in range(EVIDENCE_FRAMES)
    ]
    return images, None, f'{EVIDENCE_FRAMES} synthetic frames (no VSDA_DATA_DIR/camvid/val)'


def _labels(meta: ModelMeta, files: list[Path], size: tuple[int, int]) -> list | None:
    """CamVid-11 labels of ``files`` (``valannot``) at ``size``, as (labels, LUT model→label
    class) pairs for CamVid- or Cityscapes-class models; ``None`` otherwise or when missing."""
    import cv2

    from vsda_ros.models.labels import CAMVID_CLASSES, CITYSCAPES_CLASSES, CITYSCAPES_TO_CAMVID

    classes = list(meta.classes)
    if classes == list(CAMVID_CLASSES):
        lut = np.arange(len(classes))
    elif classes == list(CITYSCAPES_CLASSES):
        lut = np.asarray(CITYSCAPES_TO_CAMVID)
    else:
        return None
    out = []
    for f in files:
        ann = f.parent.parent / 'valannot' / f.name
        lab = cv2.imread(str(ann), cv2.IMREAD_UNCHANGED)
        if lab is None or lab.ndim != 2:
            return None
        out.append((cv2.resize(lab, size, interpolation=cv2.INTER_NEAREST), lut))
    return out


def miou(preds: list[np.ndarray], labels: list, n: int = 11) -> float:
    """mIoU (percent) of model-class predictions against CamVid-11 labels (void 11 and 255
    ignored), classes absent from both left out."""
    cm = np.zeros((n, n), np.int64)
    for p, (lab, lut) in zip(preds, labels, strict=False):
        keep = lab < n
        cm += np.bincount(n * lab[keep].astype(np.int64) + lut[p[keep]], minlength=n * n).reshape(
            n, n
        )
    inter = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - inter
    return float(np.mean(inter[union > 0] / union[union > 0]) * 100)


def ensure_checks(
    record: dict,
    info: ExportInfo,
    model: SegmentationModel,
    device: torch.device,
    pairs: list[tuple[str, str]],
) -> bool:
    """Check ``pairs`` in order against torch on the evidence frames until one is within the
    limits (those already in ``record['checks']`` are reused); ``True`` when something was
    added. ``record`` (``{}`` at first) gets ``version``, ``frames``, ``limits``, ``checks``."""
    from dataclasses import asdict

    if record.get('version') != EVIDENCE_VERSION:
        record.clear()
        record.update(version=EVIDENCE_VERSION, limits=asdict(Limits()), checks={})
    added, ref = False, None
    for backend, precision in pairs:
        key = f'{backend}/{precision}'
        if key not in record['checks']:
            if info.graph('onnx', 'int8' if precision == 'int8' else 'fp32', 'full') is None:
                continue
            if ref is None:
                ref = _reference(info, model)
                record['frames'] = ref[3]
            record['checks'][key] = _check(info, backend, precision, device, ref)
            added = True
        if record['checks'][key]['within_limits']:
            break
    return added


def _reference(info: ExportInfo, model: SegmentationModel) -> tuple:
    """(inputs, torch labels at the network size, labels or ``None``, frames description)."""
    size = cast('tuple[int, int]', tuple(info.size))
    images, labels, source = evidence_frames(model.meta, size)
    xs = [
        torch.from_numpy(im.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0))[None]
        for im in images
    ]
    with torch.inference_mode():
        ref = [model.cpu().eval()(x).argmax(1)[0].numpy() for x in xs]
    return xs, ref, labels, source


def _check(
    info: ExportInfo, backend: str, precision: str, device: torch.device, ref: tuple
) -> dict:
    """One candidate's record: agreement, mIoU (with labels), ``within_limits``, ``check``."""
    from vsda_ros.inference.backends import CompileOptions, compile_graph
    from vsda_ros.inference.export import cache_root, graph_for

    xs, ref_labels, labels, source = ref
    try:
        run = compile_graph(
            backend,
            precision,
            graph_for(info, backend, precision, 'full'),
            device,
            CompileOptions(blob_dir=cache_root() / 'openvino'),
        )
        preds = [run(x.numpy()).argmax(1)[0] for x in xs]
    except (RuntimeError, OSError) as e:
        return {'within_limits': False, 'check': f'does not run here: {str(e)[:160]}'}
    same = sum(int((a == b).sum()) for a, b in zip(preds, ref_labels, strict=False))
    r = {
        'argmax_agreement': 100.0 * same / sum(a.size for a in ref_labels),
        'miou': miou(preds, labels) if labels else None,
        'ref_miou': miou(ref_labels, labels) if labels else None,
        'source': source,
    }
    ok, why = within_limits(precision, r)
    r.update(within_limits=ok, check=why)
    return r
