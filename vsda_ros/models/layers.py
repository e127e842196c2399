"""Small building blocks shared by the ESPNet family."""

from __future__ import annotations

import torch
from torch import nn


class BR(nn.Module):
    """BN → PReLU (keys ``bn``, ``act``); B×C×H×W → B×C×H×W."""

    def __init__(self, ch: int, eps: float) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, eps=eps)
        self.act = nn.PReLU(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))
