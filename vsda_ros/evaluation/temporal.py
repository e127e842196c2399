"""Temporal evaluation on a labelled clip: strategy runs, the PDA curve, cost and consistency.

- :func:`evaluate_strategy` runs one strategy over the clip in order (as the node would) and
  scores every frame: mIoU, per-class IoU, temporal consistency (TC), latency, keyframe ratio.
- :func:`pda_curve` is DAVSS's propagation-distance analysis: for every start frame s the
  keyframe is s and features are propagated frame by frame to s+1 … s+D; the prediction at
  distance d is scored against the label of frame s+d, giving mIoU(d).
- :func:`temporal_consistency` is ETC-style TC: the mean over consecutive pairs of the mean IoU
  between the prediction at t and the prediction at t+1 warped back onto t with optical flow
  (OpenCV DIS, ``medium``), computed over all pixels (no labels needed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from vsda_ros.evaluation.metrics import (
    IGNORE_255,
    ConfusionMatrix,
    check_label_ids,
    percentiles_ms,
)
from vsda_ros.models.base import ModelMeta
from vsda_ros.temporal.flow import DISFlow
from vsda_ros.temporal.strategy import Strategy


@dataclass
class Clip:
    """A labelled clip in time order: images H×W×3 uint8 RGB, labels H×W uint8 (or ``None``).

    Attributes:
        fps: frame rate, used for the stamps handed to the strategies.
        ignore_index: label value to skip (CamVid void = 11).
        num_classes: number of label classes.
        class_names: names of the label classes.
        mapping: optional LUT from model class ids to label class ids.
        palette: RGB colour of each label class (for plots).
        unknown_label_pixels: label pixels whose id is neither a class nor an ignore value
            (read with ``allow_unknown_labels``; scored as ignored).
        allow_unknown_labels: score such ids as ignored instead of raising.
    """

    images: list[np.ndarray]
    labels: list[np.ndarray | None]
    fps: float
    num_classes: int
    class_names: list[str]
    ignore_index: int = 255
    mapping: np.ndarray | None = None
    palette: list[tuple[int, int, int]] | None = None
    unknown_label_pixels: int = 0
    allow_unknown_labels: bool = False

    def to_label_space(self, pred: np.ndarray) -> np.ndarray:
        """H×W model class ids → H×W label class ids (``mapping``)."""
        return self.mapping[pred] if self.mapping is not None else pred

    def confusion_matrix(self) -> ConfusionMatrix:
        """An empty confusion matrix over the label classes, with the clip's ignore rule."""
        return ConfusionMatrix(
            self.num_classes, self.ignore_index, allow_unknown=self.allow_unknown_labels
        )


def temporal_consistency(
    preds: list[np.ndarray], images: list[np.ndarray], num_classes: int, flow: DISFlow | None = None
) -> float:
    """TC in percent: mean IoU of pred[t] and flow-warped pred[t+1] over consecutive pairs.

    Pixels that flow out of the image are left out. NaN for fewer than two frames.
    """
    flow = flow or DISFlow('medium')
    scores = []
    for t in range(len(preds) - 1):
        f = flow(images[t + 1], images[t])  # images[t](p) ≈ images[t+1](p + f(p))
        h, w = f.shape[:2]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        mx, my = gx + f[..., 0], gy + f[..., 1]
        warped = cv2.remap(
            preds[t + 1], mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=255
        )
        valid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        cm = ConfusionMatrix(num_classes, ignore_index=255)
        cm.update(preds[t], np.where(valid, warped, 255))
        scores.append(cm.miou())
    return float(np.mean(scores) * 100) if scores else float('nan')


def _score(cm: ConfusionMatrix, names: list[str]) -> dict:
    iou = cm.iou() * 100
    return {
        'miou': cm.miou() * 100,
        'pixel_accuracy': cm.pixel_accuracy() * 100,
        'per_class_iou': {
            n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou, strict=False)
        },
    }


def evaluate_strategy(
    strategy: Strategy,
    clip: Clip,
    progress: bool = True,
    desc: str = '',
    flow_images: list[np.ndarray] | None = None,
) -> dict:
    """Run ``strategy`` over the clip in order and score it.

    ``flow_images`` are the frames TC's optical flow is computed on (default: the clip's own);
    a weather run passes the clean frames, so TC measures the predictions, not the flow's
    trouble with fog.

    Returns ``miou``, ``per_class_iou``, ``pixel_accuracy`` (when labels exist), ``tc``,
    ``latency_ms`` {p50, p95, p99} (whole ``step``), ``stage_ms``, ``fps``, ``frames``,
    ``keyframe_ratio``, ``latency_samples`` (ms per frame) and ``predictions`` (label-space
    masks), the last two for the caller's plots.
    """
    strategy.reset()
    cm = clip.confusion_matrix()
    preds: list[np.ndarray] = []
    latency: list[float] = []
    stages: dict[str, list[float]] = {}
    keys = 0
    t_start = time.perf_counter()
    for i, img in enumerate(
        tqdm(
            clip.images, desc=desc or strategy.name, unit='frame', disable=not progress, leave=False
        )
    ):
        t0 = time.perf_counter()
        seg = strategy.step(img, stamp=i / clip.fps)
        latency.append((time.perf_counter() - t0) * 1e3)
        for k, v in seg.timings_ms.items():
            stages.setdefault(k, []).append(v)
        keys += int(seg.keyframe)
        pred = clip.to_label_space(seg.labels)
        preds.append(pred)
        label = clip.labels[i]
        if label is not None:
            cm.update(pred, label)
    wall = time.perf_counter() - t_start
    out = {
        'strategy': strategy.name,
        'frames': len(preds),
        'latency_ms': percentiles_ms(latency, (50, 95, 99)),
        'stage_ms': {k: percentiles_ms(v, (50, 95)) for k, v in stages.items()},
        'fps': len(preds) / wall if wall > 0 else None,
        'keyframe_ratio': keys / max(1, len(preds)),
        'latency_samples': latency,
        'tc': temporal_consistency(preds, flow_images or clip.images, clip.num_classes),
    }
    if cm.matrix.sum():
        out.update(_score(cm, clip.class_names))
    out['predictions'] = preds
    return out


