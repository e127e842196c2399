"""Spatial building blocks of the weather effects: tone curves, depth, smooth fields, light blobs,
streak and flake layers, sensor noise.

All functions are vectorised numpy / OpenCV. Images in *linear* light are H×W×3 float32 with 0..1
nominal range (values above 1 are allowed until encoding); layers are H×W float32. Positions and
sizes are normalised (x by the width, y and sizes by the height) so the same parameters render
at any resolution.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

GAMMA = 2.2
"""Display gamma used to move between 8-bit sRGB-like values and linear light."""

_DECODE = ((np.arange(256, dtype=np.float64) / 255.0) ** GAMMA).astype(np.float32)

FAR_M = 1000.0
"""Distance (m) treated as "far": the top of the sky, and invalid / infinite depth."""


# --------------------------------------------------------------------------------------------
# tone


def to_linear(image: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 → H×W×3 float32 linear light in [0, 1] (a fresh array)."""
    return cv2.LUT(np.ascontiguousarray(image), _DECODE)


def to_srgb8(linear: np.ndarray) -> np.ndarray:
    """H×W×3 float32 linear light → H×W×3 uint8 (clipped to [0, 1], rounded).

    Modifies ``linear`` in place (clipping) to avoid a copy. The lower clip is 1e-8, not 0:
    ``cv2.pow`` takes a slow path (≈15× slower) on exact zeros, and 1e-8 still encodes to 0.
    """
    np.clip(linear, np.float32(1e-8), np.float32(1.0), out=linear)
    return cv2.convertScaleAbs(cv2.pow(linear, 1.0 / GAMMA), alpha=255.0)


def luminance(linear: np.ndarray) -> np.ndarray:
    """Rec. 709 luminance of an H×W×3 RGB float32 image → H×W float32."""
    return cv2.transform(linear, np.array([[0.2126, 0.7152, 0.0722]], np.float32))


# --------------------------------------------------------------------------------------------
# depth

SKY_DEPTH_M = 400.0
"""Depth (m) the ground-plane prior gives the top image row (sky)."""


@lru_cache(maxsize=32)
def _ground_plane_column(
    height: int, width: int, horizon: float, cam_height: float, horizon_depth: float
) -> np.ndarray:
    rows = np.arange(height, dtype=np.float64) + 0.5
    h_px = horizon * height
    focal = float(width)  # ≈ 53° horizontal field of view
    below = cam_height * focal / np.maximum(rows - h_px, 1e-6)
    depth = np.minimum(below, horizon_depth)
    above = rows < h_px
    frac = (h_px - rows[above]) / max(h_px, 1e-6)  # 0 at the horizon, 1 at the top row
    depth[above] = horizon_depth + (SKY_DEPTH_M - horizon_depth) * frac**2
    # Upright things (walls, cars) stand nearer than the ground behind them at the same row, and
    # a hard depth kink at the horizon draws a visible line: smooth log-depth vertically.
    sigma = max(1.0, 0.09 * height)
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    padded = np.pad(np.log(depth), radius, mode='edge')
    depth = np.exp(np.convolve(padded, kernel / kernel.sum(), mode='valid'))
    out = depth.astype(np.float32)[:, None]
    out.setflags(write=False)
    return out


def ground_plane_depth(
    height: int,
    width: int,
    horizon: float = 0.45,
    cam_height: float = 1.5,
    horizon_depth: float = 80.0,
) -> np.ndarray:
    """Depth proxy (metres) from a flat ground plane seen by a level camera: H×1 float32.

    Rows below the horizon row (``horizon`` × H) see the ground at
    ``cam_height · f / (row − horizon_row)`` with f = W pixels (≈ 53° field of view), capped at
    ``horizon_depth``. Rows above the horizon (buildings, trees, sky) have no ground to
    measure; they get a depth growing quadratically from ``horizon_depth`` at the horizon to
    :data:`SKY_DEPTH_M` at the top row: upright things near the horizon are moderately far, the
    top of the frame (mostly sky) is far. Log-depth is then smoothed vertically (σ = 9 % of H)
    so the horizon draws no line. The result is cached and read-only; broadcast it against H×W
    maps.
    """
    return _ground_plane_column(
        int(height), int(width), round(float(horizon), 4), float(cam_height), float(horizon_depth)
    )


def metric_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """A user depth map → H×W float32 metres at the requested size.

    ``depth`` is H'×W' (any real dtype). If every finite positive value is ≤ 1 the map is taken
    as *relative* depth (1 = far) and scaled to :data:`FAR_M`; otherwise as metres. Non-finite or
    non-positive values (sky, no return) become :data:`FAR_M`. A map of another size is resized
    (bilinear).

    Raises:
        ValueError: ``depth`` is not a 2-D array.
    """
    d = np.asarray(depth)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f'depth must be an H×W array, got shape {d.shape}')
    d = d.astype(np.float32, copy=True)
    valid = np.isfinite(d) & (d > 0)
    if valid.any() and float(d[valid].max()) <= 1.0:
        d *= FAR_M
    d[~valid] = FAR_M
    if d.shape != (height, width):
        d = cv2.resize(d, (width, height), interpolation=cv2.INTER_LINEAR)
    return d


