"""What the ``fusion`` and ``tsl`` recipes share: the fusion block they train, built from the
config in one place, its warm start, and the synthetic temporal weather of the student's frames.

Below both recipe modules (:mod:`vsda_ros.adaptation.recipes`,
:mod:`vsda_ros.adaptation.uda.tsl`): it imports neither.

The config is any object with the ``fusion_*`` fields of
:class:`~vsda_ros.adaptation.config.AdaptConfig` (only read here).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from torch import nn

from vsda_ros.temporal.modules import TemporalModules, make_module

#: ``degrade(frames, rng) -> frames``: consecutive H×W×3 uint8 RGB frames under one weather.
Degrade = Callable[[list[np.ndarray], np.random.Generator], list[np.ndarray]]


def fusion_block(cfg: Any, num_classes: int, device: Any) -> nn.Module:
    """The fusion block ``cfg.fusion_variant`` asks for, on ``device``: the image-guided block
    (:func:`guided_fusion_block`) for ``'guided'``, else the score-only block
    (:func:`score_fusion_block`). Raises what those raise."""
    if cfg.fusion_variant == 'guided':
        return guided_fusion_block(cfg, num_classes, device)
    return score_fusion_block(cfg, num_classes, device)


def score_fusion_block(cfg: Any, num_classes: int, device: Any) -> nn.Module:
    """The score-only fusion block (:class:`~vsda_ros.temporal.fusion_block.FusionBlock`) for
    ``num_classes`` (C×H×W scores in, C×H×W fused scores out) at ``fusion_scale``, with
    ``fusion_offset_hidden`` channels in its offset predictors (0: one conv each).

    Raises:
        ValueError: a non-positive scale or a negative ``fusion_offset_hidden``.
    """
    return make_module(
        'fusion',
        num_classes=num_classes,
        scale=cfg.fusion_scale,
        offset_hidden=cfg.fusion_offset_hidden,
    ).to(device)


def guided_fusion_block(cfg: Any, num_classes: int, device: Any) -> nn.Module:
    """The image-guided fusion block the config asks for (``fusion_scale``, ``fusion_blend``,
    ``fusion_recurrent``, ``fusion_num_deform``, ``fusion_frame_gate``, ``fusion_frame_cues``,
    ``fusion_pixel_mask``) on ``device``, warm-started from ``fusion_init`` when set
    (:func:`warm_start_fusion`).

    Raises:
        ValueError: bad block arguments, or no weight of ``fusion_init`` fits the block.
    """
    block = make_module(
        'fusion',
        variant='guided',
        num_classes=num_classes,
        scale=cfg.fusion_scale,
        blend=cfg.fusion_blend,
        recurrent=cfg.fusion_recurrent,
        num_deform=cfg.fusion_num_deform,
        frame_gate=cfg.fusion_frame_gate,
        frame_cues=cfg.fusion_frame_cues,
        pixel_mask=cfg.fusion_pixel_mask,
    ).to(device)
    if cfg.fusion_init:
        warm_start_fusion(block, cfg.fusion_init)
    return block


def warm_start_fusion(block: nn.Module, path: str) -> None:
    """Copy into ``block`` every weight of the fusion block in checkpoint ``path`` whose name
    and shape match (e.g. the encoder and motion head of an earlier guided block, whatever its
    ``num_deform``); prints what was taken.

    Raises:
        ValueError: nothing matches (or the checkpoint has no fusion block).
    """
    src = TemporalModules.from_checkpoint(path).fusion
    own = block.state_dict()
    taken = {
        k: v
        for k, v in (src.state_dict() if src is not None else {}).items()
        if k in own and own[k].shape == v.shape
    }
    if not taken:
        raise ValueError(f'fusion_init {path}: no fusion-block weight fits this block')
    block.load_state_dict(taken, strict=False)
    print(f'fusion_init: {len(taken)} of {len(own)} tensors from {path}')


def weather_degrade(kinds: list[str], intensity: tuple[float, float]) -> Degrade:
    """A degradation of consecutive frames by one temporally correlated synthetic weather of a
    random kind (from ``kinds``) and intensity (uniform in ``intensity``), both drawn from the
    generator the recipe passes. An unknown kind raises ``ValueError`` when it is drawn."""
    from vsda_ros.weather import WeatherSequence, WeatherSpec

    def degrade(frames: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        kind = kinds[int(rng.integers(len(kinds)))]
        spec = WeatherSpec(kind, float(rng.uniform(*intensity)))
        seq = WeatherSequence(spec, seed=int(rng.integers(2**31)), temporal=True)
        return [seq(f) for f in frames]

    return degrade
