"""``vsda adapt`` settings: one dataclass, small YAML recipes under ``config/experiments/``."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

RECIPES = ('davss', 'fusion')


@dataclass
class AdaptConfig:
    """Everything a training run needs; saved into the checkpoint for provenance.

    Attributes:
        recipe: ``davss`` (DMNet + CFNet for keyframe propagation) or ``fusion`` (the
            adjacent-frame fusion block, teacher–student under degradations).
        model: the base network (zoo name or checkpoint); frozen by these recipes.
        target: unlabelled target video: frame folders and/or video files.
        out: checkpoint to write (base model + trained temporal modules).
        iterations, batch, lr: optimisation (AdamW).
        crop: (width, height) random crop of each training sample.
        height: frames are resized to this height first (keeps the aspect).
        max_distance: consecutive training frames are 1..max_distance stored frames apart.
        video_stride: keep every n-th frame of video files.
        steps: davss: propagation steps per sample (2 = DAVSS's dual deep supervision).
        fusion_scale: fusion: working scale of the fusion block.
        dmnet_width, cfnet_width: davss: widths of the two small networks.
        cfnet_guided: davss: CFNet also sees the warped features and refines them (see
            :class:`~vsda_ros.temporal.correction.CFNet`); ``False`` = DAVSS's plain CFNet.
        max_pair_dt: davss: only sequences whose consecutive stored frames are at most this
            many seconds apart give propagation clips (CamVid train, labelled at 1 fps, is
            skipped: 1 s is far beyond the 15 Hz propagation the strategy does).
        ema: fusion: EMA decay of the teacher block.
        degrade_strength: fusion: maximum strength of the student's degradations (1.0 leaves
            the frozen network agreeing with its clean answer on ~1/3 of the pixels: too
            strong to learn from, measured).
        degrade_drift: fusion: relative change of the degradation between the two frames.
        clean_weight: fusion: weight of the clean-pair term that protects clean accuracy.
        val, val_labels, label_map: optional labelled clip evaluated every ``eval_every``
            iterations (and at the end).
        seed: seeds numpy and torch; the run is deterministic on one CPU thread setting.
        threads: torch CPU threads.
        save_every: write a resumable state every N iterations (``<out>.state.pt``).
    """

    recipe: str = 'davss'
    model: str = 'espnet-camvid'
    target: list[str] = field(default_factory=list)
    out: str = 'runs/adapted.pt'
    iterations: int = 600
    batch: int = 4
    lr: float = 2e-3
    crop: tuple[int, int] = (320, 240)
    height: int = 360
    max_distance: int = 4
    video_stride: int = 1
    steps: int = 2
    fusion_scale: float = 0.125
    dmnet_width: int = 16
    cfnet_width: int = 24
    cfnet_guided: bool = True
    max_pair_dt: float = 0.5
    ema: float = 0.99
    degrade_strength: float = 0.5
    degrade_drift: float = 0.5
    clean_weight: float = 1.0
    val: str | None = None
    val_labels: str | None = None
    label_map: str | None = None
    eval_every: int = 0
    seed: int = 0
    threads: int = 2
    device: str = 'cpu'
    save_every: int = 100

    def validate(self) -> None:
        """Raise ``ValueError`` with the offending key."""
        if self.recipe not in RECIPES:
            raise ValueError(f'unknown recipe {self.recipe!r}; available: {", ".join(RECIPES)}')
        if not self.target:
            raise ValueError('no target video given (--target FOLDER_OR_VIDEO, repeatable)')
        for key in ('iterations', 'batch', 'max_distance', 'steps', 'threads'):
            if int(getattr(self, key)) < 1:
                raise ValueError(f'{key} must be ≥ 1, got {getattr(self, key)}')
        if not 0 < self.fusion_scale <= 1:
            raise ValueError(f'fusion_scale must be in (0, 1], got {self.fusion_scale}')

    def to_dict(self) -> dict:
        d = asdict(self)
        d['crop'] = list(self.crop)
        return d

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> 'AdaptConfig':
        """A recipe file, with ``overrides`` (non-``None`` values) applied on top.

        Raises ``ValueError`` for unknown keys.
        """
        data = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f'{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}')
        data.update({k: v for k, v in overrides.items() if v is not None})
        if 'crop' in data:
            data['crop'] = tuple(int(v) for v in data['crop'])
        return cls(**data)
