"""vsda checkpoints: weights plus everything needed to use them.

A checkpoint is a ``torch.save`` dict with ``format`` (``vsda_ros/1``), ``meta``
(:meth:`ModelMeta.to_dict`: architecture and its arguments, classes, palette, normalisation,
native size, provenance), ``state_dict`` (the raw network's) and ``extra`` (temporal modules'
weights/config, recipe; free-form). It loads with ``weights_only=True``: no pickled code.
"""
from __future__ import annotations

from pathlib import Path

import torch

from vsda_ros.models.base import ModelMeta, SegmentationModel

FORMAT = 'vsda_ros/1'


def save_checkpoint(model: SegmentationModel, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``model`` (and ``extra``) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'format': FORMAT, 'meta': model.meta.to_dict(),
                'state_dict': model.net.state_dict(), 'extra': extra or {}}, str(path))
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict; ``ValueError`` if the file is not a vsda checkpoint."""
    try:
        ckpt = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for non-checkpoints
        raise ValueError(f'{path} is not a readable checkpoint: {e}') from e
    if not isinstance(ckpt, dict) or ckpt.get('format') != FORMAT:
        raise ValueError(f'{path} is not a vsda_ros checkpoint (no format {FORMAT!r}); for '
                         'published weights use the zoo name instead')
    return ckpt


def load_checkpoint(path: str | Path) -> SegmentationModel:
    """Build the model a checkpoint describes and load its weights strictly."""
    from vsda_ros.models.zoo import build

    ckpt = read_checkpoint(path)
    model = build(ModelMeta.from_dict(ckpt['meta']))
    model.net.load_state_dict(ckpt['state_dict'], strict=True)
    return model
