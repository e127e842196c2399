"""``vsda adapt`` settings: one dataclass, small YAML recipes under ``config/experiments/``.

Recipe values may refer to the real-data folder as ``${VSDA_DATA_DIR}`` (or
``$VSDA_DATA_DIR``): it expands to :func:`vsda_ros.paths.data_dir` — the environment variable
when set, else ``../shared/data`` when it exists — so a recipe works from any directory
(reading a recipe file: :mod:`vsda_ros.adaptation.recipe_file`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vsda_ros.adaptation.recipe_file import read_recipe

#: ``RECIPES`` (read lazily, see :func:`__getattr__`): the recipe names, in the order of
#: :data:`vsda_ros.adaptation.recipes.RECIPE_CLASSES`, the one list of them. ``davss``/``fusion``
#: train temporal modules on a frozen network; the others adapt the whole network (see
#: :mod:`vsda_ros.adaptation.uda`).
#: recipes that cannot work without a labelled source set.
NEEDS_SOURCE = ('source',)
#: recipes that train the base network by default (``train_base`` = ``None``).
TRAINS_BASE = ('source', 'tps', 'i2vda', 'vat_vst', 'tsl')
#: learning rate when ``lr`` is not given: temporal modules from scratch vs fine-tuning.
DEFAULT_LR = {'davss': 2e-3, 'fusion': 2e-3}
DEFAULT_NETWORK_LR = 5e-5


def recipe_names() -> tuple[str, ...]:
    """The names of every ``vsda adapt`` recipe, from the recipe table (imported on first use:
    it pulls in torch and the recipe implementations, which this module does not need)."""
    from vsda_ros.adaptation.recipes import RECIPE_CLASSES

    return tuple(RECIPE_CLASSES)


def __getattr__(name: str) -> Any:
    """``RECIPES`` = :func:`recipe_names` (PEP 562), so ``from …config import RECIPES`` keeps
    working without a second list of the names."""
    if name == 'RECIPES':
        return recipe_names()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


@dataclass
class AdaptConfig:
    """Everything a training run needs; saved into the checkpoint for provenance.

    Attributes:
        recipe: ``davss`` (DMNet + CFNet for keyframe propagation) or ``fusion`` (the
            adjacent-frame fusion block, teacher–student under degradations), both on a frozen
            network; or a whole-network recipe (:mod:`vsda_ros.adaptation.uda`): ``source``
            (supervised on labelled source frames), ``tps`` (cross-frame pseudo-labels),
            ``i2vda`` (image-to-video: temporal augmentation, proxy pseudo-labels, output GAN),
            ``vat_vst`` (clip adversarial alignment, then video self-training), ``tsl``
            (temporal + spatial teacher–student with weather, trains the fusion block too).
        model: the base network (zoo name or checkpoint).
        target: unlabelled target video: frame folders and/or video files (not needed by
            ``source``).
        out: checkpoint to write (the network — adapted or not — + trained temporal modules).
        iterations, batch, lr: optimisation (AdamW, poly decay). ``lr`` ``None`` = the
            recipe's default (2e-3 for temporal modules, 5e-5 for fine-tuning the network).
        crop: (width, height) random crop of each training sample.
        height: frames are resized to this height first (keeps the aspect).
        max_distance: consecutive training frames are 1..max_distance stored frames apart.
        video_stride: keep every n-th frame of video files.
        folder_fps: frames per second of target frame folders (their files carry no time
            stamps; videos and bags have their own rate): sets the time between a folder's
            frames, which ``max_pair_dt`` limits (Cityscapes sequences: 17).
        steps: davss: propagation steps per sample (2 = DAVSS's dual deep supervision).
        fusion_scale: fusion: working scale of the fusion block.
        fusion_offset_hidden: fusion: 0 = each deformable step's offsets from one 3×3 conv
            (the block as specified); > 0 = from two 3×3 convs with this many channels and a
            ReLU (see :class:`~vsda_ros.temporal.fusion_block.FusionBlock`).
        fusion_variant: fusion: ``scores`` (offsets from class scores, the reference block) or
            ``guided`` (offsets from image features of both frames, DIS flow distilled into
            them in training; :class:`~vsda_ros.temporal.guided_fusion.GuidedFusionBlock`).
        fusion_blend: fusion, guided: the gate's initial weight on the aligned previous scores.
        fusion_recurrent: fusion, guided: the strategy feeds the fused scores to the next frame.
        fusion_num_deform: fusion, guided: deformable steps (0 = warp by the motion field).
        fusion_frame_gate: fusion, guided: one gate weight per frame instead of per pixel.
        fusion_frame_cues: fusion, guided: the frame's gate weight also sees frame statistics
            of both images (which frame a transient hit); needs ``fusion_frame_gate``.
        fusion_pixel_mask: fusion, guided: the frame's weight times a learned per-pixel mask
            in (0, 1) (less of the previous frame where the warp fails); needs
            ``fusion_frame_gate``.
        fusion_stage: fusion, guided: ``full`` (everything, with the network's scores) or
            ``motion`` (only the motion field learns the DIS flow; the network is not run).
        fusion_init: fusion, guided: start from the matching weights of this checkpoint's
            fusion block (e.g. an earlier guided block's encoder and motion head).
        flow_weight: fusion, guided: weight of the flow-distillation term.
        fusion_lr: tsl: the fusion block's learning rate (``None`` = ``lr``, the network's;
            a trained guided block fine-tuned with the network wants more than the network's).
        transient_prob: fusion, guided: probability that a training pair has only its current
            frame degraded (a transient hit; half as often only its previous frame).
        dmnet_width, cfnet_width: davss: widths of the two small networks.
        cfnet_stride: davss: output stride of CFNet on its input (2, 4 or 8); 4 skips the last
            decoder stage, which was half of CFNet's cost.
        cfnet_guided: davss: CFNet also sees the warped features and refines them (see
            :class:`~vsda_ros.temporal.correction.CFNet`); ``False`` = DAVSS's plain CFNet.
        correction_downscale: davss: DMNet and CFNet pool their input frames (given at the
            feature resolution) by this factor first (1, 2 or 4); 2 cuts their cost about 4×.
        max_pair_dt: davss, fusion: only sequences whose consecutive stored frames are at most
            this many seconds apart give training clips. With the default 0.5, CamVid train
            (labelled at 1 fps) is skipped: 1 s is far beyond the 15 Hz the strategies run at.
            ``config/experiments/davss.yaml`` sets 1.0 to let it in on purpose: the 1 s pairs
            are the only urban examples of warping errors.
        ema: fusion: EMA decay of the teacher block.
        clean_weight: fusion: weight of the clean-pair term that protects clean accuracy.
        temporal_target: fusion: weight λ of the flow-warped previous prediction in the
            target (0 = the EMA teacher alone).
        align_weight: fusion: weight of the term training the deformable alignment directly.
        align_to: fusion: what the aligned previous scores must predict in that term:
            ``'target'`` (the pseudo-label distribution) or ``'flow'`` (the previous scores
            warped onto the current frame by optical flow: the flow distilled into the
            deformable offsets; the block itself stays flow-free).
        soft_target: fusion: the fused output learns the target distribution itself (soft
            cross-entropy) instead of its confidence-weighted argmax. A hard label only
            rewards blending where the current and the warped previous frame disagree, so
            the learned blend stays near pass-through.
        anchor_weight: fusion: weight of the class-prior penalty (see
            :func:`vsda_ros.adaptation.recipes.class_prior_penalty`).
        val, val_labels, label_map: optional labelled clip evaluated every ``eval_every``
            iterations (and at the end).
        seed: seeds numpy and torch; the run is deterministic on one CPU thread setting.
        threads: torch CPU threads.
        save_every: write a resumable state every N iterations (``<out>.state.pt``).

    Whole-network recipes (ignored by ``davss``/``fusion``):
        source, source_labels: a labelled source frame folder and its label folder (CamVid
            layout: same file names; Cityscapes layout: ``*_leftImg8bit.png`` ↔
            ``*_gtFine_labelIds.png``, converted to train ids). Optional except for ``source``.
        source_map: maps source label ids to the model's class ids: ``camvid-cityscapes``
            (CamVid labels, Cityscapes model) or ``cityscapes-camvid``; ``None`` = the labels
            are the model's class ids already (values ≥ the number of classes are ignored).
        source_weight: weight of the supervised source term.
        train_base: train the network (``None`` = the recipe's default: yes for the
            whole-network recipes, no for ``davss``/``fusion``; ``tsl`` with ``False`` trains
            only its fusion block). BatchNorm statistics always stay frozen.
        freeze: prefixes of network parameter names kept frozen (e.g. ``[base_net]`` trains
            only the ESPNetv2 decoder).
        frame_size: (width, height): resize target/source frames to exactly this size (as the
            node and ``vsda eval`` resize their input), instead of to ``height``.
        clip_max_dt: only target sequences whose stored frames are at most this many seconds
            apart give clips (0 = any spacing).
        confidence: pseudo-labels below this softmax confidence are ignored.
        class_balance: ``tps``/``vat_vst``/``tsl``: each predicted class also keeps its most
            confident fraction of pixels (class-balanced pseudo-labels; 0 = off).
        aug_scale, aug_jitter, aug_blur: strong augmentation of the student's input: crop
            between ``aug_scale`` and 1 of each side, rescaled back (+ flip); colour jitter
            ±``aug_jitter``; Gaussian blur up to sigma ``aug_blur`` (half of the samples).
        proxy_launch, proxy_interval: ``i2vda``: the proxy network (a frozen copy of the
            network that gives pseudo-labels) is first made at iteration L = ``proxy_launch``
            and refreshed every K = ``proxy_interval`` iterations (L, L+K, …).
        entropy_threshold: ``i2vda``: pseudo-labels whose normalised entropy (H / log C) is
            above this are ignored.
        disc_lr, disc_width, adv_weight: the discriminators' lr and width, and the weight of
            the adversarial term in the network's loss (``i2vda``, ``vat_vst``).
        clip_frames: ``vat_vst``: frames per clip (2–3) for the clip discriminator and for the
            aggregated pseudo-labels (the middle frame is the labelled one).
        vst_start: ``vat_vst``: iteration at which adversarial training (VAT) switches to video
            self-training (VST); its pseudo-label network is the network frozen at that point.
        ema: also the EMA decay of the ``tps``/``tsl`` teachers (0 = the teacher is the
            current network).
        tsl_crop: ``tsl``: the student's crop (w, h) inside each sampled ``crop``
            (default ``(0, 0)`` = half of ``crop``).
        tsl_zoom: ``tsl``: the spatial teacher sees the student's crop upsampled by this factor,
            or by (x, y) factors: ``[2.133, 1.422]`` shows a 480×360 frame's crop at the scale
            of a 1024×512 input, where the Cityscapes ESPNetv2 is at its best on CamVid.
        spatial_weight: ``tsl``: weight of the spatial-teacher consistency term.
        weather_kinds, weather_intensity: ``tsl``, ``fusion``: the student's synthetic weather
            (kinds of :mod:`vsda_ros.weather`, one drawn per sample, intensity drawn in the
            range).
        export_teacher: export the EMA teacher (``tps``/``tsl``) instead of the student.
        val_size: (w, h) network input size for the evaluations (``None`` = native size).
        val_frames: evaluate on the first N frames of ``val`` only (0 = all).
    """

    recipe: str = 'davss'
    model: str = 'espnet-camvid'
    target: list[str] = field(default_factory=list)
    out: str = 'runs/adapted.pt'
    iterations: int = 600
    batch: int = 4
    lr: float | None = None
    crop: tuple[int, int] = (320, 240)
    height: int = 360
    max_distance: int = 4
    video_stride: int = 1
    folder_fps: float = 30.0
    steps: int = 2
    fusion_scale: float = 0.125
    fusion_offset_hidden: int = 0
    fusion_variant: str = 'scores'
    fusion_blend: float = 0.4
    fusion_recurrent: bool = True
    fusion_num_deform: int = 1
    fusion_stage: str = 'full'
    fusion_frame_gate: bool = False
    fusion_frame_cues: bool = False
    fusion_pixel_mask: bool = False
    fusion_init: str | None = None
    flow_weight: float = 1.0
    fusion_lr: float | None = None
    transient_prob: float = 0.0
    dmnet_width: int = 16
    cfnet_width: int = 24
    cfnet_stride: int = 4
    cfnet_guided: bool = True
    correction_downscale: int = 2
    max_pair_dt: float = 0.5
    ema: float = 0.99
    clean_weight: float = 1.0
    temporal_target: float = 0.5
    align_weight: float = 0.5
    align_to: str = 'target'
    soft_target: bool = False
    anchor_weight: float = 1.0
    val: str | None = None
    val_labels: str | None = None
    label_map: str | None = None
    eval_every: int = 0
    seed: int = 0
    threads: int = 2
    device: str = 'cpu'
    save_every: int = 100
    # --- whole-network recipes ---
    source: str | None = None
    source_labels: str | None = None
    source_map: str | None = None
    source_weight: float = 1.0
    train_base: bool | None = None
    freeze: list[str] = field(default_factory=list)
    frame_size: tuple[int, int] | None = None
    clip_max_dt: float = 0.0
    confidence: float = 0.9
    class_balance: float = 0.0
    aug_scale: float = 0.6
    aug_jitter: float = 0.3
    aug_blur: float = 1.5
    proxy_launch: int = 100
    proxy_interval: int = 100
    entropy_threshold: float = 0.5
    disc_lr: float = 1e-4
    disc_width: int = 32
    adv_weight: float = 1e-3
    clip_frames: int = 3
    vst_start: int = 200
    tsl_crop: tuple[int, int] = (0, 0)
    tsl_zoom: float | tuple[float, float] = 2.0
    spatial_weight: float = 1.0
    weather_kinds: list[str] = field(
        default_factory=lambda: ['fog', 'rain', 'snow', 'night', 'glare', 'noise']
    )
    weather_intensity: tuple[float, float] = (0.3, 0.8)
    export_teacher: bool = False
    val_size: tuple[int, int] | None = None
    val_frames: int = 0

    @property
    def trains_base(self) -> bool:
        """Whether the network itself is trained (``train_base`` or the recipe's default)."""
        return self.recipe in TRAINS_BASE if self.train_base is None else bool(self.train_base)

    @property
    def zoom_xy(self) -> tuple[float, float]:
        """``tsl_zoom`` as (x, y) factors."""
        z = self.tsl_zoom
        return (float(z), float(z)) if isinstance(z, (int, float)) else (float(z[0]), float(z[1]))

    @property
    def learning_rate(self) -> float:
        """``lr``, or the recipe's default when it is ``None``."""
        if self.lr is not None:
            return float(self.lr)
        return DEFAULT_LR.get(self.recipe, DEFAULT_NETWORK_LR)

    def validate(self) -> None:
        """Raise ``ValueError`` with the offending key."""
        names = recipe_names()
        if self.recipe not in names:
            raise ValueError(f'unknown recipe {self.recipe!r}; available: {", ".join(names)}')
        if not self.target and self.recipe != 'source':
            raise ValueError('no target video given (--target FOLDER_OR_VIDEO, repeatable)')
        if self.recipe in NEEDS_SOURCE and not (self.source and self.source_labels):
            raise ValueError(
                f'recipe {self.recipe} needs labelled source frames '
                '(--source FOLDER --source-labels FOLDER)'
            )
        if bool(self.source) != bool(self.source_labels):
            raise ValueError(
                'source and source_labels go together (a frame folder and its label folder)'
            )
        if self.recipe in ('davss', 'fusion') and self.train_base:
            raise ValueError(
                f'recipe {self.recipe} trains temporal modules on a frozen '
                'network; train_base must be false'
            )
        if self.recipe in ('source', 'tps', 'i2vda', 'vat_vst') and self.train_base is False:
            raise ValueError(
                f'recipe {self.recipe} trains the network; train_base cannot be '
                'false (tsl can: then only its fusion block is trained)'
            )
        for key in (
            'iterations',
            'batch',
            'max_distance',
            'steps',
            'threads',
            'proxy_interval',
            'disc_width',
        ):
            if int(getattr(self, key)) < 1:
                raise ValueError(f'{key} must be ≥ 1, got {getattr(self, key)}')
        for key in ('proxy_launch', 'vst_start', 'val_frames', 'eval_every', 'save_every'):
            if int(getattr(self, key)) < 0:
                raise ValueError(f'{key} must be ≥ 0, got {getattr(self, key)}')
        if self.cfnet_stride not in (2, 4, 8):
            raise ValueError(f'cfnet_stride must be 2, 4 or 8, got {self.cfnet_stride}')
        if self.correction_downscale not in (1, 2, 4):
            raise ValueError(
                f'correction_downscale must be 1, 2 or 4, got {self.correction_downscale}'
            )
        if self.align_to not in ('target', 'flow'):
            raise ValueError(f"align_to must be 'target' or 'flow', got {self.align_to!r}")
        if self.fusion_variant not in ('scores', 'guided'):
            raise ValueError(
                f"fusion_variant must be 'scores' or 'guided', got {self.fusion_variant!r}"
            )
        if self.fusion_stage not in ('full', 'motion'):
            raise ValueError(f"fusion_stage must be 'full' or 'motion', got {self.fusion_stage!r}")
        if self.fusion_num_deform < 0:
            raise ValueError(f'fusion_num_deform must be ≥ 0, got {self.fusion_num_deform}')
        if not self.folder_fps > 0:
            raise ValueError(f'folder_fps must be > 0, got {self.folder_fps}')
        if self.fusion_lr is not None and not self.fusion_lr > 0:
            raise ValueError(f'fusion_lr must be > 0 (or unset), got {self.fusion_lr}')
        if (self.fusion_frame_cues or self.fusion_pixel_mask) and not self.fusion_frame_gate:
            raise ValueError(
                'fusion_frame_cues and fusion_pixel_mask need fusion_frame_gate: '
                'true (they act on the one gate weight per frame)'
            )
        if self.fusion_init and not Path(self.fusion_init).is_file():
            raise ValueError(f'fusion_init: {self.fusion_init} does not exist')
        if not 0 < self.fusion_blend < 1:
            raise ValueError(f'fusion_blend must be in (0, 1), got {self.fusion_blend}')
        if not 0 <= self.transient_prob <= 0.6:
            raise ValueError(f'transient_prob must be in [0, 0.6], got {self.transient_prob}')
        if self.flow_weight < 0:
            raise ValueError(f'flow_weight must be ≥ 0, got {self.flow_weight}')
        if self.fusion_offset_hidden < 0:
            raise ValueError(f'fusion_offset_hidden must be >= 0, got {self.fusion_offset_hidden}')
        if not 0 < self.fusion_scale <= 1:
            raise ValueError(f'fusion_scale must be in (0, 1], got {self.fusion_scale}')
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f'lr must be > 0, got {self.lr}')
        if not 0 <= self.class_balance <= 1:
            raise ValueError(f'class_balance must be in [0, 1], got {self.class_balance}')
        if not 0 <= self.confidence < 1:
            raise ValueError(f'confidence must be in [0, 1), got {self.confidence}')
        if not 0 < self.aug_scale <= 1:
            raise ValueError(f'aug_scale must be in (0, 1], got {self.aug_scale}')
        if not 0 <= self.ema < 1:
            raise ValueError(f'ema must be in [0, 1), got {self.ema}')
        if not 2 <= int(self.clip_frames) <= 5:
            raise ValueError(f'clip_frames must be 2..5, got {self.clip_frames}')
        if not min(self.zoom_xy) >= 1:
            raise ValueError(f'tsl_zoom must be ≥ 1 (or a pair of such), got {self.tsl_zoom}')
        lo, hi = self.weather_intensity
        if not 0 <= lo <= hi <= 1:
            raise ValueError(
                f'weather_intensity must be 0 ≤ lo ≤ hi ≤ 1, got {self.weather_intensity}'
            )
        if not 0 <= self.temporal_target <= 1:
            raise ValueError(f'temporal_target must be in [0, 1], got {self.temporal_target}')
        for key in ('clean_weight', 'align_weight', 'anchor_weight'):
            if getattr(self, key) < 0:
                raise ValueError(f'{key} must be ≥ 0, got {getattr(self, key)}')
        if self.recipe in ('tsl', 'fusion') and not self.weather_kinds:
            raise ValueError('weather_kinds is empty')
        if self.source_map is not None:
            from vsda_ros.adaptation.source_data import SOURCE_MAPS

            if self.source_map not in SOURCE_MAPS:
                raise ValueError(
                    f'unknown source_map {self.source_map!r}; known: {", ".join(SOURCE_MAPS)}'
                )

    def to_dict(self) -> dict:
        d = asdict(self)
        if isinstance(d['tsl_zoom'], tuple):
            d['tsl_zoom'] = list(d['tsl_zoom'])
        for key in _PAIRS:
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> 'AdaptConfig':
        """A recipe file, with ``overrides`` (non-``None`` values) applied on top.

        ``${VSDA_DATA_DIR}`` in the file's values is expanded (see
        :func:`~vsda_ros.adaptation.recipe_file.expand_data_dir`);
        values that ``overrides`` replace are not looked at.

        Raises ``ValueError`` for unknown keys, and for a value that refers to the data folder
        when there is none or whose expanded path does not exist (naming the key and the path).
        """
        data = read_recipe(path, {f.name for f in fields(cls)}, overrides)
        return cls(**data)

    def __post_init__(self) -> None:
        # YAML gives lists; the pairs are tuples (ints, except the intensity range)
        for key in _PAIRS:
            value = getattr(self, key)
            if value is not None:
                cast = float if key == 'weather_intensity' else int
                setattr(self, key, tuple(cast(v) for v in value))
        self.source_map = self.source_map or None  # '' (a CLI flag) = no map
        if not isinstance(self.tsl_zoom, (int, float)):
            zoom = tuple(float(v) for v in self.tsl_zoom)
            if len(zoom) != 2:
                raise ValueError(f'tsl_zoom must be a factor or (x, y), got {zoom}')
            self.tsl_zoom = (zoom[0], zoom[1])
        self.freeze = list(self.freeze or [])
        self.weather_kinds = list(self.weather_kinds or [])


_PAIRS = ('crop', 'frame_size', 'tsl_crop', 'weather_intensity', 'val_size')
