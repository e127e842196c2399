"""The published networks vsda_ros knows by name: where their weights come from and how
they are found and verified.

Each :class:`ZooEntry` says where the weights come from (public raw URL, sha256, file name in
``VSDA_DATA_DIR/weights``) and what the network needs (:class:`ModelMeta`). Weights are found in
this order: an explicit path → ``VSDA_DATA_DIR/weights`` → ``VSDA_CACHE_DIR`` → download.
Weights found in ``VSDA_DATA_DIR`` or the cache are checked against the entry's sha256 (once per
file version: see :func:`vsda_ros.fetch.file_sha256`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vsda_ros.models.base import ModelMeta
from vsda_ros.models.labels import (
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
)
from vsda_ros.models.safe_load import ModelLoadError, safe_torch_load
from vsda_ros.paths import cache_dir, data_dir, vsda_command

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


def _espnet_meta(
    name: str, mean_bgr: tuple[float, float, float], std_bgr: tuple[float, float, float], **kw: Any
) -> ModelMeta:
    # ESPNet: (BGR·255 − mean) / std / 255  ==  (BGR − mean/255) / std  on input in [0, 1].
    b, g, r = mean_bgr
    return ModelMeta(
        name=name,
        arch='espnet',
        mean=(b / 255.0, g / 255.0, r / 255.0),
        std=std_bgr,
        bgr=True,
        **kw,
    )


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry(
            name='espnetv2-cityscapes',
            url='https://github.com/sacmehta/EdgeNets/raw/2b232d3f/model/segmentation/'
            'model_zoo/espnetv2/espnetv2_s_2.0_city_1024x512.pth',
            sha256='a72d59699801c7ce8e8b89a53af9097eaaa60dc12180ecde86fd700ba1222fe8',
            filename='espnetv2_s_2.0_city_1024x512.pth',
            meta=ModelMeta(
                name='espnetv2-cityscapes',
                arch='espnetv2',
                arch_args={'num_outputs': 20},
                classes=CITYSCAPES_CLASSES,
                palette=CITYSCAPES_PALETTE,
                mean=IMAGENET_MEAN,
                std=IMAGENET_STD,
                bgr=False,
                native_size=(1024, 512),
            ),
        ),
        ZooEntry(
            name='espnet-cityscapes',
            url='https://github.com/sacmehta/ESPNet/raw/afe71c38/pretrained/decoder/'
            'espnet_p_2_q_8.pth',
            sha256='343b0e77e8545d36113c4f3efbf1ee349256f25c97c9f9d5ddefe45f2f49763e',
            filename='espnet_p2q8_cityscapes.pth',
            meta=_espnet_meta(
                'espnet-cityscapes',
                (72.39, 82.91, 73.16),
                (45.32, 46.15, 44.91),
                arch_args={'num_outputs': 20, 'b1_skip': False},
                classes=CITYSCAPES_CLASSES,
                palette=CITYSCAPES_PALETTE,
                native_size=(1024, 512),
            ),
        ),
        ZooEntry(
            name='espnet-camvid',
            url='https://github.com/sacmehta/ESPNet/raw/afe71c38/pretrained/decoder/'
            'espnet_p_2_q_8_camvid.pth',
            sha256='7d354a257170322086dcd4c1e89a482454cf2c9d30b085e70883878dd59301af',
            filename='espnet_p2q8_camvid.pth',
            meta=_espnet_meta(
                'espnet-camvid',
                (110.33, 108.41, 105.03),
                (72.13, 72.69, 69.90),
                arch_args={'num_outputs': 12, 'b1_skip': True},
                classes=CAMVID_CLASSES,
                palette=CAMVID_PALETTE,
                native_size=(480, 360),
            ),
        ),
    ]
}


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
            f'({cached.parent}); run `{vsda_command("fetch " + entry.name)}`'
        )
    return fetch_file(entry.url, cached, entry.sha256, progress=progress)


def load_state_dict(path: str | Path) -> dict:
    """Read a plain state_dict (``weights_only`` — never unpickles code).

    Raises:
        FileNotFoundError: no such file.
        ModelLoadError: unreadable, corrupt or unsafe (pickled objects) file, or not a dict.
    """
    state = safe_torch_load(path, 'weights file')
    if not isinstance(state, dict):
        raise ModelLoadError(
            f'weights file {path}: not a state_dict (a dict of tensors), got {type(state).__name__}'
        )
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
    fix = (
        f'replace it with a good copy, or delete it and run `vsda fetch {entry.name}` '
        'to download one into the cache'
        if in_data
        else f'run `vsda fetch {entry.name}` to download it again'
    )
    raise ModelLoadError(
        f'weights file {path} is corrupt or not the published {entry.name} '
        f'weights: sha256 {actual}, expected {entry.sha256}; {fix}'
    )
