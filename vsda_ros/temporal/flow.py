"""Dense optical flow (OpenCV DIS) and flow-based feature warping.

Convention used throughout (*backward* flow): for two frames ``src`` (earlier) and ``dst``
(current), ``flow`` is defined on ``dst``'s grid and

    dst(p) ≈ src(p + flow(p))          flow[..., 0] = Δx (columns), flow[..., 1] = Δy (rows)

so ``warp(src, flow)`` samples ``src`` at ``p + flow(p)`` and produces an estimate of ``dst``.
Vectors are in pixels of the grid the flow is defined on.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: name → (OpenCV DIS preset, finest pyramid scale or ``None`` for the preset's own).
#: ``balanced`` is ``ultrafast`` searched down to pyramid scale 1 instead of 2 (flow on a grid
#: 2× finer): on the CamVid val clip at the feature resolution (240×180) it keeps +2.1 mIoU at
#: propagation distance 5 over ``ultrafast`` (66.1 vs 64.0) for about 1 ms more per frame
#: (2.2 vs 1.3 ms p50; README, *Temporal strategies*).
PRESETS: dict[str, tuple[int, int | None]] = {
    'ultrafast': (cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, None),
    'balanced': (cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, 1),
    'fast': (cv2.DISOPTICAL_FLOW_PRESET_FAST, None),
    'medium': (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, None),
}


def _gray(image: np.ndarray, name: str) -> np.ndarray:
    """H×W×3 uint8 RGB → H×W uint8 gray; ``ValueError`` on any other layout or dtype."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f'{name} must be an H×W×3 RGB array, got shape {getattr(image, "shape", None)}'
        )
    if image.dtype != np.uint8:
        raise ValueError(f'{name} must be uint8, got {image.dtype}')
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


class DISFlow:
    """Backward optical flow ``src → dst`` with OpenCV's Dense Inverse Search.

    Args:
        preset: a name of :data:`PRESETS` — ``'ultrafast'``, ``'balanced'``, ``'fast'`` or
            ``'medium'`` (``ValueError`` otherwise).
        size: optional ``(w, h)``; both frames are resized (``INTER_AREA``) to it first and the
            flow is returned **at that size**, in pixels of that size (callers usually want the
            flow at the feature resolution). ``None`` = the input size.

    The OpenCV object keeps per-size buffers and is not thread-safe: use one instance per
    stream/thread.
    """

    def __init__(self, preset: str = 'balanced', size: tuple[int, int] | None = None) -> None:
        if preset not in PRESETS:
            raise ValueError(f'unknown DIS preset {preset!r}; known: {", ".join(PRESETS)}')
        if size is not None and (len(size) != 2 or min(int(size[0]), int(size[1])) < 1):
            raise ValueError(f'size must be (w, h) with positive entries, got {size!r}')
        self.preset = preset
        self.size = None if size is None else (int(size[0]), int(size[1]))
        cv_preset, finest = PRESETS[preset]
        # the legacy factory name (every OpenCV 4, the system python3-opencv included) is
        # missing from opencv-python's stubs, which only know DISOpticalFlow.create
        self._dis = cv2.DISOpticalFlow_create(cv_preset)  # type: ignore[attr-defined]
        if finest is not None:
            self._dis.setFinestScale(finest)

    def __call__(self, src_rgb: np.ndarray, dst_rgb: np.ndarray) -> np.ndarray:
        """Flow such that ``dst(p) ≈ src(p + flow(p))``.

        Args:
            src_rgb: H×W×3 uint8 RGB, the earlier frame (the one that gets warped).
            dst_rgb: H×W×3 uint8 RGB, the current frame (the grid the flow lives on).

        Returns:
            h×w×2 float32 (Δx, Δy) in pixels; h×w = ``size`` if given, else H×W.

        Raises:
            ValueError: wrong layout/dtype, the two frames differ in size, or they are too small
                for DIS (OpenCV needs roughly ≥ 12 px on a side).
        """
        src = _gray(src_rgb, 'src_rgb')
        dst = _gray(dst_rgb, 'dst_rgb')
        if src.shape != dst.shape:
            raise ValueError(
                f'frames differ in size: src {src_rgb.shape[:2]} vs dst {dst_rgb.shape[:2]}'
            )
        if self.size is not None and self.size != (src.shape[1], src.shape[0]):
            src = cv2.resize(src, self.size, interpolation=cv2.INTER_AREA)
            dst = cv2.resize(dst, self.size, interpolation=cv2.INTER_AREA)
        # DIS.calc(I0, I1) returns f with I0(p) ≈ I1(p + f(p)); I0 = dst, I1 = src.
        try:
            flow = self._dis.calc(dst, src, None)
        except cv2.error as exc:  # e.g. frames under ~12 px on a side
            raise ValueError(
                f'DIS cannot compute flow on {dst.shape[1]}×{dst.shape[0]} frames: {exc}'
            ) from exc
        return np.ascontiguousarray(flow, dtype=np.float32)


def flow_to_tensor(flow: np.ndarray) -> Tensor:
    """H×W×2 flow array → 1×2×H×W float32 tensor (``ValueError`` on another shape)."""
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f'flow must be H×W×2, got shape {flow.shape}')
    return torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)[None]


def resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a B×2×h'×w' pixel flow field to ``size`` = (h, w), rescaling the vectors.

    The field is interpolated bilinearly and Δx, Δy are multiplied by w/w' and h/h'.
    """
    h, w = int(size[0]), int(size[1])
    hf, wf = flow.shape[-2:]
    if (hf, wf) == (h, w):
        return flow
    flow = F.interpolate(flow, size=(h, w), mode='bilinear', align_corners=False)
    scale = flow.new_tensor([w / wf, h / hf]).view(1, 2, 1, 1)
    return flow * scale


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """Sample ``x`` at ``p + flow(p)`` (bilinear, border padding).

    Args:
        x: B×C×h×w tensor to warp (features or images).
        flow: B×2×h'×w' (Δx, Δy) in pixels of its own grid; B may also be 1 for any B of
            ``x``. If h'×w' ≠ h×w the field is resized bilinearly to h×w and the vectors are
            scaled by (w/w', h/h') first (see :func:`resize_flow`).

    Returns:
        B×C×h×w; with zero flow exactly ``x`` (up to float rounding).

    Raises:
        ValueError: ``x`` not 4-D, ``flow`` not B×2×h'×w', or batch sizes incompatible.
    """
    if x.dim() != 4:
        raise ValueError(f'x must be B×C×h×w, got shape {tuple(x.shape)}')
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f'flow must be B×2×h×w, got shape {tuple(flow.shape)}')
    b, _, h, w = x.shape
    if flow.shape[0] not in (1, b):
        raise ValueError(f'flow batch {flow.shape[0]} does not match x batch {b}')
    flow = resize_flow(flow.to(dtype=x.dtype, device=x.device), (h, w))
    ys = torch.arange(h, dtype=x.dtype, device=x.device).view(1, h, 1)
    xs = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, w)
    # align_corners=True: pixel index i ↦ normalised 2·i/(n−1) − 1 (n = 1 maps everything to -1
    # with a divisor of 1, which grid_sample clamps to the single row/column).
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1).expand(b, h, w, 2)
    return F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=True)
