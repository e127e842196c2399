"""Class scores → labels and confidence: the two per-pixel reductions over C every frame needs.

At 1024×512 with 19 classes the scores are 40 MB of float32; reading them for the argmax and
again for the max softmax was the larger half of the node's time outside the network
(docs/design/node.md, "Publish path"). :class:`ScoreReducer` runs both reductions as a small
argmax in numpy/OpenCV (:func:`argmax_first`) and the confidence's exponentials as a small
OpenVINO graph (built here, op by op, not exported from a model) when OpenVINO is installed,
otherwise in torch. Every backend and
every temporal strategy goes through it (via ``Segmenter.postprocess``), live and offline, so
the masks are the same computation on both sides.

Values: ``labels`` = the index of the first maximum over C (``torch.max(dim=0)``'s, ties to
the lowest index); ``confidence`` = round(255 / Σ_c exp(s_c − max_c s_c)), i.e. max softmax ×
255 rounded half to even. The labels are the same on every engine; the OpenVINO and torch
confidences differ by at most 1 on a few pixels per million (the exp implementations), which
is why one process never mixes them. NaN scores (a broken model) make :meth:`labels` return
``None`` and the caller use torch's own max, which returns the NaN's index.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)

#: (labels H×W uint8, best H×W float32), or None when a score is NaN
LabelsAndBest = tuple[np.ndarray, np.ndarray]


def argmax_first(scores: np.ndarray) -> LabelsAndBest | None:
    """C×H×W float32 (C < 256) → (labels, best): H×W uint8 index of the first maximum over C
    and H×W float32 maximum, the values ``torch.max(dim=0)`` gives; ``None`` when a score is
    NaN (the caller falls back to torch, which returns the NaN's index).

    The maximum comes from C−1 element-wise passes (exact), the index from one float compare
    per channel and a running minimum of the matching channel ids: memory-bound passes,
    several times faster than torch's index-tracking reduction over the outer dimension.
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


def max_softmax_255(scores: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """C×H×W scores and their H×W maximum → H×W round(max softmax × 255) (float).

    max softmax = 1 / Σ_c exp(l_c − max_c l_c), so no C×H×W softmax is materialised. The
    exponential runs in place on the one C×H×W difference (``torch.exp(scores - best)``
    allocated and filled a second one). Row-chunked variants were slower on a busy two-core
    machine (every chunk is a parallel region waiting for the second core). The torch engine
    of :class:`ScoreReducer`; the OpenVINO one computes the same expression as one graph.
    """
    total = (scores - best).exp_().sum(dim=0)
    return total.reciprocal_().mul_(255.0).round_()


def _openvino_confidence(threads: int) -> Any | None:
    """The compiled confidence reduction (dynamic C×H×W float32 scores, H×W float32 maximum
    → H×W uint8), or ``None`` without OpenVINO (or when it cannot compile it here: logged)."""
    try:
        import openvino as ov
        import openvino.opset13 as op
    except ImportError:
        return None
    try:
        scores = op.parameter([-1, -1, -1], np.float32, name='scores')
        best = op.parameter([-1, -1], np.float32, name='best')
        shifted = op.subtract(scores, op.unsqueeze(best, op.constant(np.int64(0))))
        total = op.reduce_sum(op.exp(shifted), op.constant(np.int64(0)), keep_dims=False)
        conf = op.convert(
            op.round(op.divide(op.constant(np.float32(255.0)), total), 'half_to_even'), 'u8'
        )
        model = ov.Model([conf], [scores, best], 'vsda_confidence')
        config = {'INFERENCE_NUM_THREADS': int(threads), 'INFERENCE_PRECISION_HINT': 'f32'}
        return ov.Core().compile_model(model, 'CPU', config)
    except RuntimeError as e:  # an OpenVINO that cannot build it: the torch path
        log.warning(
            'OpenVINO cannot compile the confidence reduction (%s): torch path',
            str(e).splitlines()[0][:200] if str(e) else type(e).__name__,
        )
        return None


class ScoreReducer:
    """Labels and confidence from C×H×W float32 scores (see the module docstring).

    Args:
        threads: CPU threads for the OpenVINO graph (default: torch's intra-op count).
        use_openvino: ``None`` = when installed; ``False`` = the torch path.

    Thread-safe: each thread gets its own OpenVINO infer request. The arrays returned are
    the caller's (copied out of OpenVINO's buffers).
    """

    def __init__(self, threads: int | None = None, use_openvino: bool | None = None) -> None:
        graph = (
            None
            if use_openvino is False
            else _openvino_confidence(threads or torch.get_num_threads())
        )
        if use_openvino and graph is None:
            raise RuntimeError('use_openvino=True but OpenVINO is not installed')
        self._graph = graph
        self._local = threading.local()
        self.engine = 'openvino' if graph is not None else 'torch'

    def labels(self, scores: np.ndarray) -> LabelsAndBest | None:
        """C×H×W float32 (C-contiguous, C < 256) → (labels, best), or ``None`` when a score is
        NaN: :func:`argmax_first` on every engine (an OpenVINO TopK over C measured 3-6×
        slower than it, and ignores NaN)."""
        return argmax_first(scores)

    def confidence(self, scores: np.ndarray, best: np.ndarray) -> np.ndarray:
        """C×H×W float32 scores and their H×W maximum → H×W uint8 round(max softmax × 255)."""
        if self._graph is None:
            with torch.inference_mode():
                out = max_softmax_255(torch.from_numpy(scores), torch.from_numpy(best))
                return out.to(torch.uint8).numpy()
        request = getattr(self._local, 'request', None)
        if request is None:
            request = self._local.request = self._graph.create_infer_request()
        request.infer({0: scores, 1: best})
        return request.get_output_tensor(0).data.copy()


_SHARED: dict[int, ScoreReducer] = {}
_LOCK = threading.Lock()


def shared_reducer(threads: int | None = None) -> ScoreReducer:
    """One :class:`ScoreReducer` per thread count for the process (compiling the graph costs
    tens of ms, so segmenters share it)."""
    n = int(threads or torch.get_num_threads())
    with _LOCK:
        if n not in _SHARED:
            _SHARED[n] = ScoreReducer(n)
        return _SHARED[n]
