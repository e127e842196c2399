"""Export a model to ONNX / OpenVINO graphs, quantize it to int8, cache and load exports.

An **export folder** holds, for one model at one input size W×H:

- ``features.onnx``, ``head.onnx``, ``full.onnx``: the model contract as static graphs
  (1×3×H×W → 1×F×h×w; 1×F×h×w → 1×C×h'×w'; 1×3×H×W → 1×C×H×W), exported with
  ``torch.onnx.export(dynamo=True)`` (the legacy exporter fails on ESPNetv2's adaptive pools);
- ``openvino/<part>.xml|.bin``: the same graphs as OpenVINO IR (``--format openvino``);
- ``<part>.int8.onnx``: post-training int8 (QDQ) graphs calibrated on the user's frames;
  run by ONNX Runtime and by OpenVINO (which reads QDQ as int8);
- ``model.pt``: the vsda checkpoint (torch weights + the model's temporal modules), so the
  folder also runs on the torch backend and with every strategy;
- ``vsda_export.json``: the sidecar: the model's meta (classes, palette, normalisation, native
  size), the export size, ``weights_sha256`` (of the source weights file when known) and
  ``state_sha256`` (of the loaded weights: the cache key), the graphs, and the accuracy checks
  made against torch (``validation``).

``model: DIR`` loads such a folder like a zoo name
(:func:`vsda_ros.models.zoo.resolve_model`). Folders made on demand by a compiled backend
live in ``VSDA_CACHE_DIR/compiled/<state sha256[:16]>_<W>x<H>/``;
OpenVINO's compiled blobs in ``VSDA_CACHE_DIR/compiled/openvino/`` (keyed by the graph's
sha256, precision, threads, OpenVINO version and CPU: :mod:`vsda_ros.inference.backends`), so a
node restart does not recompile.

**Integrity.** Every file is written atomically (a temporary name, then a rename) and its
sha256 and size are recorded in the sidecar (``files``); the files a run uses are checked
against that record when used (:meth:`ExportInfo.problem`; hashed once per file version, see
:func:`vsda_ros.fetch.file_sha256`). A damaged cache entry is reported (WARN naming the file)
and rebuilt; a damaged user export folder raises :class:`DamagedExport` naming the file and the
``vsda export`` command that rebuilds it (a user's folder is never rewritten silently).

The sidecar itself (:class:`~vsda_ros.inference.export_info.ExportInfo`) and
:class:`~vsda_ros.inference.export_info.DamagedExport` are :mod:`vsda_ros.inference.export_info`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from vsda_ros.inference.export_info import DamagedExport, ExportInfo, state_sha256
from vsda_ros.models.base import SegmentationModel
from vsda_ros.models.zoo import EXPORT_SIDECAR as SIDECAR
from vsda_ros.models.zoo import is_export_dir
from vsda_ros.paths import make_shared_dir, share

log = logging.getLogger(__name__)


class _Part(nn.Module):
    """One part of the model contract as a module the exporter can trace."""

    def __init__(self, model: SegmentationModel, part: str) -> None:
        super().__init__()
        self.model, self.part = model, part

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.part == 'features':
            return self.model.forward_features(x)
        if self.part == 'head':
            return self.model.forward_head(x)
        return self.model(x)


def _onnx_export(module: nn.Module, x: torch.Tensor, path: Path) -> None:
    """``torch.onnx.export(dynamo=True)`` quietly (it prints progress on stdout); then
    ``onnx.checker``. Raises ``BackendUnavailable`` without onnx/onnxscript."""
    try:
        import onnx
        import onnxscript  # noqa: F401 - the dynamo exporter's graph builder
    except ImportError as e:
        from vsda_ros.inference.backends import BackendUnavailable

        raise BackendUnavailable(
            f'exporting needs onnx and onnxscript ({e}); see requirements.lock'
        ) from None
    with _temporary(path) as tmp:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter('ignore')
            torch.onnx.export(
                module.eval(),
                (x,),
                str(tmp),
                dynamo=True,
                external_data=False,
                input_names=['x'],
                output_names=['y'],
            )
        onnx.checker.check_model(str(tmp))


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """A temporary name next to ``path`` to write to; renamed to ``path`` (mode as the umask
    gives) when the block succeeds, removed when it fails."""
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp{path.suffix}')
    try:
        yield tmp
        share(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(
    model: SegmentationModel,
    size: tuple[int, int],
    out: Path,
    weights_sha256: str | None = None,
    temporal_extra: dict | None = None,
) -> ExportInfo:
    """Write the fp32 ONNX graphs, ``model.pt`` and the sidecar of ``model`` at ``size``.

    ``out`` is created; its previous graphs are replaced. Raises ``RuntimeError`` from the
    exporter when the model does not export.
    """
    from vsda_ros.models.checkpoint import save_checkpoint

    model = model.cpu().eval()
    out = make_shared_dir(out)
    w, h = size
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feat = model.forward_features(x)
    files = {}
    for part, inp in (('features', x), ('head', feat), ('full', x)):
        _onnx_export(_Part(model, part), inp, out / f'{part}.onnx')
        files[part] = f'{part}.onnx'
    with _temporary(out / 'model.pt') as tmp:
        save_checkpoint(model, tmp, extra=temporal_extra)
    info = ExportInfo(
        path=out,
        meta=model.meta,
        size=(w, h),
        state_sha256=state_sha256(model),
        weights_sha256=weights_sha256 or model.meta.provenance.get('weights_sha256'),
        feature_shape=list(feat.shape),
        graphs={'onnx': {'fp32': files}},
    )
    for name in (*files.values(), 'model.pt'):
        info.record(name)
    info.save()
    return info


def export_openvino(info: ExportInfo, precision: str = 'fp32') -> ExportInfo:
    """Convert the ONNX graphs at ``precision`` (fp32 or int8) to OpenVINO IR in
    ``openvino/`` (weights kept fp32: no fp16 compression). Raises ``FileNotFoundError`` when
    there is no ONNX graph at that precision."""
    import openvino as ov

    files = {}
    make_shared_dir(info.path / 'openvino')
    for part in ('features', 'head', 'full'):
        src = info.graph('onnx', precision, part)
        if src is None:
            raise FileNotFoundError(f'{info.path}: no {precision} ONNX graph for {part}')
        name = f'openvino/{part}' + ('' if precision == 'fp32' else f'.{precision}') + '.xml'
        with _temporary(info.path / name) as tmp:  # the .bin first: the .xml names the pair
            ov.save_model(ov.convert_model(str(src)), str(tmp), compress_to_fp16=False)
            share(tmp.with_suffix('.bin'))
            os.replace(tmp.with_suffix('.bin'), (info.path / name).with_suffix('.bin'))
        files[part] = name
        info.record(name)
        info.record(name[:-4] + '.bin')
    info.graphs.setdefault('openvino', {})[precision] = files
    info.save()
    return info


def cache_root() -> Path:
    """``VSDA_CACHE_DIR/compiled`` (see :func:`vsda_ros.paths.cache_dir`)."""
    from vsda_ros.paths import cache_dir

    return cache_dir() / 'compiled'


def cache_entry(model: SegmentationModel, size: tuple[int, int]) -> Path:
    """The cache folder of ``model`` at ``size``: ``compiled/<state sha256[:16]>_<W>x<H>``."""
    return cache_root() / f'{state_sha256(model)[:16]}_{size[0]}x{size[1]}'


def cached_export(model: SegmentationModel, size: tuple[int, int]) -> ExportInfo:
    """The export of ``model`` at ``size`` in the cache, made now (fp32 ONNX) if missing.

    Keyed by the weights' sha256 and the size; written to a temporary folder and renamed, so
    a crash never leaves a half export behind. An entry whose sidecar cannot be read, was
    made by an older format (no digests), or whose graphs do not match their recorded digests
    is reported (one WARN naming the file and why) and rebuilt. Raises ``OSError`` when the
    cache is not writable, ``RuntimeError`` from the exporter.
    """
    sha = state_sha256(model)
    path = cache_root() / f'{sha[:16]}_{size[0]}x{size[1]}'
    if is_export_dir(path):
        info, why = _usable(path, sha, size)
        if info is not None:  # (the entry, None) or (None, why)
            return info
        log.warning('%s; rebuilding the compiled-model cache entry %s', why, path)
    else:
        log.warning(
            'exporting %s at %dx%d to %s (once, 30 s to 5 min on 2 cores; later runs load '
            'it; `vsda prepare` does it ahead of a start)',
            model.meta.name,
            size[0],
            size[1],
            path,
        )
    make_shared_dir(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', dir=path.parent))
    try:
        export_onnx(model, size, tmp)
        share(tmp)  # mkdtemp made it 0700: a cache shared by users
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportInfo.load(path)


def _usable(path: Path, sha: str, size: tuple[int, int]) -> tuple[ExportInfo | None, str | None]:
    """(the entry, ``None``) when ``path`` holds intact graphs of these weights at ``size``;
    else (``None``, why not: naming the file)."""
    try:
        info = ExportInfo.load(path)
    except ValueError as e:
        return None, str(e)
    if info.state_sha256 != sha or tuple(info.size) != tuple(size):
        return None, f'{path / SIDECAR} is for other weights or another size'
    if info.format_version < 2:
        return None, f'{path / SIDECAR} has no file digests (made by an older vsda_ros)'
    bad = info.problem(list(info.graphs.get('onnx', {}).get('fp32', {}).values()))
    if bad is not None:
        return None, f'{bad[0]}: {bad[1]}'
    return info, None


def check_user_export(info: ExportInfo, names: list[str]) -> None:
    """Check the files ``names`` of a user's export folder against its sidecar.

    Raises :class:`DamagedExport` (one line: the file, why, and the ``vsda export`` command
    that rebuilds the folder). A folder written before digests were recorded is used with a
    WARN (nothing to check against); it is never rewritten here.
    """
    if info.format_version < 2 and not info.files:
        log.warning(
            '%s has no file digests (made by an older vsda export): its graphs are '
            'not verified; export it again to verify them',
            info.path / SIDECAR,
        )
        return
    bad = info.problem(names)
    if bad is not None:
        raise DamagedExport(f'{bad[0]}: {bad[1]}; rebuild the folder: ' + rebuild_command(info))


def rebuild_command(info: ExportInfo) -> str:
    """The ``vsda export`` command line that makes ``info``'s folder again."""
    from vsda_ros.models.zoo import model_names
    from vsda_ros.paths import vsda_command

    model = info.meta.name if info.meta.name in model_names() else 'MODEL'
    fmt = ' --format onnx' if 'openvino' not in info.graphs else ''
    return vsda_command(
        f'export --model {model} --size {info.size[0]}x{info.size[1]}{fmt} --out {info.path}'
    )


