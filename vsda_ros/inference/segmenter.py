"""Image → segmentation with one model: the :class:`Segmenter` every caller shares.

:class:`Segmenter` does preprocessing (resize to the network input size), inference and
postprocessing (logits resized to the input resolution, argmax, and a lazily computed
confidence), and
times each stage. Everything runs on one device with the same code for live and offline use, so
identical frames give identical masks.

Inference runs on one backend (:mod:`vsda_ros.inference.backends`): ``torch`` (the default,
the reference), ``openvino`` or ``onnxruntime`` on graphs exported by
:mod:`vsda_ros.inference.export`. Whatever the backend, :attr:`Segmenter.model` follows the
model contract (``forward_features``, ``forward_head``, ``logits_from_features``, ``forward``)
so every temporal strategy runs on it unchanged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vsda_ros.frames import Segmentation
from vsda_ros.inference.reduction import argmax_first, confidence_255, max_softmax_255
from vsda_ros.models.base import ModelMeta, SegmentationModel

if TYPE_CHECKING:
    from vsda_ros.inference.backends import CompiledModel, Runner
    from vsda_ros.inference.export import ExportInfo

log = logging.getLogger(__name__)

#: Largest network input accepted by :func:`parse_size` (a side, and pixels): 4096×4096 already
#: needs several GB of activations; the camera resolution itself is not limited by this.
MAX_INPUT_SIDE = 4096
MAX_INPUT_PIXELS = 4096 * 4096
#: Default for :attr:`SegmenterConfig.max_output_pixels`: 1920×1080 and smaller frames get the
#: exact bilinear-upsampled argmax; larger ones are post-processed on a grid reduced by an
#: integer factor and their labels / confidence upsampled by pixel repetition (nearest).
MAX_OUTPUT_PIXELS = 1920 * 1088


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``'480x360'`` → (480, 360); ``None``/``''``/``'native'`` → ``None``.

    Raises ``ValueError`` with a clear message on anything else.
    """
    if text is None or text in ('', 'native'):
        return None
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise ValueError(f'size must look like WIDTHxHEIGHT (e.g. 480x360), got {text!r}') from None
    if w < 32 or h < 32:
        raise ValueError(f'size {text!r} is too small (each side must be ≥ 32)')
    if w > MAX_INPUT_SIDE or h > MAX_INPUT_SIDE or w * h > MAX_INPUT_PIXELS:
        raise ValueError(
            f'size {text!r} is too large for a network input (at most '
            f'{MAX_INPUT_SIDE} a side and {MAX_INPUT_PIXELS / 1e6:.1f} Mpx; the '
            'outputs follow the camera resolution whatever the input size)'
        )
    return w, h


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; raises ``ValueError`` if unavailable."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f'unknown device {name!r} (use cpu, cuda, cuda:N or auto)') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {name!r} requested but CUDA is not available here')
    if device.type not in ('cpu', 'cuda'):
        raise ValueError(f'unsupported device {name!r} (use cpu, cuda, cuda:N or auto)')
    return device


@dataclass
class SegmenterConfig:
    """How to run a model.

    Attributes:
        input_size: (width, height) fed to the network; ``None`` = the model's native size.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        max_output_pixels: memory bound of post-processing. Logits (C×H×W float32) are
            upsampled to the frame's resolution only up to this many pixels; a larger frame is
            post-processed at H/k×W/k (the smallest integer k that fits) and the labels and
            confidence are repeated k×k to the frame's size. Without it an 8K frame needed
            ~1.5 GB per copy of the logits.
        backend: ``torch`` (reference), ``openvino``, ``onnxruntime`` or ``auto`` (the fastest
            installed for the device; see :func:`~vsda_ros.inference.backends.resolve_backend`).
        precision: ``fp32``, ``bf16`` (openvino), ``int8`` (needs an export with int8 graphs:
            ``vsda export --precision int8 --calibrate ...``) or ``auto`` (fp32 unless the
            export's accuracy record shows a lower precision within the limits).
        export_dir: an export folder (``vsda export``) to take the graphs from; ``None`` = the
            compiled-model cache (exported on first use, keyed by weights sha256 and size).
    """

    input_size: tuple[int, int] | None = None
    device: str = 'cpu'
    max_output_pixels: int = MAX_OUTPUT_PIXELS
    backend: str = 'torch'
    precision: str = 'fp32'
    export_dir: Path | None = None


