"""Inference: one model on one backend, image in, :class:`~vsda_ros.frames.Segmentation` out.

:mod:`~vsda_ros.inference.segmenter` holds :class:`Segmenter` (pre-/postprocessing, timing);
:mod:`~vsda_ros.inference.backends` the torch / OpenVINO / ONNX Runtime backends and
:mod:`~vsda_ros.inference.export` the exported-graph files and their verified cache. The names
below are the package's public API (``from vsda_ros.inference import Segmenter``).
"""

from vsda_ros.inference.segmenter import (
    MAX_INPUT_PIXELS,
    MAX_INPUT_SIDE,
    MAX_OUTPUT_PIXELS,
    Segmenter,
    SegmenterConfig,
    output_factor,
    parse_size,
    resolve_device,
)

__all__ = [
    'MAX_INPUT_PIXELS',
    'MAX_INPUT_SIDE',
    'MAX_OUTPUT_PIXELS',
    'Segmenter',
    'SegmenterConfig',
    'output_factor',
    'parse_size',
    'resolve_device',
]
