"""Checkpoints trained by this project and shipped inside the package (``vsda_ros/zoo/``).

Two kinds:

- ``model``: a whole adapted network (a vsda checkpoint), loaded by its zoo name like a
  published model (``model: espnetv2-camvid-tsl``), with the temporal modules trained for it;
- ``temporal``: trained temporal modules (fusion block, DMNet, CFNet) for a *published* model,
  used by default whenever that model runs ``strategy: fusion`` or ``keyframe``
  (``temporal_weights: none`` turns them off).

Files are stored compactly: floating-point weights as float16, BatchNorm statistics as float32
(:func:`compact_state`); they load as float32. Every file is checked against its sha256 here
before it is read (once per file version, see :func:`vsda_ros.fetch.file_sha256`). ``make
models`` (``tools/zoo_build.py``) retrains them all; model cards are in ``docs/design/models.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vsda_ros.models.safe_load import ModelLoadError
from vsda_ros.zoo import ZOO_DIR


@dataclass(frozen=True)
class ShippedFile:
    """One file in ``vsda_ros/zoo/``.

    Attributes:
        name: the zoo name it serves: the model's own name (``kind='model'``) or the published
            model whose temporal modules it holds (``kind='temporal'``).
        kind: ``'model'`` or ``'temporal'``.
        filename: file name inside :data:`vsda_ros.zoo.ZOO_DIR`.
        sha256: hex digest of the file.
        base: the published zoo model it was trained from.
        summary: one line for ``vsda models``.
    """

    name: str
    kind: str
    filename: str
    sha256: str
    base: str
    summary: str

    @property
    def path(self) -> Path:
        return ZOO_DIR / self.filename


#: every shipped file; ``make models`` (``tools/zoo_build.py --install``) rewrites the sha256.
SHIPPED_FILES: tuple[ShippedFile, ...] = (
    ShippedFile(
        name='espnetv2-camvid-tsl',
        kind='model',
        filename='espnetv2-camvid-tsl.pt',
        sha256='7edb64c593058f162ccd1bd8e7191d33cc39808117ebf5708368cff2a088b66e',
        base='espnetv2-cityscapes',
        summary='ESPNetv2 Cityscapes weights adapted to CamVid video with tsl (unlabelled '
        'CamVid train + dashcam), with the image-guided fusion block (frame cues; '
        "espnet-camvid's, fine-tuned on its scores) and DMNet/CFNet",
    ),
    ShippedFile(
        name='espnet-camvid',
        kind='temporal',
        filename='espnet-camvid.temporal.pt',
        sha256='d4b7182dcbb9d6cfbd16446a138f73f5c3b2369da361e8776cad0e1c7ecc049d',
        base='espnet-camvid',
        summary='image-guided fusion block with frame cues (17 Hz Cityscapes sequences + '
        'dashcam) + DMNet/CFNet (CamVid train + dashcam) for espnet-camvid',
    ),
    ShippedFile(
        name='espnetv2-cityscapes',
        kind='temporal',
        filename='espnetv2-cityscapes.temporal.pt',
        sha256='59659d7e26cecf69ad8e248171d1d7e85c0843e21f7c7394040b3f51a0f39a50',
        base='espnetv2-cityscapes',
        summary="image-guided fusion block with frame cues (espnet-camvid's, fine-tuned on "
        'its scores) + DMNet/CFNet (dashcam) for espnetv2-cityscapes',
    ),
)

#: adapted whole models, by zoo name.
SHIPPED_MODELS: dict[str, ShippedFile] = {f.name: f for f in SHIPPED_FILES if f.kind == 'model'}
#: temporal modules for published models, by the published model's zoo name.
SHIPPED_TEMPORAL: dict[str, ShippedFile] = {
    f.name: f for f in SHIPPED_FILES if f.kind == 'temporal'
}


def verified_path(entry: ShippedFile) -> Path:
    """The shipped file's path after checking its sha256 (hashed once per file version).

    Raises:
        FileNotFoundError: the file is not installed (rebuild it with ``make models``).
        ModelLoadError: its digest differs from the one in :data:`SHIPPED_FILES`.
    """
    from vsda_ros.fetch import file_sha256

    path = entry.path
    if not path.is_file():
        raise FileNotFoundError(
            f'shipped {entry.kind} file {path} for {entry.name!r} is '
            'missing; reinstall vsda_ros or rebuild it with `make models`'
        )
    actual = file_sha256(path)
    if actual != entry.sha256:
        raise ModelLoadError(
            f'shipped {entry.kind} file {path} for {entry.name!r} is corrupt '
            f'or was replaced: sha256 {actual}, expected {entry.sha256}; '
            'reinstall vsda_ros, or after `make models` update '
            'vsda_ros/models/shipped.py with the new digests'
        )
    return path


def file_status(entry: ShippedFile) -> str:
    """``'ok'``, ``'missing'`` or ``'BAD sha256'`` (for ``vsda models``)."""
    try:
        verified_path(entry)
    except FileNotFoundError:
        return 'missing'
    except ModelLoadError:
        return 'BAD sha256'
    return 'ok'


def compact_state(state: dict) -> dict:
    """A state_dict for shipping: float32 tensors → float16, except BatchNorm statistics
    (``running_mean``/``running_var`` keep float32: variances can be below float16's normal
    range). Other dtypes are kept. Loading casts back (``load_state_dict`` copies into the
    module's float32 tensors)."""
    out = {}
    for key, value in state.items():
        if (
            isinstance(value, torch.Tensor)
            and value.dtype == torch.float32
            and 'running_' not in key
        ):
            value = value.to(torch.float16)
        out[key] = value.detach().clone() if isinstance(value, torch.Tensor) else value
    return out


def compact_temporal(extra_temporal: dict) -> dict:
    """:func:`compact_state` applied to every module of an ``extra['temporal']`` dict."""
    return {
        kind: {'args': dict(entry['args']), 'state_dict': compact_state(entry['state_dict'])}
        for kind, entry in extra_temporal.items()
    }
