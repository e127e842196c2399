"""Accuracy of a backend/precision against the torch reference on real frames.

Used by ``vsda export`` (the check printed and recorded in the export's sidecar, which
``precision: auto`` reads) and ``vsda bench model``. The limits (issue: accuracy limits):
fp32 backends within 0.05 mIoU of torch and ≥ 99.9 % argmax agreement; bf16 and int8 within
1.0 mIoU. Without labels mIoU cannot be checked, so bf16/int8 are then *not* within the limits
(``precision: auto`` never picks them on agreement alone).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vsda_ros.evaluation.metrics import ConfusionMatrix


@dataclass
class Limits:
    """Accuracy limits, in mIoU points (percent) and percent of pixels."""

    fp32_miou: float = 0.05
    fp32_agreement: float = 99.9
    low_miou: float = 1.0


def measure(seg, ref, images: list[np.ndarray], labels: list[np.ndarray | None] | None = None,
            clip=None) -> dict:
    """Run ``seg`` and the torch reference ``ref`` (both :class:`Segmenter`) on ``images``.

    Returns ``max_logit_error`` (max |logit − torch logit| at the network size),
    ``argmax_agreement`` (percent of output pixels with torch's label), and with labels
    (``clip``: a :class:`~vsda_ros.evaluation.temporal.Clip` for the class mapping) ``miou``,
    ``ref_miou`` and ``per_class_iou`` / ``ref_per_class_iou`` (percent, ``None`` = absent).
    """
    err, same, total = 0.0, 0, 0
    cms = None
    if clip is not None and labels is not None:
        cms = (ConfusionMatrix(clip.num_classes, clip.ignore_index),
               ConfusionMatrix(clip.num_classes, clip.ignore_index))
    with torch.inference_mode():
        for i, image in enumerate(images):
            x = ref.preprocess(image)
            a, b = ref.logits(x), seg.logits(x)
            err = max(err, float((a - b.to(a.device)).abs().max()))
            la, _ = ref.postprocess(a, image.shape[:2])
            lb, _ = seg.postprocess(b, image.shape[:2])
            same += int((la == lb).sum())
            total += la.size
            if cms is not None and labels[i] is not None:
                cms[0].update(clip.to_label_space(lb), labels[i])
                cms[1].update(clip.to_label_space(la), labels[i])
    out = {'max_logit_error': err, 'argmax_agreement': 100.0 * same / max(total, 1)}
    if cms is not None:
        names = clip.class_names
        for key, cm in (('', cms[0]), ('ref_', cms[1])):
            iou = cm.iou() * 100
            out[f'{key}miou'] = cm.miou() * 100
            out[f'{key}per_class_iou'] = {n: (None if np.isnan(v) else float(v))
                                          for n, v in zip(names, iou)}
    return out


def within_limits(precision: str, result: dict, limits: Limits | None = None
                  ) -> tuple[bool, str]:
    """Whether ``result`` (from :func:`measure`) is within the limits for ``precision``, and a
    one-line reason."""
    limits = limits or Limits()
    agree = result['argmax_agreement']
    d = None if 'miou' not in result else result['miou'] - result['ref_miou']
    if precision == 'fp32':
        ok = agree >= limits.fp32_agreement and (d is None or abs(d) <= limits.fp32_miou)
        return ok, (f'agreement {agree:.3f} % (≥ {limits.fp32_agreement}), ΔmIoU '
                    + ('n/a' if d is None else f'{d:+.3f}') + f' (±{limits.fp32_miou})')
    if d is None:
        return False, (f'agreement {agree:.2f} %; no labels, so the mIoU limit '
                       f'(±{limits.low_miou}) is unchecked: not validated')
    return abs(d) <= limits.low_miou, (f'ΔmIoU {d:+.3f} (limit ±{limits.low_miou}), '
                                       f'agreement {agree:.2f} %')
