"""Segmentation metrics from a confusion matrix, and latency percentiles."""

from __future__ import annotations

import numpy as np

#: The ignore value of the Cityscapes train-id convention, accepted in every label set.
IGNORE_255 = 255


class LabelError(ValueError):
    """A label holds ids that are neither a class nor an ignore value (a wrong label set or a
    damaged file: silently skipping them would score a different set of pixels)."""


def unknown_label_ids(label: np.ndarray, num_classes: int, ignore_index: int) -> list[int]:
    """The values in ``label`` that are neither a class id (0..num_classes-1) nor an ignore
    value (``ignore_index``, or 255); sorted, at most 8."""
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != ignore_index) & (values != IGNORE_255)]
    bad = np.concatenate([values[values < 0], bad])
    return [int(v) for v in bad[:8]]


def check_label_ids(label: np.ndarray, num_classes: int, ignore_index: int, where: str) -> None:
    """Raise :class:`LabelError` naming ``where`` (the label file or frame) and the values when
    ``label`` holds ids that are neither classes nor ignore values."""
    bad = unknown_label_ids(label, num_classes, ignore_index)
    if bad:
        raise LabelError(
            f'{where}: label ids {", ".join(map(str, bad))} are neither classes '
            f'(0..{num_classes - 1}) nor an ignore value ({ignore_index} or {IGNORE_255}); '
            "a label set other than the model's? (--map maps a model's classes onto "
            'another set; --allow-unknown-labels scores them as ignored and counts them)'
        )


class ConfusionMatrix:
    """Accumulates a C×C confusion matrix (rows = ground truth, columns = prediction).

    Pixels whose label is ``ignore_index`` or 255 are skipped. A label id that is neither a
    class nor an ignore value raises :class:`LabelError`, unless ``allow_unknown``: then those
    pixels are skipped too and counted in :attr:`unknown_pixels`. Predictions outside 0..C-1
    raise ``ValueError`` (they mean a wrong class mapping).
    """

    def __init__(
        self, num_classes: int, ignore_index: int = 255, allow_unknown: bool = False
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.allow_unknown = allow_unknown
        self.unknown_pixels = 0
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray, where: str = 'label') -> None:
        """Add one H×W prediction and its H×W label (any integer dtype); ``where`` names the
        label in errors (its file)."""
        if pred.shape != label.shape:
            raise ValueError(f'prediction {pred.shape} and label {label.shape} differ in shape')
        if not self.allow_unknown:
            check_label_ids(label, self.num_classes, self.ignore_index, where)
        else:
            label = np.asarray(label)
            self.unknown_pixels += int(
                np.count_nonzero(
                    (label < 0)
                    | (
                        (label >= self.num_classes)
                        & (label != self.ignore_index)
                        & (label != IGNORE_255)
                    )
                )
            )
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


def percentiles_ms(
    samples: list[float] | np.ndarray, qs: tuple[int, ...] = (50, 95, 99)
) -> dict[str, float]:
    """``{'p50': …, 'p95': …}`` of millisecond samples (NaN when empty)."""
    arr = np.asarray(samples, dtype=np.float64)
    return {f'p{q}': (float(np.percentile(arr, q)) if arr.size else float('nan')) for q in qs}