def graph_for(info: ExportInfo, backend: str, precision: str, part: str) -> Path:
    """The graph file ``backend`` compiles for ``part`` at ``precision``.

    OpenVINO uses IR when the folder has it (bf16 = the fp32 graph with the bf16 hint), else
    the ONNX graph (it reads ONNX directly); ONNX Runtime the ONNX graph. Raises
    ``FileNotFoundError`` naming the command that makes a missing int8 graph.
    """
    stored = 'fp32' if precision == 'bf16' else precision
    if backend == 'openvino':
        p = info.graph('openvino', stored, part) or info.graph('onnx', stored, part)
    else:
        p = info.graph('onnx', stored, part)
    if p is None:
        hint = (
            ' (make one: vsda export --model ... --precision int8 --calibrate FRAMES)'
            if stored == 'int8'
            else ''
        )
        raise FileNotFoundError(f'{info.path}: no {stored} graph for {part}{hint}')
    return p


# --------------------------------------------------------------------------------------- int8
#: Ops quantized to int8 (weights per channel, activations uint8 asymmetric); BatchNorm after
#: concatenations, PReLU, Add, Resize stay float — quantizing them cost ~5 mIoU on ESPNet —
#: and so do grouped convs and the classifier (:func:`_float_convs`).
QUANTIZED_OPS = ('Conv',)


