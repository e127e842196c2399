"""Inference backends behind :class:`~vsda_ros.inference.Segmenter`: one model contract.

Every backend gives the :class:`~vsda_ros.models.base.SegmentationModel` contract the temporal
strategies call — ``forward_features(x)`` (B×3×H×W RGB in [0, 1] → B×F×h×w),
``forward_head(f)`` (B×F×h×w → B×C×h'×w'), ``logits_from_features(f, size)`` and
``forward(x)`` (B×3×H×W → B×C×H×W, fused: one graph call) — on torch tensors, so ``per_frame``,
``fusion`` and ``keyframe`` run unchanged on any of them:

- ``torch``: the model itself (reference, training; cpu or cuda);
- ``openvino``: OpenVINO on the CPU, precision fp32 (``INFERENCE_PRECISION_HINT=f32``), bf16
  (the same graph compiled with the bf16 hint; AVX512-BF16/AMX CPUs) or int8 (a QDQ graph
  quantized by :mod:`vsda_ros.inference.export`);
- ``onnxruntime``: ONNX Runtime, CPU EP (fp32, int8), or the TensorRT/CUDA EPs on ``cuda``.

Compiled backends run static-shape graphs exported at one input size (1×3×H×W); the graphs
come from an export folder (:mod:`vsda_ros.inference.export`). ``openvino`` and
``onnxruntime`` are imported only when used: the package imports without them.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from vsda_ros.models.base import ModelMeta

log = logging.getLogger(__name__)

BACKENDS = ('torch', 'openvino', 'onnxruntime')
PRECISIONS = ('fp32', 'bf16', 'int8')
#: The graphs of an export: features, head and the whole network (fused).
PARTS = ('features', 'head', 'full')


class BackendUnavailable(RuntimeError):
    """The requested backend/precision cannot run here (not installed, no such device, no
    graph for that precision); the message says what to install or run."""


def installed(backend: str) -> bool:
    """Whether ``backend``'s Python package can be imported (without importing it)."""
    if backend == 'torch':
        return True
    module = {'openvino': 'openvino', 'onnxruntime': 'onnxruntime'}.get(backend)
    return module is not None and importlib.util.find_spec(module) is not None


def ort_providers(device: torch.device) -> list[str]:
    """ONNX Runtime execution providers for ``device``, best first (TensorRT, CUDA on cuda)."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    if device.type == 'cuda':
        wanted = ['TensorrtExecutionProvider', 'CUDAExecutionProvider']
        return [p for p in wanted if p in have] + ['CPUExecutionProvider']
    return ['CPUExecutionProvider']


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether OpenVINO reports native bf16 on this CPU (without it the bf16 hint is slow or
    ignored, so bf16 is no candidate)."""
    try:
        import openvino as ov

        return 'BF16' in ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    except (ImportError, RuntimeError):
        return False


def candidates(device: torch.device, precision: str = 'auto') -> list[tuple[str, str]]:
    """Compiled (backend, precision) pairs ``auto`` may pick on ``device``, fastest first,
    restricted to installed backends and to ``precision`` unless it is ``auto``."""
    if device.type == 'cuda':
        gpu = installed('onnxruntime') and ort_providers(device)[0] != 'CPUExecutionProvider'
        order = [('onnxruntime', 'fp32')] if gpu else []
    else:
        order = [('openvino', 'bf16')] if installed('openvino') and native_bf16() else []
        # measured (docs/design/backends.md): OV int8 ≳ OV fp32 > ORT fp32 ≥ ORT int8
        order += [
            ('openvino', 'int8'),
            ('openvino', 'fp32'),
            ('onnxruntime', 'fp32'),
            ('onnxruntime', 'int8'),
        ]
        order = [(b, p) for b, p in order if installed(b)]
    return [(b, p) for b, p in order if precision in ('auto', p)]


def resolve_backend(
    backend: str, precision: str, device: torch.device, validated: dict | None = None
) -> tuple[str, str, str]:
    """``auto`` → the concrete (backend, precision) for ``device``, plus why.

    ``backend='auto'``: the first of :func:`candidates` (fastest
    installed first; restricted to ``precision`` unless that is ``auto``) whose record in
    ``validated`` (``{'openvino/bf16': {'within_limits': True, 'check': ...}}``: the evidence
    recorded when the graphs were built, or a ``vsda export`` validation) is within the
    accuracy limits; without such a record torch fp32. ``precision='auto'`` with a named
    backend: the first of its candidate precisions with a passing record, else fp32. A lower
    precision is never chosen without a record.

    Raises:
        ValueError: an unknown name.
        BackendUnavailable: an explicitly requested backend that is not installed, or a
            precision the backend does not run on this device.
    """
    if backend not in ('auto', *BACKENDS):
        raise ValueError(f'unknown backend {backend!r} (use auto, {", ".join(BACKENDS)})')
    if precision not in ('auto', *PRECISIONS):
        raise ValueError(f'unknown precision {precision!r} (use auto, {", ".join(PRECISIONS)})')
    why = 'requested'
    if backend == 'auto' or precision == 'auto':
        pairs = [(b, p) for b, p in candidates(device, precision) if backend in ('auto', b)]
        passed = [
            (b, p) for b, p in pairs if (validated or {}).get(f'{b}/{p}', {}).get('within_limits')
        ]
        if passed:
            assert validated is not None  # the passing record is in it
            rec = validated[f'{passed[0][0]}/{passed[0][1]}']
            why = (
                f'auto: {passed[0][0]}/{passed[0][1]} is the fastest candidate validated '
                f'within the accuracy limits ({rec.get("check", "recorded check")}; '
                f'{rec.get("source", "recorded")})'
            )
            backend, precision = passed[0]
        else:
            why = 'auto: no compiled candidate has a passing accuracy record' + (
                '' if validated else ' (none recorded)'
            )
            backend = 'torch' if backend == 'auto' else backend
            precision = 'fp32' if precision == 'auto' else precision
    return (*_check_runs(backend, precision, device), why)


