"""Trained temporal modules (fusion block, DMNet, CFNet) and how they travel in checkpoints.

``vsda adapt --recipe davss`` / ``--recipe fusion`` write a vsda checkpoint whose ``extra``
holds ``temporal``: ``{kind: {'args': constructor kwargs, 'state_dict': weights}}`` for
``kind`` in ``fusion``, ``dmnet``, ``cfnet``. The node and ``vsda eval`` read them from the
``model`` checkpoint itself or from a separate ``temporal_weights`` checkpoint.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from torch import nn

from vsda_ros.temporal.correction import CFNet, DMNet
from vsda_ros.temporal.fusion_block import FusionBlock
from vsda_ros.temporal.guided_fusion import GuidedFusionBlock

if TYPE_CHECKING:
    from vsda_ros.inference import Segmenter


def fusion_block(variant: str = 'scores', **args: Any) -> nn.Module:
    """The fusion block of a variant: ``'scores'`` (:class:`FusionBlock`, offsets from class
    scores; checkpoints without a variant are this one) or ``'guided'``
    (:class:`GuidedFusionBlock`, offsets from image features of both frames).

    Raises ``ValueError`` for another variant.
    """
    if variant == 'scores':
        return FusionBlock(**args)
    if variant == 'guided':
        return GuidedFusionBlock(**args)
    raise ValueError(f"unknown fusion variant {variant!r}; known: 'scores', 'guided'")


KINDS: dict[str, Callable[..., nn.Module]] = {
    'fusion': fusion_block,
    'dmnet': DMNet,
    'cfnet': CFNet,
}


def make_module(kind: str, **args: Any) -> nn.Module:
    """Build a temporal module and remember its constructor arguments (for checkpoints)."""
    if kind not in KINDS:
        raise ValueError(f'unknown temporal module {kind!r}; known: {", ".join(KINDS)}')
    module = KINDS[kind](**args)
    # torch types Module attributes as tensors or modules; this one is a plain dict
    module.vsda_args = dict(args)  # type: ignore[assignment]
    return module


def module_args(module: nn.Module) -> dict[str, Any]:
    """The constructor arguments :func:`make_module` recorded on ``module`` (``vsda_args``)."""
    return cast('dict[str, Any]', module.vsda_args)


@dataclass
class TemporalModules:
    """The temporal modules available to the strategies; ``None`` = not trained/loaded."""

    fusion: nn.Module | None = None
    dmnet: nn.Module | None = None
    cfnet: nn.Module | None = None

    def fusion_for(self, segmenter: Segmenter) -> nn.Module:
        """The trained fusion block, or an untrained one (which equals per-frame exactly).

        Raises ``ValueError`` if the trained block was made for another number of classes.
        """
        c = segmenter.meta.num_classes
        block = self.fusion if self.fusion is not None else make_module('fusion', num_classes=c)
        if module_args(block).get('num_classes') != c:
            raise ValueError(
                f'the fusion block is for {module_args(block).get("num_classes")} '
                f'classes but model {segmenter.meta.name} has {c}'
            )
        return block

    def loaded(self) -> list[str]:
        """Names of the modules that are present."""
        return [k for k in KINDS if getattr(self, k) is not None]

    def to_extra(self) -> dict:
        """``{'temporal': {...}}`` for :func:`vsda_ros.models.checkpoint.save_checkpoint`."""
        return {
            'temporal': {
                k: {'args': getattr(self, k).vsda_args, 'state_dict': getattr(self, k).state_dict()}
                for k in self.loaded()
            }
        }

    @classmethod
    def from_extra(cls, extra: dict, where: str = 'checkpoint') -> TemporalModules:
        """Inverse of :meth:`to_extra`; modules come back in eval mode on the CPU.

        Raises ``ModelLoadError`` (one line, naming ``where`` and the module) for an unknown
        module kind, constructor arguments the module does not take, or weights that do not
        fit it.
        """
        from vsda_ros.models.checkpoint import check_state_dict
        from vsda_ros.models.safe_load import ModelLoadError

        temporal = (extra or {}).get('temporal', {}) if isinstance(extra, dict) else None
        if not isinstance(temporal, dict):
            raise ModelLoadError(f"{where}: extra 'temporal' is not a dict")
        found = {}
        for kind, entry in temporal.items():
            if kind not in KINDS:
                raise ModelLoadError(
                    f'{where}: unknown temporal module {kind!r}; known: {", ".join(KINDS)}'
                )
            if not isinstance(entry, dict) or not isinstance(entry.get('args'), dict):
                raise ModelLoadError(f"{where}: temporal module {kind!r} has no 'args' dict")
            try:
                module = make_module(kind, **entry['args'])
            except (TypeError, ValueError) as e:
                raise ModelLoadError(
                    f'{where}: temporal module {kind!r} args {entry["args"]} '
                    f'do not fit it: {str(e).splitlines()[0][:120]}'
                ) from None
            check_state_dict(module, entry.get('state_dict'), f'{where}: temporal module {kind!r}')
            module.load_state_dict(entry['state_dict'], strict=True)
            found[kind] = module.eval()
        return cls(**found)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> TemporalModules:
        """The temporal modules of a vsda checkpoint (none for a zoo name or plain model).

        Raises ``FileNotFoundError`` for a missing file and ``ModelLoadError`` (one line, naming
        the file) if ``path`` is not a readable, safe vsda checkpoint or its modules do not load.
        """
        from vsda_ros.models.checkpoint import read_checkpoint

        return cls.from_extra(read_checkpoint(path).get('extra', {}), f'checkpoint {path}')

    def merged(self, other: TemporalModules) -> TemporalModules:
        """These modules, with gaps filled from ``other``."""
        return TemporalModules(
            **{
                k: getattr(self, k) if getattr(self, k) is not None else getattr(other, k)
                for k in KINDS
            }
        )


#: ``temporal_weights`` value that turns every temporal module off (also the shipped ones).
NO_MODULES = 'none'


def load_temporal_modules(model: str, temporal_weights: str = '') -> TemporalModules:
    """Modules from ``temporal_weights`` (one path, or several separated by commas: the first
    that has a module wins), gaps filled from the ``model`` itself: its checkpoint file, or the
    modules shipped for it in ``vsda_ros/zoo/`` (a shipped adapted model's own, or the trained
    modules of a published model; see :mod:`vsda_ros.models.shipped`).

    ``temporal_weights='none'`` gives no modules at all (fusion = per_frame, keyframe = plain
    warping). Raises ``FileNotFoundError`` for a missing ``temporal_weights`` file and
    ``ModelLoadError`` (a ``RuntimeError``; one line naming the file) for one that is
    unreadable, unsafe (pickled objects), not a vsda checkpoint, holds modules that do not
    load, or a shipped file whose sha256 differs.
    """
    from vsda_ros.models.shipped import SHIPPED_MODELS, SHIPPED_TEMPORAL, verified_path

    if temporal_weights.strip().lower() == NO_MODULES:
        return TemporalModules()
    found = TemporalModules()
    for path in filter(None, (p.strip() for p in temporal_weights.split(','))):
        if not Path(path).is_file():
            raise FileNotFoundError(f'temporal_weights file {path} does not exist')
        found = found.merged(TemporalModules.from_checkpoint(path))
    shipped = SHIPPED_MODELS.get(model) or SHIPPED_TEMPORAL.get(model)
    if shipped is not None and (shipped.kind == 'model' or shipped.path.is_file()):
        found = found.merged(TemporalModules.from_checkpoint(verified_path(shipped)))
    elif shipped is not None:  # a source tree before `make models`: run without them
        warnings.warn(
            f'the temporal modules shipped for {model} ({shipped.path}) are not '
            'installed: running without them (rebuild with `make models`)',
            stacklevel=2,
        )
    elif Path(model).is_file():
        found = found.merged(TemporalModules.from_checkpoint(model))
    return found