def pda_curve(
    strategy: Strategy, clip: Clip, max_distance: int = 9, progress: bool = True, desc: str = 'pda'
) -> dict:
    """mIoU at propagation distance d = 0 … ``max_distance`` (d = 0: the keyframes themselves).

    Needs a strategy with keyframes (``keyframe``); every start frame s < N−1 is a keyframe and
    the clip is propagated from it. Also returns the step times of keyframes and propagated
    frames: ``{'miou': {d: …}, 'frames': {d: n}, 'key_ms': [...], 'nonkey_ms': [...],
    'distortion': {d: mean D or None}}``.
    """
    n = len(clip.images)
    cms = {d: clip.confusion_matrix() for d in range(max_distance + 1)}
    counts = {d: 0 for d in cms}
    dist: dict[int, list[float]] = {d: [] for d in range(max_distance + 1)}
    key_ms: list[float] = []
    nonkey_ms: list[float] = []
    saved = strategy.config.keyframe_interval
    strategy.config.keyframe_interval = max_distance + 1
    try:
        for s in tqdm(range(n - 1), desc=desc, unit='start', disable=not progress, leave=False):
            strategy.reset()
            for d in range(0, min(max_distance, n - 1 - s) + 1):
                t0 = time.perf_counter()
                seg = strategy.step(clip.images[s + d], stamp=(s + d) / clip.fps)
                (key_ms if seg.keyframe else nonkey_ms).append((time.perf_counter() - t0) * 1e3)
                if seg.keyframe != (d == 0):
                    raise RuntimeError(f'unexpected keyframe decision at s={s}, d={d}')
                counts[d] += 1
                if seg.distortion is not None:
                    dist[d].append(seg.distortion)
                label = clip.labels[s + d]
                if label is not None:
                    cms[d].update(clip.to_label_space(seg.labels), label)
    finally:
        strategy.config.keyframe_interval = saved
    return {
        'miou': {d: cms[d].miou() * 100 for d in cms},
        'frames': counts,
        'key_ms': key_ms,
        'nonkey_ms': nonkey_ms,
        'distortion': {d: (float(np.mean(v)) if v else None) for d, v in dist.items()},
    }


def per_frame_at_distance(preds: list[np.ndarray], clip: Clip, max_distance: int = 9) -> dict:
    """Per-frame mIoU on exactly the frames the PDA curve scores at each distance d."""
    n = len(clip.images)
    out = {}
    for d in range(max_distance + 1):
        cm = clip.confusion_matrix()
        for s in range(n - 1):
            label = clip.labels[s + d] if s + d < n else None
            if label is not None:
                cm.update(preds[s + d], label)
        out[d] = cm.miou() * 100
    return out


def load_clip(
    source: str,
    labels: str | None,
    meta: ModelMeta,
    label_map: str | None = None,
    fps: float = 15.0,
    max_frames: int | None = None,
    topic: str | None = None,
    allow_unknown_labels: bool = False,
) -> Clip:
    """Any frame source (+ labels) as a :class:`Clip`, in time order.

    ``source`` is an image folder (``labels`` = a label folder, CamVid or Cityscapes layout), a
    video file, or a rosbag2 (``topic`` = its image topic; ``labels`` = a label topic). See
    :func:`vsda_ros.data.labelled.open_labelled`. ``label_map`` (e.g. ``cityscapes-camvid``)
    maps the model's classes to the labels'; without it the labels use the model's class ids.
    Label values equal to the number of classes (CamVid's void = 11) or 255 are ignored; any
    other value outside the classes is an error (``LabelError`` naming the frame and the
    values) unless ``allow_unknown_labels``, which scores them as ignored
    (:attr:`Clip.unknown_label_pixels` counts them).

    Raises ``FileNotFoundError`` for a missing source or label file, ``ValueError`` for an
    unknown map or one that does not fit the model, an empty source, an unknown topic, or
    (:class:`~vsda_ros.evaluation.metrics.LabelError`) unknown label ids.
    """
    from vsda_ros.data.labelled import open_labelled
    from vsda_ros.models.zoo import label_mapping, label_palette

    mapping, names = label_mapping(label_map, meta)
    images: list[np.ndarray] = []
    labs: list[np.ndarray | None] = []
    stamps: list[float] = []
    unknown = 0
    for frame, label in open_labelled(
        source, topic=topic, labels=labels, fps=fps, max_frames=max_frames
    ):
        if label is not None and not allow_unknown_labels:
            check_label_ids(
                label,
                len(names),
                len(names),
                f'label of frame {frame.name or len(images)} ({labels or source})',
            )
        elif label is not None:
            unknown += int(np.count_nonzero((label > len(names)) & (label != IGNORE_255)))
        images.append(frame.image)
        labs.append(label)
        stamps.append(frame.stamp)
    if not images:
        raise ValueError(f'no frames in {source}')
    if len(stamps) > 1 and stamps[-1] > stamps[0]:  # a bag or video knows its own rate
        fps = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return Clip(
        images,
        labs,
        fps,
        len(names),
        names,
        ignore_index=len(names),
        mapping=mapping,
        palette=label_palette(label_map, meta),
        unknown_label_pixels=unknown,
        allow_unknown_labels=allow_unknown_labels,
    )