def output_factor(out_hw: tuple[int, int], max_pixels: int) -> int:
    """The smallest integer k ≥ 1 with ⌈H/k⌉·⌈W/k⌉ ≤ ``max_pixels`` (1 when it already fits).

    Raises ``ValueError`` for a non-positive ``max_pixels``.
    """
    if max_pixels <= 0:
        raise ValueError(f'max_output_pixels must be positive, got {max_pixels}')
    h, w = out_hw
    k = 1
    while (-(-h // k)) * (-(-w // k)) > max_pixels:
        k += 1
    return k


class Segmenter:
    """Runs a :class:`SegmentationModel` on H×W×3 uint8 RGB images, on one backend.

    Attributes:
        model: the model contract the strategies call: the torch model itself on ``torch``,
            a :class:`~vsda_ros.inference.backends.CompiledModel` on the others.
        torch_model: the torch model (weights, training, export source).
        backend, precision: what runs (``auto`` resolved); ``backend_reason`` says why.
        export_info: the exported graphs a compiled backend runs (:class:`ExportInfo`: an
            export folder or the compiled-model cache); ``None`` on ``torch``.

    Raises (constructor): ``ValueError`` for an unknown device/backend/precision,
    ``BackendUnavailable`` (a ``RuntimeError``) when the backend or precision cannot run
    here, ``FileNotFoundError`` for an int8 request without int8 graphs.
    """

    def __init__(self, model: SegmentationModel, config: SegmenterConfig | None = None) -> None:
        from vsda_ros.inference.backends import resolve_backend

        self.config = config or SegmenterConfig()
        self.device = resolve_device(self.config.device)
        self.torch_model = model
        w, h = self.config.input_size or model.meta.native_size
        self.input_size: tuple[int, int] = (int(w), int(h))
        self.export_info: ExportInfo | None = None
        info = None
        if self.config.export_dir is not None:
            from vsda_ros.inference.export import ExportInfo

            info = ExportInfo.load(self.config.export_dir)
        self._cache_info: ExportInfo | None = None
        record = (
            self._evidence(model, info)
            if 'auto' in (self.config.backend, self.config.precision)
            else None
        )
        self.backend, self.precision, self.backend_reason = resolve_backend(
            self.config.backend, self.config.precision, self.device, record
        )
        self.model: SegmentationModel | CompiledModel
        if self.backend == 'torch':
            self.model = model.to(self.device).eval()
        else:
            self.model = self._compiled(model, info)
        if self.config.backend == 'auto' or self.config.precision == 'auto':
            log.info(
                'backend %s, precision %s (%s)', self.backend, self.precision, self.backend_reason
            )

    def _compiled(self, model: SegmentationModel, info: ExportInfo | None) -> CompiledModel:
        """The compiled graphs at the input size: from ``info`` when it was exported at that
        size (its files checked against their recorded digests: :class:`DamagedExport`), else
        from the cache (exported there on first use; a damaged entry is rebuilt with a WARN).
        Graphs are compiled on first use, so a strategy that never splits features/head
        compiles only the fused graph; a graph the backend cannot load raises one
        ``RuntimeError`` line naming the file and the fix."""
        from vsda_ros.inference.backends import CompiledModel, CompileOptions, compile_graph
        from vsda_ros.inference.export import cache_root, graph_for

        info, fix = self._graphs(model, info)
        options = CompileOptions(blob_dir=cache_root() / 'openvino')
        backend, precision, device = self.backend, self.precision, self.device
        paths = {
            part: graph_for(info, backend, precision, part) for part in ('features', 'head', 'full')
        }

        class Lazy(dict):
            def __missing__(self, part: str) -> Runner:
                try:
                    self[part] = compile_graph(backend, precision, paths[part], device, options)
                except RuntimeError as e:
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                    raise RuntimeError(
                        f'{paths[part]}: {backend} cannot load it ({first}); {fix}'
                    ) from None
                return self[part]

        w, h = self.input_size
        compiled = CompiledModel(model.meta, Lazy(), (h, w), backend, precision, self.device)
        self.export_info = info
        return compiled

    def _graphs(self, model: SegmentationModel, info: ExportInfo | None) -> tuple[ExportInfo, str]:
        """The export whose graphs run (``info`` checked, or the cache entry) and the fix to
        name if one cannot be loaded."""
        from vsda_ros.inference.export import (
            cached_export,
            check_user_export,
            graph_for,
            rebuild_command,
        )

        if info is not None and tuple(info.size) == self.input_size:
            used = ['model.pt']
            for part in ('features', 'head', 'full'):
                p = graph_for(info, self.backend, self.precision, part).relative_to(info.path)
                used += [str(p), str(p.with_suffix('.bin'))] if p.suffix == '.xml' else [str(p)]
            check_user_export(info, used)
            return info, 'rebuild the folder: ' + rebuild_command(info)
        if info is not None:
            log.warning(
                'export %s is for %dx%d, not %dx%d: using the cache',
                info.path,
                *info.size,
                *self.input_size,
            )
        if self.precision == 'int8':
            raise FileNotFoundError(
                f'int8 needs graphs calibrated at {self.input_size[0]}x{self.input_size[1]}'
                ': vsda export --precision int8 --calibrate FRAMES --out DIR, then model: DIR'
            )
        info = self._cache_info or cached_export(model.cpu().eval(), self.input_size)
        return info, f'remove {info.path} and start again (the cache entry is rebuilt)'

    def _evidence(self, model: SegmentationModel, info: ExportInfo | None) -> dict:
        """The accuracy records ``auto`` decides on (see :mod:`~vsda_ros.inference.evidence`):
        a user export's ``validation`` (``vsda export``), else the cache entry's evidence for
        this runtime, checked now for the candidates not yet recorded (saved in the sidecar).
        ``{}`` (→ torch) when nothing can be exported here (WARN)."""
        from vsda_ros.inference import evidence as ev
        from vsda_ros.inference.backends import candidates
        from vsda_ros.inference.export import cached_export

        if info is not None and tuple(info.size) == self.input_size:
            return info.validation
        pairs = [
            (b, p)
            for b, p in candidates(self.device, self.config.precision)
            if self.config.backend in ('auto', b)
        ]
        if not pairs:
            return {}
        try:
            entry = cached_export(model.cpu().eval(), self.input_size)
            record = entry.evidence.setdefault(ev.runtime_key(self.device), {})
            if ev.ensure_checks(record, entry, model, self.device, pairs):
                try:
                    entry.save()
                except OSError as e:  # a read-only cache: checked again next start
                    log.info('evidence not saved in %s (%s)', entry.path, e)
        except (RuntimeError, OSError) as e:
            log.warning('backend auto: no compiled graphs here (%s): torch', e)
            return {}
        self._cache_info = entry
        return {
            k: {**v, 'source': f'{v.get("source", "")}, recorded in {entry.path}'}
            for k, v in record['checks'].items()
        }

    @property
    def meta(self) -> ModelMeta:
        """The model's metadata (classes, palette, normalisation, native size)."""
        return self.model.meta

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """H×W×3 uint8 RGB → 1×3×h×w float in [0, 1] at the network input size.

        Raises ``ValueError`` for anything but a non-empty H×W×3 uint8 array.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
            raise ValueError(f'expected an H×W×3 uint8 RGB image, got {image.dtype} {image.shape}')
        w, h = self.input_size
        if (image.shape[1], image.shape[0]) != (w, h):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        # In numpy, on this thread: a torch thread team for this element-wise work waits for a
        # second core, and on a busy two-core machine that wait was 4–12 ms (the node's p95).
        chw = image.transpose(2, 0, 1).astype(np.float32)
        chw /= np.float32(255.0)
        return torch.from_numpy(chw).unsqueeze(0).to(self.device)

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """1×3×h×w → 1×C×h×w logits."""
        return self.model(x)

    @torch.inference_mode()
    def postprocess(
        self, logits: torch.Tensor, out_hw: tuple[int, int]
    ) -> tuple[np.ndarray, Callable[[], np.ndarray]]:
        """1×C×h×w logits → (labels, confidence function), both H×W uint8 at ``out_hw``.

        The labels (argmax over C) are computed now; the confidence (round(max softmax × 255))
        only when the returned function is called (see :attr:`Segmentation.confidence`).
        Frames above ``config.max_output_pixels`` are post-processed on a grid reduced by
        :func:`output_factor` and repeated back to ``out_hw`` (bounded memory; see
        :class:`SegmenterConfig`).
        """
        out_hw = (int(out_hw[0]), int(out_hw[1]))
        k = output_factor(out_hw, self.config.max_output_pixels)
        work_hw = (-(-out_hw[0] // k), -(-out_hw[1] // k))  # ceil: repeat k×k, then crop
        if tuple(logits.shape[-2:]) != work_hw:
            logits = F.interpolate(logits, size=work_hw, mode='bilinear', align_corners=False)
        scores = logits[0]

        def full(small: torch.Tensor | np.ndarray) -> np.ndarray:
            arr = small.to(torch.uint8).cpu().numpy() if isinstance(small, torch.Tensor) else small
            if k > 1:
                arr = np.repeat(np.repeat(arr, k, axis=0), k, axis=1)[: out_hw[0], : out_hw[1]]
            return np.ascontiguousarray(arr)

        if scores.device.type == 'cpu' and scores.dtype == torch.float32 and scores.shape[0] < 256:
            scores_np = np.ascontiguousarray(scores.numpy())
            fast = argmax_first(scores_np)
            if fast is not None:
                labels_np, best_np = fast
                return full(labels_np), lambda: full(confidence_255(scores_np, best_np))
        # another device or dtype, or NaN scores: torch's own max and softmax
        best, labels = scores.max(dim=0)

        @torch.inference_mode()
        def torch_confidence() -> np.ndarray:
            return full(max_softmax_255(scores, best))

        return full(labels), torch_confidence

    def segment(self, image: np.ndarray) -> Segmentation:
        """One H×W×3 uint8 RGB image → :class:`Segmentation` at H×W, with stage timings."""
        t0 = time.perf_counter()
        x = self.preprocess(image)
        t1 = time.perf_counter()
        logits = self.logits(x)
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        labels, confidence = self.postprocess(logits, image.shape[:2])
        t3 = time.perf_counter()
        return Segmentation(
            labels,
            confidence,
            timings_ms={
                'preprocess': (t1 - t0) * 1e3,
                'inference': (t2 - t1) * 1e3,
                'postprocess': (t3 - t2) * 1e3,
            },
        )