def _check_runs(backend: str, precision: str, device: torch.device) -> tuple[str, str]:
    """``(backend, precision)`` when they can run on ``device``, else ``BackendUnavailable``."""
    if not installed(backend):
        raise BackendUnavailable(
            f'backend {backend} is not installed (pip install {backend}, see requirements.lock)'
        )
    if backend == 'openvino' and device.type != 'cpu':
        raise BackendUnavailable(
            'backend openvino runs on the CPU here (device cpu); use onnxruntime or torch on cuda'
        )
    if backend == 'torch' and precision != 'fp32':
        raise BackendUnavailable(
            f'backend torch runs fp32 only; {precision} needs openvino '
            '(bf16, int8) or onnxruntime (int8)'
        )
    if backend == 'onnxruntime' and precision == 'bf16':
        raise BackendUnavailable('onnxruntime has no bf16 on the CPU EP; use openvino for bf16')
    return backend, precision


Runner = Callable[[np.ndarray], np.ndarray]


def _ov_runner(compiled: Any) -> Runner:
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()  # the request reuses its buffer

    return run


def _ort_runner(session: Any) -> Runner:
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return run


@dataclass
class CompileOptions:
    """How compiled graphs are built.

    Attributes:
        threads: CPU threads (default: ``torch.get_num_threads()``, i.e. OMP_NUM_THREADS).
        blob_dir: where OpenVINO's compiled models are kept (``export_model``, written
            atomically with a digest record; :func:`_ov_compiled`): a restart imports instead
            of recompiling. ``None`` = compile every time.
    """

    threads: int | None = None
    blob_dir: Path | None = None


def compile_graph(
    backend: str,
    precision: str,
    path: Path,
    device: torch.device,
    options: CompileOptions | None = None,
) -> Runner:
    """One graph file (ONNX, or OpenVINO IR ``.xml``) → a runner ``np.ndarray → np.ndarray``.

    Raises ``BackendUnavailable`` when the backend is not installed, ``RuntimeError`` from the
    backend when the graph does not compile.
    """
    options = options or CompileOptions()
    threads = int(options.threads or torch.get_num_threads())
    if backend == 'openvino':
        return _ov_runner(_ov_compiled(Path(path), precision, threads, options.blob_dir))
    if backend == 'onnxruntime':
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        # no spin-waiting between runs: on a small machine the spinning threads steal the
        # cores from everything else in the process (torch, the flow, the ROS executor)
        so.add_session_config_entry('session.intra_op.allow_spinning', '0')
        providers = ort_providers(device)
        session = ort.InferenceSession(str(path), so, providers=providers)
        return _ort_runner(session)
    raise ValueError(f'no compiled graphs for backend {backend!r}')


def _ov_compiled(path: Path, precision: str, threads: int, blob_dir: Path | None) -> Any:
    """OpenVINO's compiled model of ``path``: imported from ``blob_dir`` when a blob of this
    graph (its sha256), precision, thread count, OpenVINO version and CPU is there and matches
    the digest recorded beside it; else compiled and exported there (atomically, then its
    digest recorded). A blob that does not match or does not import is reported (WARN naming
    it) and replaced. Raises ``RuntimeError`` from OpenVINO when the graph does not compile."""
    import openvino as ov

    core = ov.Core()
    config = {
        'INFERENCE_PRECISION_HINT': 'bf16' if precision == 'bf16' else 'f32',
        'INFERENCE_NUM_THREADS': threads,
        'PERFORMANCE_HINT': 'LATENCY',
        'NUM_STREAMS': 1,
    }
    if blob_dir is None:
        return core.compile_model(str(path), 'CPU', config)
    blob = _blob_path(core, path, precision, threads, Path(blob_dir))
    why = _blob_problem(blob)
    if why is None:
        try:
            return core.import_model(blob.read_bytes(), 'CPU', config)
        except (RuntimeError, OSError) as e:
            why = f'OpenVINO cannot import it ({str(e).strip().splitlines()[0][:160]})'
    if why != 'absent':
        log.warning('%s: %s; recompiling it from %s', blob, why, path)
    compiled = core.compile_model(str(path), 'CPU', config)
    data = compiled.export_model()  # bytes, or a BytesIO in recent OpenVINO releases
    _save_blob(data.getvalue() if hasattr(data, 'getvalue') else bytes(data), blob)
    return compiled


