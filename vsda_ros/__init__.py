"""vsda_ros: domain-adaptive video semantic segmentation for ROS 2.

The core (everything but :mod:`vsda_ros.ros`) imports no rclpy, so offline tools and the node
share one implementation and give identical results on identical frames.

The Python API is the few names below (loaded on first use, so ``import vsda_ros`` stays
light); ``docs/development.md`` shows them at work::

    from vsda_ros import PipelineConfig, build_pipeline

    pipe = build_pipeline(PipelineConfig(model='espnet-camvid'))
    strategy = pipe.strategy('fusion')       # holds one camera's temporal state
    seg = strategy.step(image_rgb, stamp=t)  # H×W×3 uint8 RGB, seconds
    seg.labels, seg.confidence               # H×W uint8 class ids, H×W uint8 max softmax × 255
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = '0.1.0'

#: public name → the module that defines it
_API = {
    'Frame': 'vsda_ros.frames',
    'Segmentation': 'vsda_ros.frames',
    'PipelineConfig': 'vsda_ros.pipeline',
    'Pipeline': 'vsda_ros.pipeline',
    'build_pipeline': 'vsda_ros.pipeline',
    'Segmenter': 'vsda_ros.inference.segmenter',
    'SegmenterConfig': 'vsda_ros.inference.segmenter',
    'StrategyConfig': 'vsda_ros.temporal.strategy',
    'STRATEGY_NAMES': 'vsda_ros.temporal.strategy',
    'load_model': 'vsda_ros.models.zoo',
    'model_names': 'vsda_ros.models.zoo',
}
__all__ = [
    '__version__',
    'Frame',
    'Segmentation',
    'PipelineConfig',
    'Pipeline',
    'build_pipeline',
    'Segmenter',
    'SegmenterConfig',
    'StrategyConfig',
    'STRATEGY_NAMES',
    'load_model',
    'model_names',
]

if TYPE_CHECKING:
    from vsda_ros.frames import Frame, Segmentation
    from vsda_ros.inference.segmenter import Segmenter, SegmenterConfig
    from vsda_ros.models.zoo import load_model, model_names
    from vsda_ros.pipeline import Pipeline, PipelineConfig, build_pipeline
    from vsda_ros.temporal.strategy import STRATEGY_NAMES, StrategyConfig


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
