"""Segmentation metrics from a confusion matrix, and latency percentiles."""
from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """Accumulates a C×C confusion matrix (rows = ground truth, columns = prediction).

    Pixels whose label is ``ignore_index`` (or outside 0..C-1) are skipped; predictions outside
    0..C-1 raise ``ValueError`` (they mean a wrong class mapping).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add one H×W prediction and its H×W label (any integer dtype)."""
        if pred.shape != label.shape:
            raise ValueError(f'prediction {pred.shape} and label {label.shape} differ in shape')
        pred = pred.astype(np.int64).ravel()
        label = label.astype(np.int64).ravel()
        keep = (label != self.ignore_index) & (label >= 0) & (label < self.num_classes)
        pred, label = pred[keep], label[keep]
        if pred.size and (pred.min() < 0 or pred.max() >= self.num_classes):
            raise ValueError(f'prediction has class ids outside 0..{self.num_classes - 1}')
        n = self.num_classes
        self.matrix += np.bincount(label * n + pred, minlength=n * n).reshape(n, n)

    def iou(self) -> np.ndarray:
        """Per-class IoU in [0, 1]; NaN for classes absent from both labels and predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        """Mean IoU over classes that occur (NaN-skipping), in [0, 1]."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float('nan')

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float('nan')


def percentiles_ms(samples: list[float] | np.ndarray, qs=(50, 95, 99)) -> dict[str, float]:
    """``{'p50': …, 'p95': …}`` of millisecond samples (NaN when empty)."""
    arr = np.asarray(samples, dtype=np.float64)
    return {f'p{q}': (float(np.percentile(arr, q)) if arr.size else float('nan')) for q in qs}
