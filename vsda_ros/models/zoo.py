"""The published networks vsda_ros knows by name, and how to build and load them.

Each :class:`ZooEntry` says where the weights come from (public raw URL, sha256, file name in
``VSDA_DATA_DIR/weights``) and what the network needs (:class:`ModelMeta`). Weights are found in
this order: an explicit path → ``VSDA_DATA_DIR/weights`` → ``VSDA_CACHE_DIR`` → download.
Weights found in ``VSDA_DATA_DIR`` or the cache are checked against the entry's sha256 (once per
file version: see :func:`vsda_ros.fetch.file_sha256`); every failure to load a model raises
:class:`~vsda_ros.models.safe_load.ModelLoadError` with a one-line message naming the file.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vsda_ros.models.base import ModelMeta, SegmentationModel
from vsda_ros.models.espnet import ESPNet
from vsda_ros.models.espnetv2 import ESPNetv2
from vsda_ros.models.safe_load import ModelLoadError, safe_torch_load
from vsda_ros.paths import cache_dir, data_dir

#: architecture key → constructor (keyword arguments come from ``ModelMeta.arch_args``).
ARCHITECTURES: dict[str, type[nn.Module]] = {'espnetv2': ESPNetv2, 'espnet': ESPNet}

CITYSCAPES_CLASSES = [
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
    'motorcycle', 'bicycle',
]
CITYSCAPES_PALETTE = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
]
CAMVID_CLASSES = [
    'sky', 'building', 'pole', 'road', 'pavement', 'tree', 'sign', 'fence', 'car',
    'pedestrian', 'bicyclist',
]
CAMVID_PALETTE = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
]
#: CamVid label value meaning "void" (ignored by metrics).
CAMVID_VOID = 11
#: Cityscapes train id → CamVid-11 id (see ../shared/data/MODELS.md).
CITYSCAPES_TO_CAMVID = [3, 4, 1, 1, 7, 2, 6, 6, 5, 5, 0, 9, 10, 8, 8, 8, 8, 10, 10]
#: named label mappings for ``--map``.
LABEL_MAPS: dict[str, list[int]] = {'cityscapes-camvid': CITYSCAPES_TO_CAMVID}


def label_mapping(name: str | None, meta: ModelMeta) -> tuple[np.ndarray | None, list[str]]:
    """(LUT from model class ids to label class ids, label class names) for ``LABEL_MAPS``
    entry ``name``; ``None`` → (``None``, the model's own classes).

    Raises ``ValueError`` for an unknown map or one made for another number of classes.
    """
    if not name:
        return None, list(meta.classes)
    if name not in LABEL_MAPS:
        raise ValueError(f'unknown label map {name!r}; known: {sorted(LABEL_MAPS)}')
    mapping = np.asarray(LABEL_MAPS[name], dtype=np.uint8)
    if len(mapping) != meta.num_classes:
        raise ValueError(f'label map {name} maps {len(mapping)} classes but model '
                         f'{meta.name} has {meta.num_classes}')
    return mapping, list(CAMVID_CLASSES)


def label_palette(name: str | None, meta: ModelMeta) -> list[tuple[int, int, int]]:
    """Colours of the label classes of :func:`label_mapping` (same arguments)."""
    return list(meta.palette) if not name else list(CAMVID_PALETTE)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ZooEntry:
    """A published network: provenance + metadata."""

    name: str
    url: str
    sha256: str
    filename: str
    meta: ModelMeta


def _espnet_meta(name: str, mean_bgr, std_bgr, **kw) -> ModelMeta:
    # ESPNet: (BGR·255 − mean) / std / 255  ==  (BGR − mean/255) / std  on input in [0, 1].
    return ModelMeta(name=name, arch='espnet', mean=tuple(m / 255.0 for m in mean_bgr),
                     std=tuple(std_bgr), bgr=True, **kw)


ZOO: dict[str, ZooEntry] = {
    e.name: e for e in [
        ZooEntry(
            name='espnetv2-cityscapes',
            url='https://github.com/sacmehta/EdgeNets/raw/2b232d3f/model/segmentation/'
                'model_zoo/espnetv2/espnetv2_s_2.0_city_1024x512.pth',
            sha256='a72d59699801c7ce8e8b89a53af9097eaaa60dc12180ecde86fd700ba1222fe8',
            filename='espnetv2_s_2.0_city_1024x512.pth',
            meta=ModelMeta(name='espnetv2-cityscapes', arch='espnetv2',
                           arch_args={'num_outputs': 20}, classes=CITYSCAPES_CLASSES,
                           palette=CITYSCAPES_PALETTE, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                           bgr=False, native_size=(1024, 512)),
        ),
        ZooEntry(
            name='espnet-cityscapes',
            url='https://github.com/sacmehta/ESPNet/raw/afe71c38/pretrained/decoder/'
                'espnet_p_2_q_8.pth',
            sha256='343b0e77e8545d36113c4f3efbf1ee349256f25c97c9f9d5ddefe45f2f49763e',
            filename='espnet_p2q8_cityscapes.pth',
            meta=_espnet_meta('espnet-cityscapes', (72.39, 82.91, 73.16), (45.32, 46.15, 44.91),
                              arch_args={'num_outputs': 20, 'b1_skip': False},
                              classes=CITYSCAPES_CLASSES, palette=CITYSCAPES_PALETTE,
                              native_size=(1024, 512)),
        ),
        ZooEntry(
            name='espnet-camvid',
            url='https://github.com/sacmehta/ESPNet/raw/afe71c38/pretrained/decoder/'
                'espnet_p_2_q_8_camvid.pth',
            sha256='7d354a257170322086dcd4c1e89a482454cf2c9d30b085e70883878dd59301af',
            filename='espnet_p2q8_camvid.pth',
            meta=_espnet_meta('espnet-camvid', (110.33, 108.41, 105.03), (72.13, 72.69, 69.90),
                              arch_args={'num_outputs': 12, 'b1_skip': True},
                              classes=CAMVID_CLASSES, palette=CAMVID_PALETTE,
                              native_size=(480, 360)),
        ),
    ]
}


class ModelNotFoundError(ValueError):
    """A model name that is neither in the zoo nor an existing checkpoint file."""


def build(meta: ModelMeta) -> SegmentationModel:
    """An untrained :class:`SegmentationModel` for ``meta`` (raises ``ModelNotFoundError``)."""
    try:
        arch = ARCHITECTURES[meta.arch]
    except KeyError:
        raise ModelNotFoundError(
            f'unknown architecture {meta.arch!r}; known: {sorted(ARCHITECTURES)}') from None
    meta = copy.deepcopy(meta)  # zoo entries are shared; each model owns its metadata
    return SegmentationModel(arch(**meta.arch_args), meta)


def build_for(meta: ModelMeta, where: str) -> SegmentationModel:
    """:func:`build` for a model described by a file: errors name the file.

    Raises:
        ModelLoadError: unknown architecture, or ``arch_args`` its constructor does not take.
    """
    if meta.arch not in ARCHITECTURES:
        raise ModelLoadError(f'{where}: unknown architecture {meta.arch!r}; known: '
                             f'{", ".join(sorted(ARCHITECTURES))}')
    try:
        return build(meta)
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f'{where}: meta arch_args {meta.arch_args} do not fit '
                             f'architecture {meta.arch!r}: {str(e).splitlines()[0][:120]}'
                             ) from None


def find_weights(entry: ZooEntry, download: bool = True, progress: bool = True) -> Path:
    """Local path of ``entry``'s weights: ``VSDA_DATA_DIR/weights`` → cache → download.

    Raises:
        FileNotFoundError: not found locally and ``download`` is false.
        vsda_ros.fetch.FetchError: the download failed or its sha256 did not match.
    """
    from vsda_ros.fetch import fetch_file  # local import: fetch is only needed on a miss

    ddir = data_dir()
    if ddir is not None and (ddir / 'weights' / entry.filename).is_file():
        return ddir / 'weights' / entry.filename
    cached = cache_dir() / 'weights' / entry.filename
    if cached.is_file():
        return cached
    if not download:
        raise FileNotFoundError(
            f'weights for {entry.name!r} not found in VSDA_DATA_DIR ({ddir}) or the cache '
            f'({cached.parent}); run `vsda fetch {entry.name}`')
    return fetch_file(entry.url, cached, entry.sha256, progress=progress)


def load_state_dict(path: str | Path) -> dict:
    """Read a plain state_dict (``weights_only`` — never unpickles code).

    Raises:
        FileNotFoundError: no such file.
        ModelLoadError: unreadable, corrupt or unsafe (pickled objects) file, or not a dict.
    """
    state = safe_torch_load(path, 'weights file')
    if not isinstance(state, dict):
        raise ModelLoadError(f'weights file {path}: not a state_dict (a dict of tensors), got '
                             f'{type(state).__name__}')
    return state


def verify_weights(entry: ZooEntry, path: Path) -> None:
    """Check a found weights file against ``entry.sha256`` (hashed once per file version).

    Raises:
        ModelLoadError: the digest differs; the message names the file, both digests and the
            fix (replace the file / ``vsda fetch``).
    """
    from vsda_ros.fetch import file_sha256

    try:
        actual = file_sha256(path)
    except OSError as e:
        raise ModelLoadError(f'weights file {path}: cannot read it ({e.strerror or e})') from None
    if actual == entry.sha256:
        return
    ddir = data_dir()
    in_data = ddir is not None and Path(path).resolve().parent == (ddir / 'weights').resolve()
    fix = (f'replace it with a good copy, or delete it and run `vsda fetch {entry.name}` '
           'to download one into the cache' if in_data else
           f'run `vsda fetch {entry.name}` to download it again')
    raise ModelLoadError(f'weights file {path} is corrupt or not the published {entry.name} '
                         f'weights: sha256 {actual}, expected {entry.sha256}; {fix}')


def load_model(name_or_path: str, weights: str | Path | None = None, download: bool = True,
               progress: bool = True) -> SegmentationModel:
    """A ready model (eval mode, CPU) from a zoo name or a vsda checkpoint file.

    Args:
        name_or_path: ``espnetv2-cityscapes`` etc., a shipped adapted model
            (``espnetv2-camvid-tsl``, see :mod:`vsda_ros.models.shipped`), or a path to a
            checkpoint written by :func:`vsda_ros.models.checkpoint.save_checkpoint`.
        weights: explicit weights file for a zoo model (skips the search).
        download: allow downloading missing zoo weights.

    Raises:
        ModelNotFoundError: unknown name and no such file.
        FileNotFoundError: weights missing and download disabled; a shipped file missing.
        vsda_ros.fetch.FetchError: a download failed.
        ModelLoadError: any file that cannot be used — found zoo weights whose sha256 differs
            from the published one; an unreadable, corrupt, truncated or unsafe (pickled
            objects) file; a checkpoint with missing/unknown/mistyped meta fields; weights that
            do not fit the architecture (missing/unexpected keys, shapes). One-line message
            naming the file.
    """
    if name_or_path in ZOO:
        entry = ZOO[name_or_path]
        path = Path(weights) if weights else find_weights(entry, download, progress)
        if not path.is_file():
            raise FileNotFoundError(f'weights file {path} does not exist')
        if not weights:     # found in VSDA_DATA_DIR / the cache: must be the published file
            verify_weights(entry, path)
        model = build(entry.meta)
        state = load_state_dict(path)
        _add_missing_bn_counters(model.net, state)
        from vsda_ros.models.checkpoint import check_state_dict
        check_state_dict(model.net, state, f'weights file {path}')
        model.net.load_state_dict(state, strict=True)
        model.meta.provenance.setdefault('weights_sha256', entry.sha256)
        return model.eval()
    from vsda_ros.models.shipped import SHIPPED_MODELS, verified_path
    if name_or_path in SHIPPED_MODELS:  # an adapted model shipped in vsda_ros/zoo/
        from vsda_ros.models.checkpoint import load_checkpoint
        return load_checkpoint(verified_path(SHIPPED_MODELS[name_or_path])).eval()
    if Path(name_or_path).is_file():
        from vsda_ros.models.checkpoint import load_checkpoint
        return load_checkpoint(name_or_path).eval()
    raise ModelNotFoundError(
        f'unknown model {name_or_path!r}: not a zoo name ({", ".join(model_names())}) and no '
        'such file')


def model_names() -> list[str]:
    """Every name :func:`load_model` knows: published models, then shipped adapted ones."""
    from vsda_ros.models.shipped import SHIPPED_MODELS
    return [*ZOO, *SHIPPED_MODELS]


def _add_missing_bn_counters(net: nn.Module, state: dict) -> None:
    """Older files (ESPNet v1) lack ``num_batches_tracked``; add zeros so strict loading works."""
    for key, buf in net.state_dict().items():
        if key.endswith('num_batches_tracked') and key not in state:
            state[key] = torch.zeros_like(buf)
