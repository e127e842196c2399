"""``source``: supervised fine-tuning on labelled source frames (cross-entropy, ignore 255).

The baseline every adaptation method is compared with, and the source term the others add when
a source set is given. It needs no target video.
"""

from __future__ import annotations

import torch

from vsda_ros.adaptation.uda.common import NetworkRecipe


class SourceRecipe(NetworkRecipe):
    """Cross-entropy on ``batch`` random source crops per step."""

    name = 'source'
    needs_target = False

    def clip_length(self) -> int:
        return 0

    def loss(self, clips, source) -> tuple[torch.Tensor, dict]:  # noqa: ARG002
        if source is None:
            raise ValueError('the source recipe needs a labelled source batch')
        return self.source_term(source)