# --------------------------------------------------------------------------------------------
# smooth random fields


def smooth_field(
    grid: np.ndarray,
    offset: np.ndarray,
    height: int,
    width: int,
    cells_per_width: float = 3.0,
    step: int = 8,
) -> np.ndarray:
    """A smooth random field of H×W float32, ≈ in [−1, 1], sampled from a periodic value grid.

    ``grid`` (gh×gw float32, values in [−1, 1]) is tiled periodically and read with bicubic
    interpolation at ``cells_per_width`` grid cells per image width (square cells), shifted by
    ``offset`` = (dx, dy) in grid cells; moving ``offset`` a little moves the field a little
    (drifting fog patches). Computed at 1/``step`` resolution and upsampled, so it is cheap.
    """
    gh, gw = grid.shape
    lh, lw = max(2, -(-height // step)), max(2, -(-width // step))
    cells_y = cells_per_width * height / width
    xs = (np.arange(lw, dtype=np.float32) + 0.5) / lw * cells_per_width + float(offset[0])
    ys = (np.arange(lh, dtype=np.float32) + 0.5) / lh * cells_y + float(offset[1])
    mx, my = np.meshgrid(np.mod(xs, gw).astype(np.float32), np.mod(ys, gh).astype(np.float32))
    low = cv2.remap(
        grid.astype(np.float32, copy=False), mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP
    )
    return cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)


# --------------------------------------------------------------------------------------------
# light sources


def gaussian_blobs(
    height: int, width: int, centers: np.ndarray, sigmas: np.ndarray, colors: np.ndarray
) -> np.ndarray:
    """Sum of isotropic Gaussian blobs as H×W×3 float32 linear light.

    ``centers`` K×2 normalised (x/W, y/H), ``sigmas`` K (fraction of H), ``colors`` K×3 peak
    RGB values. Gaussians are separable, so the sum is one (H×K)·(K×3W) matrix product.
    """
    k = len(centers)
    if k == 0:
        return np.zeros((height, width, 3), np.float32)
    c = np.asarray(centers, np.float32)
    s = np.maximum(np.asarray(sigmas, np.float32) * height, 0.5)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :] + 0.5
    ys = np.arange(height, dtype=np.float32)[None, :] + 0.5
    gx = np.exp(-0.5 * ((xs - c[:, :1] * width) / s) ** 2)  # K×W
    gy = np.exp(-0.5 * ((ys - c[:, 1:2] * height) / s) ** 2)  # K×H
    gx3 = (gx[:, :, None] * np.asarray(colors, np.float32)[:, None, :]).reshape(k, width * 3)
    return (gy.T @ gx3).reshape(height, width, 3)


BLOOM_SIGMAS = np.array([1.0, 3.0, 9.0, 27.0], np.float32)
"""Relative widths of the bloom components: a heavy-tailed point-spread (veiling glare falls off
roughly as 1/θ², approximated by Gaussians a factor 3 apart)."""
BLOOM_WEIGHTS = np.array([1.0, 0.12, 0.025, 0.006], np.float32)


def bloom_lights(
    height: int,
    width: int,
    centers: np.ndarray,
    core_sigmas: np.ndarray,
    colors: np.ndarray,
    spread: float = 1.0,
) -> np.ndarray:
    """Light sources with bloom: H×W×3 float32 linear light.

    Each source (normalised ``centers`` K×2, core size ``core_sigmas`` K as a fraction of H,
    peak ``colors`` K×3) is a core plus three wider, weaker Gaussians (:data:`BLOOM_SIGMAS`,
    :data:`BLOOM_WEIGHTS`); ``spread`` > 1 widens the halo (more scattering: haze, rain).
    """
    centers = np.asarray(centers, np.float32).reshape(-1, 2)
    if len(centers) == 0:
        return np.zeros((height, width, 3), np.float32)
    n = len(BLOOM_SIGMAS)
    widths = BLOOM_SIGMAS.copy()
    widths[1:] *= spread
    c = np.repeat(centers, n, axis=0)
    s = (np.asarray(core_sigmas, np.float32)[:, None] * widths[None, :]).ravel()
    col = np.asarray(colors, np.float32)[:, None, :] * BLOOM_WEIGHTS[None, :, None]
    return gaussian_blobs(height, width, c, s, col.reshape(-1, 3))


# --------------------------------------------------------------------------------------------
# precipitation layers


