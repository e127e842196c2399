"""The sidecar of an export folder (``vsda_export.json``, :class:`ExportInfo`): the model's
meta, the export size, the weights' digests, the graphs per format and precision, the accuracy
checks made against torch, and the sha256 and size of every file, checked when a file is used
(:meth:`ExportInfo.problem`). A user's folder that fails the check raises
:class:`DamagedExport`. Writing, caching and quantizing exports: :mod:`vsda_ros.inference.export`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch
from torch import nn

from vsda_ros.models.base import ModelMeta
from vsda_ros.models.zoo import EXPORT_SIDECAR as SIDECAR
from vsda_ros.paths import write_atomic

#: 2: ``files`` (sha256 and size of every file) added; a cache entry without it is rebuilt.
FORMAT_VERSION = 2


class DamagedExport(RuntimeError):
    """A file of a user's export folder does not match the digest its sidecar recorded (or
    cannot be parsed); the one-line message names the file and the command that rebuilds it."""


def state_sha256(model: nn.Module) -> str:
    """sha256 over the model's state dict (sorted names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f'{name}:{t.dtype}:{tuple(t.shape)}'.encode())
        h.update(
            t.numpy().tobytes()
            if t.dtype != torch.bfloat16
            else t.view(torch.int16).numpy().tobytes()
        )
    return h.hexdigest()


@dataclass
class ExportInfo:
    """The sidecar of an export folder (``vsda_export.json``)."""

    path: Path
    meta: ModelMeta
    size: tuple[int, int]  # (width, height) of the exported input
    state_sha256: str
    weights_sha256: str | None = None
    feature_shape: list[int] = field(default_factory=list)
    graphs: dict = field(default_factory=dict)  # {'onnx': {'fp32': {part: file}}, ...}
    validation: dict = field(default_factory=dict)  # {'openvino/bf16': {...}, ...}
    files: dict = field(default_factory=dict)  # {relative path: {sha256, size}}
    evidence: dict = field(default_factory=dict)  # backend choice evidence (auto)
    format_version: int = FORMAT_VERSION

    def save(self) -> None:
        """Write the sidecar atomically. Raises ``OSError`` when the folder is read-only."""
        d = {
            'format_version': FORMAT_VERSION,
            'meta': self.meta.to_dict(),
            'size': list(self.size),
            'state_sha256': self.state_sha256,
            'weights_sha256': self.weights_sha256,
            'feature_shape': self.feature_shape,
            'graphs': self.graphs,
            'validation': self.validation,
            'files': self.files,
            'evidence': self.evidence,
        }
        write_atomic(self.path / SIDECAR, json.dumps(d, indent=1).encode())

    def record(self, name: str) -> None:
        """Record the sha256 and size of ``path/name`` (just written) in ``files``."""
        from vsda_ros.fetch import file_sha256

        p = self.path / name
        self.files[name] = {'sha256': file_sha256(p), 'size': p.stat().st_size}

    def problem(self, names: list[str]) -> tuple[Path, str] | None:
        """The first of ``names`` (paths relative to the folder) that does not match its
        recorded digest, and why (missing, truncated, sha256 mismatch, no digest recorded);
        ``None`` when all match. Each file is hashed once per version (size, mtime)."""
        from vsda_ros.fetch import file_sha256

        for name in names:
            p, want = self.path / name, self.files.get(name)
            if not p.is_file():
                return p, 'missing'
            if not isinstance(want, dict):
                return p, 'no sha256 recorded for it in ' + SIDECAR
            size = p.stat().st_size
            if size != want.get('size'):
                return p, f'size {size} bytes, {want.get("size")} recorded (truncated?)'
            if file_sha256(p) != want.get('sha256'):
                return p, f'sha256 differs from the one recorded in {SIDECAR} (damaged)'
        return None

    @classmethod
    def load(cls, path: str | Path) -> 'ExportInfo':
        """Read ``path/vsda_export.json``; ``ValueError`` (one line) if absent or malformed."""
        path = Path(path)
        try:
            d = json.loads((path / SIDECAR).read_text())
            return cls(
                path=path,
                meta=ModelMeta.from_dict(d['meta']),
                size=cast('tuple[int, int]', tuple(int(v) for v in d['size'])),
                state_sha256=d['state_sha256'],
                weights_sha256=d.get('weights_sha256'),
                feature_shape=list(d.get('feature_shape', [])),
                graphs=d.get('graphs', {}),
                validation=d.get('validation', {}),
                files=d.get('files', {}),
                evidence=d.get('evidence', {}),
                format_version=int(d.get('format_version', 1)),
            )
        except (OSError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f'{path} is not a vsda export folder ({SIDECAR}: {e})') from None

    def graph(self, fmt: str, precision: str, part: str) -> Path | None:
        """The file of ``part`` in ``fmt`` (onnx, openvino) at ``precision``, or ``None``."""
        name = self.graphs.get(fmt, {}).get(precision, {}).get(part)
        return self.path / name if name and (self.path / name).is_file() else None
