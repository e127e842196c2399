"""The one factory every caller uses: a model name → a ready segmenter and its temporal modules.

The node, ``vsda segment``, ``vsda eval``, ``vsda bench`` and ``vsda export`` all turn the same
settings (model, input size, device, backend, precision, temporal weights) into the same
objects through :func:`build_pipeline`, so that live and offline runs are the same computation::

    from vsda_ros import PipelineConfig, build_pipeline

    pipe = build_pipeline(PipelineConfig(model='espnet-camvid', input_size=(480, 360)))
    strategy = pipe.strategy('fusion')           # one per camera / clip: it holds state
    seg = strategy.step(image, stamp=t)          # image: H×W×3 uint8 RGB; t: seconds
    seg.labels                                   # H×W uint8 class ids

Layer: above :mod:`vsda_ros.temporal` (strategies) and :mod:`vsda_ros.inference`, below the
evaluation, adaptation, applications and ROS layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsda_ros.inference.segmenter import Segmenter, SegmenterConfig, resolve_device
from vsda_ros.models.base import ModelMeta, SegmentationModel
from vsda_ros.models.zoo import load_model, resolve_model
from vsda_ros.temporal.factory import build_strategy
from vsda_ros.temporal.modules import NO_MODULES, TemporalModules, load_temporal_modules
from vsda_ros.temporal.strategy import Strategy, StrategyConfig


@dataclass(frozen=True)
class PipelineConfig:
    """What to run (every field has the node's / the CLI's default).

    Attributes:
        model: a zoo name (published or shipped, ``vsda models``), a vsda checkpoint file or
            an export folder (``vsda export``).
        input_size: (width, height) fed to the network; ``None`` = the model's native size.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        backend: ``torch``, ``openvino``, ``onnxruntime`` or ``auto``.
        precision: ``fp32``, ``bf16``, ``int8`` or ``auto``.
        temporal_weights: checkpoint(s) with trained temporal modules, comma-separated;
            ``''`` = the model's own (shipped or inside its checkpoint); ``'none'`` = none.
        download: fetch a published model's weights when they are not found locally.
        progress: show a progress bar while downloading.
        warmup: passes on a black frame at the input size before returning (the first passes
            allocate and tune; a node warms up so its first camera frames are not seconds late).
    """

    model: str = 'espnet-camvid'
    input_size: tuple[int, int] | None = None
    device: str = 'cpu'
    backend: str = 'torch'
    precision: str = 'fp32'
    temporal_weights: str = ''
    download: bool = True
    progress: bool = True
    warmup: int = 0


@dataclass
class Pipeline:
    """A loaded model ready to segment, with the temporal modules its strategies use.

    Attributes:
        segmenter: runs the network on one backend (shared by every strategy built here).
        modules: trained fusion block / DMNet / CFNet (empty with ``temporal_weights='none'``).
        source: what the model was loaded from (an export folder's ``model.pt``, else
            ``config.model``).
        export_dir: the export folder named by ``config.model``, or ``None``.
    """

    config: PipelineConfig
    segmenter: Segmenter
    modules: TemporalModules
    source: str
    export_dir: Path | None

    @property
    def model(self) -> SegmentationModel:
        """The torch model (weights, export source; the segmenter may run a compiled copy)."""
        return self.segmenter.torch_model

    @property
    def meta(self) -> ModelMeta:
        """Classes, palette, normalisation and native size of the model."""
        return self.segmenter.meta

    def strategy(self, name: str, config: StrategyConfig | None = None) -> Strategy:
        """A fresh temporal strategy (``per_frame``, ``fusion``, ``keyframe``) on this
        pipeline's segmenter and modules: one per camera or clip, since it holds the frame
        buffer. Raises ``ValueError`` for an unknown name or a bad config."""
        return build_strategy(name, self.segmenter, config, self.modules)


def build_pipeline(config: PipelineConfig) -> Pipeline:
    """Load ``config.model`` and build its segmenter and temporal modules.

    The device is checked before any weights are read, the temporal modules after the network
    (so a bad model is reported first).

    Raises:
        ValueError: unknown device, backend or precision; a bad input size
            (:class:`~vsda_ros.models.zoo.ModelNotFoundError` for an unknown model name).
        FileNotFoundError: missing weights with ``download=False`` (the message names the
            command that fetches them), a missing checkpoint or temporal weights file.
        RuntimeError: :class:`~vsda_ros.models.safe_load.ModelLoadError` for a file that
            cannot be used (corrupt, unsafe, wrong sha256, not fitting its architecture);
            ``BackendUnavailable`` when the backend or precision cannot run here.
        vsda_ros.fetch.FetchError: a download failed.
    """
    resolve_device(config.device)
    source, export_dir = resolve_model(config.model)
    model = load_model(source, download=config.download, progress=config.progress)
    segmenter = Segmenter(
        model,
        SegmenterConfig(
            input_size=config.input_size,
            device=config.device,
            backend=config.backend,
            precision=config.precision,
            export_dir=export_dir,
        ),
    )
    w, h = segmenter.input_size
    for _ in range(max(0, config.warmup)):
        segmenter.segment(np.zeros((h, w, 3), np.uint8))
    if config.temporal_weights.strip().lower() == NO_MODULES:
        modules = TemporalModules()
    else:
        modules = load_temporal_modules(source, config.temporal_weights)
    return Pipeline(config, segmenter, modules, source, export_dir)