def quantize_int8(
    info: ExportInfo,
    frames: list[np.ndarray],
    preprocess: Callable[[np.ndarray], torch.Tensor],
) -> ExportInfo:
    """Post-training static int8 quantization (ONNX Runtime tooling, QDQ, per-channel weights,
    symmetric activations) of the three graphs, calibrated on ``frames`` (H×W×3 uint8 RGB,
    unlabelled, the user's own data; 16–64 frames are plenty).

    ``preprocess`` is :meth:`Segmenter.preprocess` (frame → 1×3×H×W float tensor at the
    export size). Head calibration inputs are the torch model's features of the same frames.
    Writes ``<part>.int8.onnx``. Raises ``ValueError`` for no frames.
    """
    from onnxruntime.quantization import CalibrationDataReader

    from vsda_ros.models.checkpoint import load_checkpoint

    if not frames:
        raise ValueError('int8 calibration needs at least one frame')
    model = load_checkpoint(info.path / 'model.pt').eval()
    xs = [preprocess(f).cpu() for f in frames]
    with torch.no_grad():
        fs = [model.forward_features(x) for x in xs]

    class Reader(CalibrationDataReader):
        def __init__(self, tensors: list[torch.Tensor]) -> None:
            self.it = iter([{'x': t.numpy()} for t in tensors])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    files = {}
    quiet = logging.getLogger()  # the quantizer warns per tensor on the root logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for part, data in (('features', xs), ('head', fs), ('full', xs)):
            _quantize_part(info, part, data, Reader)
            files[part] = f'{part}.int8.onnx'
    finally:
        quiet.setLevel(level)
    info.graphs['onnx']['int8'] = files
    info.save()
    return info


def _float_convs(path: Path) -> list[str]:
    """Conv nodes kept in float: depthwise/grouped convs (group > 1; few FLOPs, and their
    per-channel ranges quantize badly: ESPNetv2 lost 6.5 mIoU with them in int8) and the
    last conv (the classifier)."""
    import onnx

    convs = [
        n for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == 'Conv'
    ]
    keep = [n.name for n in convs if any(a.name == 'group' and a.i > 1 for a in n.attribute)]
    if convs:
        keep.append(convs[-1].name)
    return keep


def _quantize_part(
    info: ExportInfo,
    part: str,
    data: list[torch.Tensor],
    reader_cls: Callable[[list[torch.Tensor]], Any],
) -> None:
    """Quantize the fp32 ONNX graph of ``part`` into ``<part>.int8.onnx`` (QDQ)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = info.path / info.graphs['onnx']['fp32'][part]
    pre = info.path / f'{part}.pre.onnx'
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        _temporary(info.path / f'{part}.int8.onnx') as tmp,
    ):
        warnings.simplefilter('ignore')
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(tmp),
            reader_cls(data),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=_float_convs(pre),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    pre.unlink(missing_ok=True)
    info.record(f'{part}.int8.onnx')
