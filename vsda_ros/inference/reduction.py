"""Class scores → labels and confidence: the two per-pixel reductions over C every frame needs.

At 1024×512 with 19 classes the scores are 40 MB of float32; reading them for the argmax and
again for the max softmax was the larger half of the node's time outside the network
(docs/design/node.md, "Publish path"). Both run here, on the caller's thread, as passes over
one H×W plane per class (the planes stay in cache; no C×H×W temporary): the argmax in numpy
and OpenCV (:func:`argmax_first`), the confidence's exponentials with OpenCV's vectorised
``cv2.exp`` (:func:`confidence_255`). Every backend and every temporal strategy goes through
them (via ``Segmenter.postprocess``), live and offline, so the masks are the same computation
on both sides.

Values: ``labels`` = the index of the first maximum over C (``torch.max(dim=0)``'s, ties to
the lowest index); ``confidence`` = round(255 / Σ_c exp(s_c − max_c s_c)), i.e. max softmax ×
255 rounded half to even. :func:`max_softmax_255` is the same expression in torch (other
devices and dtypes, NaN scores); OpenCV's and torch's exp differ in the last bits, so the two
confidences differ by at most 1 on a few pixels per million, and one process never mixes them
on one kind of input.

Measured (interleaved, 2026-12-07, random 4σ scores, allocator tuned as in the node): the
confidence at 19×512×1024 took 10.8 ms p50 with ``cv2.exp`` per class against 18.5 ms for
torch's whole-tensor ``exp`` and 20.9 ms for an OpenVINO graph of the same expression (tried
and dropped; an OpenVINO TopK for the argmax was 3-6× slower than :func:`argmax_first`).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

#: (labels H×W uint8, best H×W float32)
LabelsAndBest = tuple[np.ndarray, np.ndarray]


def argmax_first(scores: np.ndarray) -> LabelsAndBest | None:
    """C×H×W float32 (C < 256) → (labels, best): H×W uint8 index of the first maximum over C
    and H×W float32 maximum, the values ``torch.max(dim=0)`` gives; ``None`` when a score is
    NaN (the caller falls back to torch, which returns the NaN's index).

    The maximum comes from C−1 element-wise passes (exact), the index from one float compare
    per channel and a running minimum of the matching channel ids: memory-bound passes,
    several times faster than torch's index-tracking reduction over the outer dimension (a
    variant fusing both loops into one pass per class measured no faster).
    """
    best = scores[0].copy()
    for c in range(1, scores.shape[0]):
        np.maximum(best, scores[c], out=best)  # propagates NaN
    if np.isnan(best).any():  # cv2.compare does not order NaN as IEEE does
        return None
    labels = np.full(best.shape, 255, np.uint8)
    candidate = np.empty_like(labels)
    for c in range(scores.shape[0]):
        differs = cv2.compare(scores[c], best, cv2.CMP_NE)  # 255 where not the maximum
        np.bitwise_or(differs, np.uint8(c), out=candidate)  # c where the maximum, else 255
        cv2.min(labels, candidate, dst=labels)
    return labels, best


def confidence_255(scores: np.ndarray, best: np.ndarray) -> np.ndarray:
    """C×H×W float32 scores (C-contiguous) and their H×W maximum → H×W uint8
    round(255 / Σ_c exp(s_c − best)) (max softmax × 255, half to even).

    One H×W plane per class: subtract, ``cv2.exp`` in place, accumulate — on this thread, no
    C×H×W temporary. Finite scores only (the caller checked ``best`` for NaN).
    """
    total = np.zeros(best.shape, np.float32)
    plane = np.empty_like(total)
    for c in range(scores.shape[0]):
        cv2.subtract(scores[c], best, dst=plane)
        cv2.exp(plane, dst=plane)
        cv2.add(total, plane, dst=total)
    cv2.divide(255.0, total, dst=total)
    np.rint(total, out=total)
    with np.errstate(invalid='ignore'):  # ±inf scores give NaN, as torch's path does
        return total.astype(np.uint8)


def max_softmax_255(scores: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """C×H×W scores and their H×W maximum → H×W round(max softmax × 255) (float), in torch:
    the path for other devices and dtypes and for NaN scores.

    max softmax = 1 / Σ_c exp(l_c − max_c l_c), so no C×H×W softmax is materialised. The
    exponential runs in place on the one C×H×W difference (``torch.exp(scores - best)``
    allocated and filled a second one).
    """
    total = (scores - best).exp_().sum(dim=0)
    return total.reciprocal_().mul_(255.0).round_()
