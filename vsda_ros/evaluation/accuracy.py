"""Accuracy of a backend/precision against the torch reference on real frames.

Used by ``vsda export`` (the check printed and recorded in the export's sidecar, which
``precision: auto`` reads) and ``vsda bench model``. The limits (issue: accuracy limits):
fp32 backends within 0.05 mIoU of torch and ≥ 99.9 % argmax agreement; bf16 and int8 within
1.0 mIoU. Without labels mIoU cannot be checked, so bf16/int8 are then *not* within the limits
(``precision: auto`` never picks them on agreement alone). :class:`Limits` and
:func:`within_limits` are :mod:`vsda_ros.inference.evidence`'s (``backend: auto`` uses them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

# the limits live in the inference core: backend auto decides on the same ones
from vsda_ros.inference.evidence import Limits, within_limits  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from vsda_ros.evaluation.temporal import Clip
    from vsda_ros.inference.segmenter import Segmenter


class Reference:
    """The torch reference's outputs on a set of frames, computed once and shared by every
    backend checked: labels of every frame, logits of the first ``keep_logits`` (for the max
    logit error; all logits of a long clip would take GBs)."""

    def __init__(self, ref: Segmenter, images: list[np.ndarray], keep_logits: int = 8) -> None:
        self.ref, self.images = ref, images
        self.labels: list[np.ndarray] = []
        self.logits: list[torch.Tensor] = []
        with torch.inference_mode():
            for i, image in enumerate(images):
                a = ref.logits(ref.preprocess(image))
                self.labels.append(ref.postprocess(a, image.shape[:2])[0])
                if i < keep_logits:
                    self.logits.append(a)


def measure(
    seg: Segmenter,
    ref: Segmenter,
    images: list[np.ndarray],
    labels: list[np.ndarray | None] | None = None,
    clip: Clip | None = None,
    reference: Reference | None = None,
) -> dict:
    """Run ``seg`` and the torch reference ``ref`` (both :class:`Segmenter`) on ``images``.

    Returns ``max_logit_error`` (max |logit − torch logit| at the network size, over the
    reference's kept frames), ``argmax_agreement`` (percent of output pixels with torch's
    label), and with labels (``clip``: a :class:`~vsda_ros.evaluation.temporal.Clip` for the
    class mapping) ``miou``, ``ref_miou`` and ``per_class_iou`` / ``ref_per_class_iou``
    (percent, ``None`` = absent). ``reference``: torch's outputs on the same ``images``
    (computed here when ``None``).
    """
    reference = reference or Reference(ref, images)
    err, same, total = 0.0, 0, 0
    cms = None
    if clip is not None and labels is not None:
        cms = (clip.confusion_matrix(), clip.confusion_matrix())
    with torch.inference_mode():
        for i, image in enumerate(images):
            b = seg.logits(seg.preprocess(image))
            if i < len(reference.logits):
                a = reference.logits[i]
                err = max(err, float((a - b.to(a.device)).abs().max()))
            la = reference.labels[i]
            lb, _ = seg.postprocess(b, image.shape[:2])
            same += int((la == lb).sum())
            total += la.size
            if cms is not None:
                assert clip is not None and labels is not None  # cms only with both
                label = labels[i]
                if label is not None:
                    cms[0].update(clip.to_label_space(lb), label)
                    cms[1].update(clip.to_label_space(la), label)
    out: dict[str, Any] = {'max_logit_error': err, 'argmax_agreement': 100.0 * same / max(total, 1)}
    if cms is not None:
        assert clip is not None  # cms only with a clip
        names = clip.class_names
        for key, cm in (('', cms[0]), ('ref_', cms[1])):
            iou = cm.iou() * 100
            out[f'{key}miou'] = cm.miou() * 100
            out[f'{key}per_class_iou'] = {
                n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou, strict=False)
            }
    return out
