"""The network architectures by name, and building an untrained model from its metadata."""

from __future__ import annotations

import copy

from torch import nn

from vsda_ros.models.base import ModelMeta, SegmentationModel
from vsda_ros.models.espnet import ESPNet
from vsda_ros.models.espnetv2 import ESPNetv2
from vsda_ros.models.safe_load import ModelLoadError

#: architecture key → constructor (keyword arguments come from ``ModelMeta.arch_args``).
ARCHITECTURES: dict[str, type[nn.Module]] = {'espnetv2': ESPNetv2, 'espnet': ESPNet}


class ModelNotFoundError(ValueError):
    """A model name that is neither in the zoo nor an existing checkpoint file."""


def build(meta: ModelMeta) -> SegmentationModel:
    """An untrained :class:`SegmentationModel` for ``meta`` (raises ``ModelNotFoundError``)."""
    try:
        arch = ARCHITECTURES[meta.arch]
    except KeyError:
        raise ModelNotFoundError(
            f'unknown architecture {meta.arch!r}; known: {sorted(ARCHITECTURES)}'
        ) from None
    meta = copy.deepcopy(meta)  # zoo entries are shared; each model owns its metadata
    return SegmentationModel(arch(**meta.arch_args), meta)


def build_for(meta: ModelMeta, where: str) -> SegmentationModel:
    """:func:`build` for a model described by a file: errors name the file.

    Raises:
        ModelLoadError: unknown architecture, or ``arch_args`` its constructor does not take.
    """
    if meta.arch not in ARCHITECTURES:
        raise ModelLoadError(
            f'{where}: unknown architecture {meta.arch!r}; known: '
            f'{", ".join(sorted(ARCHITECTURES))}'
        )
    try:
        return build(meta)
    except (TypeError, ValueError) as e:
        raise ModelLoadError(
            f'{where}: meta arch_args {meta.arch_args} do not fit '
            f'architecture {meta.arch!r}: {str(e).splitlines()[0][:120]}'
        ) from None