def streak_layer(
    height: int,
    width: int,
    starts: np.ndarray,
    lengths: np.ndarray,
    angle: float,
    values: np.ndarray,
    thickness: np.ndarray,
    blur: float = 0.7,
) -> np.ndarray:
    """Rain streaks: anti-aliased line segments → H×W float32 layer in [0, 1].

    ``starts`` N×2 normalised upper ends, ``lengths`` N (fraction of H), ``angle`` the slant
    from vertical in radians (positive: falling to the right), ``values`` N opacities,
    ``thickness`` N integer line widths in pixels. Streaks are grouped by (value, thickness)
    level (rounded to 1/16) so each group is one ``cv2.polylines`` call; a final Gaussian blur of
    ``blur`` px gives motion-blurred soft edges.
    """
    layer: np.ndarray = np.zeros((height, width), np.float32)
    if len(starts) == 0:
        return layer
    p0 = np.asarray(starts, np.float32) * np.array([width, height], np.float32)
    d = (
        np.asarray(lengths, np.float32)[:, None]
        * height
        * np.array([np.sin(angle), np.cos(angle)], np.float32)
    )
    seg = np.stack([p0, p0 + d], axis=1)  # N×2×2
    seg = np.round(seg * 16).astype(np.int32)  # 4 fractional bits
    levels = np.round(np.asarray(values, np.float32) * 16).astype(np.int32)
    thick = np.asarray(thickness, np.int32)
    key = levels * 64 + thick
    for k in np.unique(key):
        sel = key == k
        cv2.polylines(
            layer, seg[sel], False, float(k // 64) / 16.0, int(k % 64), cv2.LINE_AA, shift=4
        )
    if blur > 0:
        layer = cv2.GaussianBlur(layer, (0, 0), blur)
    return layer


def flake_layer(
    height: int,
    width: int,
    centers: np.ndarray,
    radius: float,
    values: np.ndarray,
    softness: float = 0.5,
) -> np.ndarray:
    """Snow flakes of one size: soft discs → H×W float32 layer in [0, 1].

    ``centers`` N×2 normalised, ``radius`` in pixels, ``values`` N opacities. Flakes are stamped
    as single pixels, grown to discs by a dilation with an elliptic kernel and softened by a
    Gaussian blur of ``softness``·radius (+0.5) px (out-of-focus flakes), so the cost does not
    depend on N. Flakes smaller than a pixel (radius < 1) are drawn with opacity × radius², so
    low resolutions are not covered more than high ones.
    """
    layer: np.ndarray = np.zeros((height, width), np.float32)
    if len(centers) == 0:
        return layer
    c = np.asarray(centers, np.float32)
    xi = np.clip((c[:, 0] * width).astype(np.int32), 0, width - 1)
    yi = np.clip((c[:, 1] * height).astype(np.int32), 0, height - 1)
    coverage = min(1.0, radius * radius)  # sub-pixel flakes are fainter, not bigger
    np.maximum.at(layer, (yi, xi), np.asarray(values, np.float32) * np.float32(coverage))
    r = int(round(radius))
    if r >= 1:
        layer = cv2.dilate(
            layer, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        )
    sigma = softness * radius + 0.5
    layer = cv2.GaussianBlur(layer, (0, 0), sigma)
    # A blurred disc keeps its peak only if it is wider than the blur; restore small flakes.
    gain = 1.0 + 0.5 * sigma / max(radius, 0.5)
    return np.minimum(layer * gain, 1.0, out=layer)


# --------------------------------------------------------------------------------------------
# sensor noise

_CHROMA = np.array([[1.0, 0.5], [-1.0, 0.5], [0.0, -1.0]], np.float32)
"""Two colour-difference noise components (red–green, blue–yellow) → RGB."""
_UPSAMPLED_VAR = 0.39
"""Approximate variance of unit Gaussian noise after 2× bilinear upsampling."""
_NOISE_MIX = (
    np.hstack([np.ones((3, 1), np.float32), _CHROMA])
    / np.sqrt(1.0 + _UPSAMPLED_VAR * (_CHROMA**2).sum(1, keepdims=True))
).astype(np.float32)
"""(luminance, colour difference 1, 2) → unit-variance RGB noise, one 3×3 colour transform."""


def add_sensor_noise(
    linear: np.ndarray, shot: float, read: float, rng: np.random.Generator
) -> np.ndarray:
    """Add sensor noise to an H×W×3 float32 linear image in place and return it.

    Per pixel σ² = ``shot``·signal + ``read``² (Poisson shot noise in its Gaussian limit plus
    Gaussian read noise), unit-variance per channel. The noise is a full-resolution luminance
    component shared by the channels plus two half-resolution colour-difference components
    (demosaicing correlates colour noise over neighbouring pixels); drawing 1.33 instead of 3
    normals per pixel keeps it fast.
    """
    if shot <= 0 and read <= 0:
        return linear
    h, w = linear.shape[:2]
    luma = rng.standard_normal((h, w), dtype=np.float32)
    chroma: np.ndarray = rng.standard_normal(
        (max(1, (h + 1) // 2), max(1, (w + 1) // 2), 2), dtype=np.float32
    )
    chroma = cv2.resize(chroma, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, 2)
    noise = cv2.transform(np.dstack([luma, chroma]), _NOISE_MIX).reshape(h, w, 3)
    sigma = np.maximum(linear, np.float32(0.0))
    sigma *= np.float32(shot)
    sigma += np.float32(read) ** 2
    np.sqrt(sigma, out=sigma)
    sigma *= noise
    linear += sigma
    return linear
