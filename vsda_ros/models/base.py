"""The model contract every network in vsda_ros follows, and the metadata that travels with it.

A :class:`SegmentationModel` wraps a raw network (``net``) that exposes
``forward_features(x) -> features`` and ``forward_head(features) -> logits`` on *normalised*
input. The wrapper owns the normalisation (registered buffers), drops the background/void
channel, and resizes logits back to the network input size. Temporal strategies use the split:
keyframe propagation warps ``forward_features`` output and re-runs only ``forward_head``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelMeta:
    """Everything needed to use a network's output, saved with every checkpoint.

    Attributes:
        name: zoo name or a user label.
        arch: architecture key, one of :data:`vsda_ros.models.zoo.ARCHITECTURES`.
        arch_args: keyword arguments of the architecture's constructor.
        classes: class names, in channel order; ``len(classes)`` channels are kept.
        palette: one RGB triple per class.
        mean, std: per-channel normalisation applied to the network input in [0, 1]
            *after* the optional RGB→BGR swap: ``x' = (x - mean) / std``.
        bgr: the network expects BGR channel order.
        native_size: (width, height) the network was trained at.
        provenance: free-form: base weights sha256, adaptation recipe, ...
    """

    name: str
    arch: str
    arch_args: dict = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    palette: list[tuple[int, int, int]] = field(default_factory=list)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bgr: bool = False
    native_size: tuple[int, int] = (1024, 512)
    provenance: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of output classes kept (background/void channel excluded)."""
        return len(self.classes)

    def to_dict(self) -> dict:
        """A plain, YAML/JSON/torch.save-friendly dict."""
        d = asdict(self)
        d['palette'] = [list(c) for c in self.palette]
        d['mean'], d['std'] = list(self.mean), list(self.std)
        d['native_size'] = list(self.native_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> 'ModelMeta':
        """Inverse of :meth:`to_dict`; raises ``TypeError`` on unknown keys."""
        d = dict(d)
        d['palette'] = [tuple(int(v) for v in c) for c in d.get('palette', [])]
        d['mean'] = tuple(float(v) for v in d.get('mean', (0.0, 0.0, 0.0)))
        d['std'] = tuple(float(v) for v in d.get('std', (1.0, 1.0, 1.0)))
        d['native_size'] = tuple(int(v) for v in d.get('native_size', (1024, 512)))
        return cls(**d)


class RawNet(Protocol):
    """What :class:`SegmentationModel` needs of its raw network (typing only)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, features: torch.Tensor) -> torch.Tensor: ...


def raw_net(net: nn.Module) -> RawNet:
    """``net`` seen through :class:`RawNet` (``nn.Module.__getattr__`` hides its methods)."""
    return cast(RawNet, net)


class SegmentationModel(nn.Module):
    """Normalisation + raw network + class slicing: the one model contract.

    Input everywhere is ``x``: B×3×H×W float RGB in [0, 1]. Outputs:

    - :meth:`forward_features` → decoder features just before the final classifier
      (B×F×h×w, network-specific: h, w are H/2, W/2 for the ESPNet family);
    - :meth:`forward_head` → logits B×C×H'×W' with C = ``meta.num_classes``; H'×W' is the
      head's own resolution (use :meth:`forward` for logits at the input size);
    - :meth:`forward` → logits B×C×H×W.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, net: nn.Module, meta: ModelMeta) -> None:
        super().__init__()
        self.net = net
        self.meta = meta
        self.register_buffer('mean', torch.tensor(meta.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(meta.std, dtype=torch.float32).view(1, 3, 1, 1))

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W RGB in [0, 1] → the network's normalised input."""
        if self.meta.bgr:
            x = x.flip(1)
        return (x - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W RGB in [0, 1] → B×F×h×w decoder features."""
        return raw_net(self.net).forward_features(self.normalize(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """B×F×h×w features → B×C×H'×W' logits of the kept classes."""
        return raw_net(self.net).forward_head(features)[:, : self.num_classes]

    def logits_from_features(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """B×F×h×w features → B×C×H×W logits at ``size`` = (H, W), the network input size.

        The same head + resize :meth:`forward` uses, so a keyframe equals a per-frame result.
        """
        logits = self.forward_head(features)
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=tuple(size), mode='bilinear', align_corners=True)
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W RGB in [0, 1] → B×C×H×W logits."""
        return self.logits_from_features(self.forward_features(x), (x.shape[-2], x.shape[-1]))
