"""Trained temporal modules (fusion block, DMNet, CFNet) and how they travel in checkpoints.

``vsda adapt --recipe davss`` / ``--recipe fusion`` write a vsda checkpoint whose ``extra``
holds ``temporal``: ``{kind: {'args': constructor kwargs, 'state_dict': weights}}`` for
``kind`` in ``fusion``, ``dmnet``, ``cfnet``. The node and ``vsda eval`` read them from the
``model`` checkpoint itself or from a separate ``temporal_weights`` checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from vsda_ros.temporal.correction import CFNet, DMNet
from vsda_ros.temporal.fusion_block import FusionBlock

KINDS = {'fusion': FusionBlock, 'dmnet': DMNet, 'cfnet': CFNet}


def make_module(kind: str, **args) -> nn.Module:
    """Build a temporal module and remember its constructor arguments (for checkpoints)."""
    if kind not in KINDS:
        raise ValueError(f'unknown temporal module {kind!r}; known: {", ".join(KINDS)}')
    module = KINDS[kind](**args)
    module.vsda_args = dict(args)
    return module


@dataclass
class TemporalModules:
    """The temporal modules available to the strategies; ``None`` = not trained/loaded."""

    fusion: nn.Module | None = None
    dmnet: nn.Module | None = None
    cfnet: nn.Module | None = None

    def fusion_for(self, segmenter) -> nn.Module:
        """The trained fusion block, or an untrained one (which equals per-frame exactly).

        Raises ``ValueError`` if the trained block was made for another number of classes.
        """
        c = segmenter.meta.num_classes
        block = self.fusion if self.fusion is not None else make_module('fusion', num_classes=c)
        if block.vsda_args.get('num_classes') != c:
            raise ValueError(f'the fusion block is for {block.vsda_args.get("num_classes")} '
                             f'classes but model {segmenter.meta.name} has {c}')
        return block

    def loaded(self) -> list[str]:
        """Names of the modules that are present."""
        return [k for k in KINDS if getattr(self, k) is not None]

    def to_extra(self) -> dict:
        """``{'temporal': {...}}`` for :func:`vsda_ros.models.checkpoint.save_checkpoint`."""
        return {'temporal': {k: {'args': getattr(self, k).vsda_args,
                                 'state_dict': getattr(self, k).state_dict()}
                             for k in self.loaded()}}

    @classmethod
    def from_extra(cls, extra: dict) -> 'TemporalModules':
        """Inverse of :meth:`to_extra`; modules come back in eval mode on the CPU."""
        found = {}
        for kind, entry in (extra or {}).get('temporal', {}).items():
            module = make_module(kind, **entry['args'])
            module.load_state_dict(entry['state_dict'], strict=True)
            found[kind] = module.eval()
        return cls(**found)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> 'TemporalModules':
        """The temporal modules of a vsda checkpoint (none for a zoo name or plain model).

        Raises ``ValueError`` if ``path`` is not a vsda checkpoint.
        """
        from vsda_ros.models.checkpoint import read_checkpoint
        return cls.from_extra(read_checkpoint(path).get('extra', {}))

    def merged(self, other: 'TemporalModules') -> 'TemporalModules':
        """These modules, with gaps filled from ``other``."""
        return TemporalModules(**{k: getattr(self, k) if getattr(self, k) is not None
                                  else getattr(other, k) for k in KINDS})


def load_temporal_modules(model: str, temporal_weights: str = '') -> TemporalModules:
    """Modules from ``temporal_weights`` (one path, or several separated by commas: the first
    that has a module wins), gaps filled from the ``model`` checkpoint file.

    A zoo model name with no ``temporal_weights`` gives no modules. Raises
    ``FileNotFoundError`` for a missing ``temporal_weights`` file.
    """
    found = TemporalModules()
    for path in filter(None, (p.strip() for p in temporal_weights.split(','))):
        if not Path(path).is_file():
            raise FileNotFoundError(f'temporal_weights file {path} does not exist')
        found = found.merged(TemporalModules.from_checkpoint(path))
    if Path(model).is_file():
        found = found.merged(TemporalModules.from_checkpoint(model))
    return found
