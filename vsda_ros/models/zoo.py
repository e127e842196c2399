"""The one place that knows every model name: the registry behind ``model:`` / ``--model``.

A model is named by one of:

- a **published** network (:data:`ZOO`, :mod:`vsda_ros.models.published`): weights from
  ``VSDA_DATA_DIR/weights``, the cache or a download, checked against their sha256;
- a **shipped** adapted network (:data:`~vsda_ros.models.shipped.SHIPPED_MODELS`, in
  ``vsda_ros/zoo/``);
- a vsda **checkpoint** file (:mod:`vsda_ros.models.checkpoint`);
- an **export folder** (``vsda export``: a ``vsda_export.json`` sidecar and its ``model.pt``),
  which loads like its checkpoint and brings its compiled graphs (:func:`resolve_model`).

Every failure to load a model raises :class:`~vsda_ros.models.safe_load.ModelLoadError` with a
one-line message naming the file. The names re-exported here (``ZOO``, ``build``, label maps)
keep one import path for callers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vsda_ros.models.architectures import ARCHITECTURES, ModelNotFoundError, build, build_for
from vsda_ros.models.base import SegmentationModel
from vsda_ros.models.checkpoint import check_state_dict, load_checkpoint
from vsda_ros.models.labels import (
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    CAMVID_VOID,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    CITYSCAPES_TO_CAMVID,
    LABEL_MAPS,
    label_mapping,
    label_palette,
)
from vsda_ros.models.published import ZOO, ZooEntry, find_weights, load_state_dict, verify_weights
from vsda_ros.models.shipped import SHIPPED_MODELS, verified_path

__all__ = [
    'ARCHITECTURES',
    'CAMVID_CLASSES',
    'CAMVID_PALETTE',
    'CAMVID_VOID',
    'CITYSCAPES_CLASSES',
    'CITYSCAPES_PALETTE',
    'CITYSCAPES_TO_CAMVID',
    'EXPORT_SIDECAR',
    'LABEL_MAPS',
    'ModelNotFoundError',
    'ZOO',
    'ZooEntry',
    'build',
    'build_for',
    'find_weights',
    'is_export_dir',
    'label_mapping',
    'label_palette',
    'load_model',
    'load_state_dict',
    'model_names',
    'resolve_model',
    'verify_weights',
]

#: The file that marks an export folder (written by ``vsda export``).
EXPORT_SIDECAR = 'vsda_export.json'


def is_export_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding ``vsda_export.json``."""
    return (Path(path) / EXPORT_SIDECAR).is_file()


def resolve_model(name_or_path: str) -> tuple[str, Path | None]:
    """``model`` as the loaders take it: an export folder → (its ``model.pt``, the folder);
    anything else → (unchanged, ``None``). :func:`load_model` and ``load_temporal_modules``
    then load the folder's checkpoint like any other.

    Raises ``FileNotFoundError`` for an export folder without ``model.pt``.
    """
    if is_export_dir(name_or_path):
        ckpt = Path(name_or_path) / 'model.pt'
        if not ckpt.is_file():
            raise FileNotFoundError(f'export folder {name_or_path} has no model.pt')
        return str(ckpt), Path(name_or_path)
    return name_or_path, None


def load_model(
    name_or_path: str,
    weights: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
) -> SegmentationModel:
    """A ready model (eval mode, CPU) from a zoo name or a vsda checkpoint file.

    Args:
        name_or_path: ``espnetv2-cityscapes`` etc., a shipped adapted model
            (``espnetv2-camvid-tsl``, see :mod:`vsda_ros.models.shipped`), or a path to a
            checkpoint written by :func:`vsda_ros.models.checkpoint.save_checkpoint`.
        weights: explicit weights file for a zoo model (skips the search).
        download: allow downloading missing zoo weights.

    Raises:
        ModelNotFoundError: unknown name and no such file.
        FileNotFoundError: weights missing and download disabled; a shipped file missing.
        vsda_ros.fetch.FetchError: a download failed.
        ModelLoadError: any file that cannot be used — found zoo weights whose sha256 differs
            from the published one; an unreadable, corrupt, truncated or unsafe (pickled
            objects) file; a checkpoint with missing/unknown/mistyped meta fields; weights that
            do not fit the architecture (missing/unexpected keys, shapes). One-line message
            naming the file.
    """
    if name_or_path in ZOO:
        entry = ZOO[name_or_path]
        path = Path(weights) if weights else find_weights(entry, download, progress)
        if not path.is_file():
            raise FileNotFoundError(f'weights file {path} does not exist')
        if not weights:  # found in VSDA_DATA_DIR / the cache: must be the published file
            verify_weights(entry, path)
        model = build(entry.meta)
        state = load_state_dict(path)
        _add_missing_bn_counters(model.net, state)
        check_state_dict(model.net, state, f'weights file {path}')
        model.net.load_state_dict(state, strict=True)
        model.meta.provenance.setdefault('weights_sha256', entry.sha256)
        return model.eval()
    if name_or_path in SHIPPED_MODELS:  # an adapted model shipped in vsda_ros/zoo/
        return load_checkpoint(verified_path(SHIPPED_MODELS[name_or_path])).eval()
    if Path(name_or_path).is_file():
        return load_checkpoint(name_or_path).eval()
    if Path(name_or_path).is_dir():
        raise ModelNotFoundError(
            f'model {name_or_path!r} is a folder: not a checkpoint file, and not an export '
            f'folder (no {EXPORT_SIDECAR}; `vsda export` writes one)'
        )
    raise ModelNotFoundError(
        f'unknown model {name_or_path!r}: not a zoo name ({", ".join(model_names())}) and no '
        'such file'
    )


def model_names() -> list[str]:
    """Every name :func:`load_model` knows: published models, then shipped adapted ones."""
    return [*ZOO, *SHIPPED_MODELS]


def _add_missing_bn_counters(net: nn.Module, state: dict) -> None:
    """Older files (ESPNet v1) lack ``num_batches_tracked``; add zeros so strict loading works."""
    for key, buf in net.state_dict().items():
        if key.endswith('num_batches_tracked') and key not in state:
            state[key] = torch.zeros_like(buf)
