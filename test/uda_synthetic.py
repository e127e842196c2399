"""Tiny synthetic data and models for the adaptation tests (no real data, no downloads).

A "scene" is a wide canvas of class regions (CamVid ids: 0 sky, 1 building, 3 road, 8 car, 11
void) with a distinct colour per class plus smooth texture (so optical flow has something to
track); a sequence is a camera panning across it, ``step`` pixels per frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from vsda_ros.models.base import ModelMeta, SegmentationModel

COLOURS = {0: (150, 170, 200), 1: (140, 60, 40), 3: (90, 90, 100), 8: (30, 40, 160), 11: (0, 0, 0)}


def texture(
    rng: np.random.Generator, h: int, w: int, sigma: float = 2.0, amp: float = 60.0
) -> np.ndarray:
    noise = rng.normal(0, 1, (h, w)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma)
    return noise / (noise.std() + 1e-6) * amp


def canvas(seed: int, h: int = 72, w: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(H×W×3 uint8 image, H×W uint8 CamVid labels) of one synthetic scene."""
    rng = np.random.default_rng(seed)
    label = np.full((h, w), 3, np.uint8)
    label[: h // 3] = 0
    for _ in range(6):
        cls = int(rng.choice([1, 8]))
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(h // 4, h - 15))
        label[y0 : y0 + int(rng.integers(8, 20)), x0 : x0 + int(rng.integers(10, 30))] = cls
    label[-3:, :5] = 11
    lut = np.zeros((256, 3), np.float32)
    for k, c in COLOURS.items():
        lut[k] = c
    img = lut[label] + texture(rng, h, w)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8), label


def write_sequence(
    folder: Path,
    n: int,
    size: tuple[int, int] = (96, 72),
    step: int = 2,
    prefix: str = 'seq',
    seed: int = 0,
    labels: Path | None = None,
) -> None:
    """``n`` frames ``<prefix>_<k>.png`` panning ``step`` px per frame; labels (CamVid layout,
    same names) into ``labels`` when given."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    img, lab = canvas(seed, h, w + step * n + 1)
    for k in range(n):
        name = f'{prefix}_{k + 1:05d}.png'
        cv2.imwrite(
            str(folder / name),
            cv2.cvtColor(np.ascontiguousarray(img[:, k * step : k * step + w]), cv2.COLOR_RGB2BGR),
        )
        if labels is not None:
            labels.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(labels / name), np.ascontiguousarray(lab[:, k * step : k * step + w]))


class TinyNet(nn.Module):
    """conv3×3 → BN → ReLU → conv1×1: the model contract at toy size."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, classes, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv1(x)))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.conv2(f)


def tiny_model(classes: int = 4, seed: int = 0) -> SegmentationModel:
    torch.manual_seed(seed)
    meta = ModelMeta(
        name='tiny',
        arch='tiny',
        classes=[f'c{i}' for i in range(classes)],
        palette=[(i, i, i) for i in range(classes)],
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    model = SegmentationModel(TinyNet(classes), meta)
    with torch.no_grad():  # non-trivial frozen statistics
        model.net.bn.running_mean.uniform_(-0.2, 0.2)
        model.net.bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


def random_espnet_checkpoint(path: Path) -> Path:
    """A randomly initialised CamVid ESPNet (the real architecture) as a vsda checkpoint."""
    from vsda_ros.models.checkpoint import save_checkpoint
    from vsda_ros.models.zoo import ZOO, build

    torch.manual_seed(0)
    return save_checkpoint(build(ZOO['espnet-camvid'].meta).eval(), path)