def _blob_path(core: Any, path: Path, precision: str, threads: int, blob_dir: Path) -> Path:
    """``blob_dir/<graph sha256[:20]>-<precision>-t<threads>-<runtime key>.blob``."""
    import hashlib

    import openvino as ov

    from vsda_ros.fetch import file_sha256

    graph = file_sha256(path)
    if path.suffix == '.xml':  # IR: the weights are in the .bin beside it
        graph = hashlib.sha256((graph + file_sha256(path.with_suffix('.bin'))).encode()).hexdigest()
    runtime = '|'.join(
        [
            ov.get_version(),
            str(core.get_property('CPU', 'FULL_DEVICE_NAME')),
            ','.join(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')),
        ]
    )
    key = hashlib.sha256(runtime.encode()).hexdigest()[:8]
    return blob_dir / f'{graph[:20]}-{precision}-t{threads}-{key}.blob'


def _blob_problem(blob: Path) -> str | None:
    """``None`` when ``blob`` matches the digest in ``<blob>.json``; ``'absent'`` when there
    is no blob; else why it cannot be trusted."""
    import json

    from vsda_ros.fetch import file_sha256

    if not blob.is_file():
        return 'absent'
    record = blob.with_suffix('.json')
    try:
        want = json.loads(record.read_text())
        size, digest = int(want['size']), str(want['sha256'])
    except (OSError, ValueError, KeyError, TypeError):
        return f'no readable digest record ({record.name})'
    if blob.stat().st_size != size:
        return f'size {blob.stat().st_size} bytes, {size} recorded in {record.name} (truncated?)'
    if file_sha256(blob) != digest:
        return f'sha256 differs from the one recorded in {record.name} (damaged)'
    return None


def _save_blob(data: bytes, blob: Path) -> None:
    """Write ``data`` to ``blob`` atomically, then its digest record; a read-only cache only
    costs a recompile next time (logged at INFO)."""
    import hashlib
    import json

    from vsda_ros.paths import make_shared_dir, write_atomic

    record = {'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data)}
    try:
        make_shared_dir(blob.parent)
        write_atomic(blob, data)
        write_atomic(blob.with_suffix('.json'), json.dumps(record).encode())
    except OSError as e:
        log.info('compiled model not cached (%s): the next start compiles again', e)


class CompiledModel:
    """The :class:`~vsda_ros.models.base.SegmentationModel` contract on compiled graphs.

    Inputs and outputs are torch tensors (on ``device``; computed on the backend's device),
    shapes as in the torch model for the one exported input size: ``forward_features``
    1×3×H×W → 1×F×h×w, ``forward_head`` 1×F×h×w → 1×C×h'×w', ``forward`` 1×3×H×W → 1×C×H×W
    (the fused graph: one call). Another input size raises ``ValueError`` (static graphs).
    """

    def __init__(
        self,
        meta: ModelMeta,
        runners: dict[str, Runner],
        input_hw: tuple[int, int],
        backend: str,
        precision: str,
        device: torch.device,
    ) -> None:
        self.meta = meta
        self.runners = runners
        self.input_hw = tuple(input_hw)
        self.backend, self.precision = backend, precision
        self.device = device
        self.training = False

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    def _run(self, part: str, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.runners[part](arr)).to(self.device)

    def _check(self, x: torch.Tensor) -> None:
        if tuple(x.shape[-2:]) != self.input_hw or x.shape[0] != 1:
            raise ValueError(
                f'{self.backend} graphs are exported for 1×3×{self.input_hw[0]}×'
                f'{self.input_hw[1]} input, got {tuple(x.shape)}'
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """1×3×H×W RGB in [0, 1] → 1×F×h×w decoder features."""
        self._check(x)
        return self._run('features', x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """1×F×h×w features → 1×C×h'×w' logits of the kept classes."""
        return self._run('head', features)

    def logits_from_features(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """1×F×h×w → 1×C×H×W at ``size`` = (H, W): the head graph + the torch model's resize."""
        logits = self.forward_head(features)
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=tuple(size), mode='bilinear', align_corners=True)
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """1×3×H×W RGB in [0, 1] → 1×C×H×W logits (the fused graph)."""
        self._check(x)
        return self._run('full', x)

    __call__ = forward

    def to(self, device: torch.device | str) -> CompiledModel:
        """Outputs follow ``device`` (the graphs stay where they were compiled)."""
        self.device = torch.device(device)
        return self

    def eval(self) -> CompiledModel:
        return self
