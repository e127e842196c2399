"""Building a strategy by name: the one place that knows every strategy class.

Apart from :mod:`vsda_ros.temporal.strategy` (the contract), so that the strategy modules
import the contract and this module imports them, and nothing imports back.
"""

from __future__ import annotations

from vsda_ros.inference import Segmenter
from vsda_ros.temporal.async_keyframe import AsyncKeyframe
from vsda_ros.temporal.fusion import Fusion
from vsda_ros.temporal.keyframe import Keyframe
from vsda_ros.temporal.modules import TemporalModules
from vsda_ros.temporal.strategy import STRATEGY_NAMES, PerFrame, Strategy, StrategyConfig


def build_strategy(
    name: str,
    segmenter: Segmenter,
    config: StrategyConfig | None = None,
    modules: TemporalModules | None = None,
) -> Strategy:
    """The strategy called ``name`` (:data:`STRATEGY_NAMES`) for one camera.

    Args:
        segmenter: the network, shared by every strategy built on it.
        config: options (``None`` = defaults); ``keyframe`` with ``config.async_keyframes``
            builds :class:`AsyncKeyframe`.
        modules: trained temporal modules (fusion block, DMNet, CFNet); missing ones fall back
            to their untrained behaviour (fusion = per-frame, keyframe = plain warping).

    Raises:
        ValueError: unknown name or bad config.
    """
    modules = modules or TemporalModules()
    if name == 'per_frame':
        return PerFrame(segmenter, config)
    if name == 'fusion':
        return Fusion(segmenter, config, modules.fusion_for(segmenter))
    if name == 'keyframe' and config is not None and config.async_keyframes:
        return AsyncKeyframe(
            segmenter,
            config,
            modules.dmnet,
            modules.cfnet,
            key_delay_frames=config.key_delay_frames,
        )
    if name == 'keyframe':
        return Keyframe(segmenter, config, modules.dmnet, modules.cfnet)
    raise ValueError(f'unknown strategy {name!r}; available: {", ".join(STRATEGY_NAMES)}')
