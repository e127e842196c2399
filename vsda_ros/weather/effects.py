"""The weather effects: one pure function per kind, ``effect(image, params, rng, depth)``.

Every effect takes an H×W×3 uint8 RGB frame, a parameter dict from
:mod:`vsda_ros.weather.params` (``derive`` quantities plus spatial state), a
:class:`numpy.random.Generator` for per-frame randomness (sensor noise) and an optional depth
map (H×W or H×1 float32 metres, already at the frame size; ``None`` = the ground-plane prior of
:func:`~vsda_ros.weather.fields.ground_plane_depth` at ``params['horizon']``). It returns a new
H×W×3 uint8 frame and never modifies its inputs. Effects work in linear light
(:func:`~vsda_ros.weather.fields.to_linear`), where scattering and added light are additive.

Use :func:`render` (or :func:`vsda_ros.weather.apply_weather`) rather than the functions
directly: it validates the frame and returns an exact copy at intensity 0.

The transient-only effects at the end (:data:`TRANSIENT_EFFECTS`: ``wiper``, ``exposure``,
``jpeg``) hit single frames rather than lasting; they take the intensity itself,
``effect(image, intensity, rng)``, and are used through
:func:`vsda_ros.weather.transient.apply_transient`.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from vsda_ros.weather import fields
from vsda_ros.weather.params import RAIN_LAYERS, SNOW_SIZES, Params

Effect = Callable[[np.ndarray, Params, np.random.Generator, 'np.ndarray | None'], np.ndarray]


def check_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is a non-empty H×W×3 uint8 array."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f'image must be a numpy array, got {type(image).__name__}')
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f'image must be H×W×3 (RGB), got shape {image.shape}')
    if image.dtype != np.uint8:
        raise ValueError(f'image must be uint8, got {image.dtype}')


def _depth(p: Params, h: int, w: int, depth: np.ndarray | None) -> np.ndarray:
    if depth is not None:
        return depth
    return fields.ground_plane_depth(h, w, p.get('horizon', 0.45))


def _scatter(
    lin: np.ndarray,
    beta: float,
    depth: np.ndarray,
    airlight: np.ndarray,
    modulation: np.ndarray | None = None,
) -> np.ndarray:
    """Koschmieder's law in place: I = A + t·(J − A), t = exp(−β·d·m)."""
    od = np.float32(beta) * depth
    if modulation is not None:
        od = od * modulation
    t = np.exp(-od, dtype=np.float32)
    lin -= airlight
    lin *= t[..., None]
    lin += airlight
    return lin


def fog(
    image: np.ndarray, p: Params, rng: np.random.Generator, depth: np.ndarray | None = None
) -> np.ndarray:
    """Fog by atmospheric scattering, I = J·t + A·(1 − t), t = exp(−β·d).

    Uses ``beta`` (1/m, = 3.912 / visibility), ``airlight`` (3 values, display-encoded 0..1),
    the depth (ground-plane prior at ``horizon`` unless given) and a patchy density modulation
    1 + ``patch_amp``·field(``patch_grid``, ``patch_offset``): the fog is denser in some
    places; moving ``patch_offset`` drifts the patches.
    """
    h, w = image.shape[:2]
    lin = fields.to_linear(image)
    mod = fields.smooth_field(p['patch_grid'], p['patch_offset'], h, w)
    mod *= np.float32(p['patch_amp'])
    mod += 1.0
    airlight = np.asarray(p['airlight'], np.float32) ** fields.GAMMA
    _scatter(lin, p['beta'], _depth(p, h, w, depth), airlight, mod)
    return fields.to_srgb8(lin)


def rain(
    image: np.ndarray, p: Params, rng: np.random.Generator, depth: np.ndarray | None = None
) -> np.ndarray:
    """Rain: slight blur, rain haze, an overcast dim veil and bright slanted motion-blurred streaks.

    Uses ``blur`` (px at 360 rows), ``beta`` (haze), ``dim``, ``veil``, and the streak state:
    ``positions`` (N×2 tops), ``layer`` (0 far … 2 near: length and width), ``brightness``,
    ``length`` (relative), ``active`` (a streak shows when ``active < density``), ``angle``
    (radians from vertical), ``streak_len`` (near-layer length, fraction of H) and
    ``streak_alpha``.
    """
    h, w = image.shape[:2]
    sigma = p['blur'] * h / 360.0
    src = cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.2 else image
    lin = fields.to_linear(src)
    grey = np.float32(0.5)
    _scatter(lin, p['beta'], _depth(p, h, w, depth), grey)
    lin *= np.float32(p['dim'] * (1.0 - p['veil']))
    lin += np.float32(p['veil'] * 0.55)
    on = p['active'] < p['density']
    layer = p['layer'][on]
    rel = np.asarray(RAIN_LAYERS, np.float32)[layer]
    near_px = max(1, int(round(h / 360.0 * (0.8 + p['intensity']))))
    thickness = np.where(layer == 2, near_px, 1)
    values = np.minimum(p['streak_alpha'] * p['brightness'][on] * (0.45 + 0.55 * rel), 1.0)
    streaks = fields.streak_layer(
        h,
        w,
        p['positions'][on],
        p['streak_len'] * rel * p['length'][on],
        p['angle'],
        values,
        thickness,
        blur=0.6 * h / 360.0 + 0.3,
    )
    s3 = streaks[..., None]
    lin += s3 * (np.float32(0.8) - lin)
    return fields.to_srgb8(lin)


SNOW_SOFTNESS = (0.25, 0.45, 0.9)
"""Blur of the flake classes relative to their radius: near flakes are out of focus."""


def snow(
    image: np.ndarray, p: Params, rng: np.random.Generator, depth: np.ndarray | None = None
) -> np.ndarray:
    """Snow: falling flakes of three sizes (soft discs), a white haze and reduced contrast.

    Uses ``beta`` (haze), ``veil``, and the flake state: ``positions`` (N×2 centres),
    ``size_class`` (0 small/far … 2 large/near; radii :data:`~vsda_ros.weather.params.SNOW_SIZES`
    × ``size_scale`` × H), ``brightness``, ``active`` (shown when ``active < density``) and
    ``flake_alpha``.
    """
    h, w = image.shape[:2]
    lin = fields.to_linear(image)
    white = np.float32(0.78)
    _scatter(lin, p['beta'], _depth(p, h, w, depth), white)
    lin *= np.float32(1.0 - p['veil'])
    lin += np.float32(p['veil'] * 0.7)
    on = p['active'] < p['density']
    cover = None
    for cls, size in enumerate(SNOW_SIZES):
        sel = on & (p['size_class'] == cls)
        if not sel.any():
            continue
        radius = size * p['size_scale'] * h
        layer = fields.flake_layer(
            h,
            w,
            p['positions'][sel],
            radius,
            p['flake_alpha'] * p['brightness'][sel],
            SNOW_SOFTNESS[cls],
        )
        cover = layer if cover is None else np.maximum(cover, layer, out=cover)
    if cover is not None:
        lin += cover[..., None] * (np.float32(0.92) - lin)
    return fields.to_srgb8(lin)


def night(
    image: np.ndarray, p: Params, rng: np.random.Generator, depth: np.ndarray | None = None
) -> np.ndarray:
    """Night: exposure drop, desaturation and blue shift, head-lamp light on the near road,
    street lamps / oncoming head lamps with bloom, and sensor noise.

    Uses ``exposure`` (× ``exposure_gain``, the slowly varying auto exposure), ``desaturate``,
    ``blue``, ``headlamp``, ``lights`` (lamp brightness) with the lamp state
    ``light_positions`` / ``light_colors`` / ``light_sizes`` / ``light_power`` /
    ``light_count``, and ``shot`` / ``read`` noise.
    """
    h, w = image.shape[:2]
    lin = fields.to_linear(image)
    if p['desaturate'] > 0:
        lum = fields.luminance(lin)
        lin *= np.float32(1.0 - p['desaturate'])
        lin += np.float32(p['desaturate']) * lum[..., None]
    b = p['blue']
    tint = np.array([1.0 - 0.5 * b, 1.0 - 0.2 * b, 1.0 + 0.2 * b], np.float32)
    rows = (np.arange(h, dtype=np.float32) + 0.5) / h
    start = p['horizon'] + 0.12
    ramp = np.clip((rows - start) / max(1.0 - start, 1e-3), 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: lit near road
    up = np.clip((p['horizon'] - rows) / max(p['horizon'], 1e-3), 0.0, 1.0)
    ambient = 1.0 - 0.75 * b * up  # dark sky, unlit upper floors
    gain = p['exposure'] * p['exposure_gain'] * ambient + p['headlamp'] * ramp
    illum = np.broadcast_to((gain[:, None, None] * tint).astype(np.float32), lin.shape)
    k = int(p['light_count'])
    if k > 0 and p['lights'] > 0:
        pos, size = p['light_positions'][:k], p['light_sizes'][:k]
        colors = p['light_colors'][:k] * (p['light_power'][:k, None] * p['lights'])
        # lamps light their surroundings (a broad pool of light on the scene) …
        illum = illum + fields.gaussian_blobs(h, w, pos, np.full(k, 0.1, np.float32), 0.2 * colors)
        lin *= illum
        # … and are seen directly, with bloom
        lin += fields.bloom_lights(h, w, pos, size, 2.0 * colors, spread=1.0)
    else:
        lin *= illum
    fields.add_sensor_noise(lin, p['shot'], p['read'], rng)
    return fields.to_srgb8(lin)


def glare(
    image: np.ndarray, p: Params, rng: np.random.Generator, depth: np.ndarray | None = None
) -> np.ndarray:
    """Glare: one bright source (sun / head lamp) with bloom, veiling glare, lens ghosts and
    reduced contrast around it.

    Uses ``center`` (normalised x, y), ``color``, ``strength`` (peak, in units of white),
    ``core`` (core radius, fraction of H), ``spread`` (halo width), ``veil`` (uniform veiling
    light), ``contrast_loss`` (scene attenuation near the source) and ``ghosts``.
    """
    h, w = image.shape[:2]
    lin = fields.to_linear(image)
    c = np.asarray(p['center'], np.float32)
    color = np.asarray(p['color'], np.float32)
    near = fields.gaussian_blobs(
        h,
        w,
        c[None],
        np.array([0.45], np.float32),
        np.array([[p['contrast_loss']] * 3], np.float32),
    )
    lin *= 1.0 - near
    light = fields.bloom_lights(
        h,
        w,
        c[None],
        np.array([p['core']], np.float32),
        color[None] * np.float32(p['strength']),
        spread=p['spread'],
    )
    lin += light
    lin += np.float32(p['veil']) * color
    if p['ghosts'] > 0:
        steps = np.array([0.55, 1.25, 1.6], np.float32)[:, None]
        pos = c + steps * (np.array([0.5, 0.5], np.float32) - c) * 2
        tints = np.array([[0.6, 1.0, 0.7], [0.8, 0.6, 1.0], [1.0, 0.8, 0.5]], np.float32)
        lin += fields.gaussian_blobs(
            h, w, pos, np.array([0.03, 0.06, 0.02], np.float32), tints * np.float32(p['ghosts'])
        )
    return fields.to_srgb8(lin)


def noise(
    image: np.ndarray, p: Params, rng: np.random.Generator, depth: np.ndarray | None = None
) -> np.ndarray:
    """Sensor noise in linear light: σ² = ``shot``·signal + ``read``² (shot + read noise)."""
    lin = fields.to_linear(image)
    fields.add_sensor_noise(lin, p['shot'], p['read'], rng)
    return fields.to_srgb8(lin)


EFFECTS: dict[str, Effect] = {
    'fog': fog,
    'rain': rain,
    'snow': snow,
    'night': night,
    'glare': glare,
    'noise': noise,
}
"""Kind → effect function."""


def render(
    image: np.ndarray, params: Params, rng: np.random.Generator, depth: np.ndarray | None = None
) -> np.ndarray:
    """Apply ``params['kind']`` to ``image``; an exact copy when ``params['intensity']`` is 0.

    Raises:
        ValueError: ``image`` is not H×W×3 uint8, or the kind is unknown.
    """
    check_image(image)
    kind = params['kind']
    if kind not in EFFECTS:
        raise ValueError(f'unknown weather kind {kind!r}; expected one of {", ".join(EFFECTS)}')
    if params['intensity'] <= 0.0:
        return image.copy()
    return EFFECTS[kind](image, params, rng, depth)


# ----------------------------------------------------------------------------------------------
# transient-only effects: ``effect(image, intensity, rng)``
#
# Events that hit single frames (see :mod:`vsda_ros.weather.transient`), not weather that
# lasts: they take the intensity x in [0, 1] directly and draw their few parameters from
# ``rng``. x = 0 leaves the frame as it is (an exact copy); x = 1 is the strongest version.

TransientEffect = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _lerp(a: float, b: float, x: float) -> float:
    return a + (b - a) * x


WIPER_STEPS = 12
"""Blade positions averaged over the exposure: the motion blur of the sweep."""


def wiper(image: np.ndarray, x: float, rng: np.random.Generator) -> np.ndarray:
    """A wiper blade caught mid-sweep: a dark, motion-blurred, out-of-focus band with a smeared
    water film around it.

    The blade pivots just below the frame (x position drawn), points up at a drawn angle
    (±46° from vertical) and moves during the exposure, so the band is averaged over
    :data:`WIPER_STEPS` positions spanning the sweep angle. Intensity x sets the blade's width
    (4 % → 16 % of H), the sweep during the exposure (0.03 → 0.25 rad: a wider smear), its
    opacity (0.6 → 0.97) and the blur of the water film beside it. x = 0: an exact copy;
    x = 1: a wide, nearly black band in a blurred streak. Returns a new H×W×3 uint8 frame.
    """
    if x <= 0.0:
        return image.copy()
    h, w = image.shape[:2]
    pivot = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(1.0, 1.15) * h])
    angle = rng.uniform(-0.8, 0.8)  # radians from vertical
    sweep = _lerp(0.03, 0.25, x) * (1 if rng.random() < 0.5 else -1)
    thickness = max(1, int(round(_lerp(0.04, 0.16, x) * h)))
    reach = 2.5 * max(h, w)  # long enough to leave the frame
    cover: np.ndarray = np.zeros((h, w), np.float32)
    step = np.zeros((h, w), np.uint8)
    for a in angle + sweep * np.linspace(-0.5, 0.5, WIPER_STEPS):
        tip = pivot + reach * np.array([np.sin(a), -np.cos(a)])
        step[:] = 0
        cv2.line(
            step,
            (int(pivot[0]), int(pivot[1])),
            (int(tip[0]), int(tip[1])),
            255,
            thickness,
            cv2.LINE_AA,
        )
        cover += step
    cover *= np.float32(1.0 / (255.0 * WIPER_STEPS))
    cover = cv2.GaussianBlur(cover, (0, 0), 0.01 * h + 0.5)  # the blade is out of focus
    film = cv2.GaussianBlur(cover, (0, 0), 0.05 * h)  # water the blade pushes along
    film *= np.float32(x / max(float(film.max()), 1e-6))
    lin = fields.to_linear(image)
    lin += film[..., None] * (cv2.GaussianBlur(lin, (0, 0), 0.015 * h) - lin)
    cover *= np.float32(_lerp(0.6, 0.97, x))
    lin += cover[..., None] * (np.float32(0.004) - lin)  # towards near-black rubber
    return fields.to_srgb8(lin)


def exposure(image: np.ndarray, x: float, rng: np.random.Generator) -> np.ndarray:
    """An auto-exposure jump: a global gain (and gamma) change with clipping, up or down.

    Brighter or darker is drawn (even odds). The gain in linear light is 2^(±3·x·u), u ~
    U(0.8, 1) (up to ±3 stops: highlights clip to white or shadows crush to black), the display
    gamma moves with it (brighter: ×(1 − 0.3·x), washed out; darker: ×(1 + 0.4·x), crushed), and
    the white balance jumps by a few percent per channel (σ = 0.05·x). One lookup table per
    channel, so it costs well under a millisecond. x = 0: an exact copy.
    Returns a new H×W×3 uint8 frame.
    """
    if x <= 0.0:
        return image.copy()
    brighter = rng.random() < 0.5
    stops = 3.0 * x * rng.uniform(0.8, 1.0) * (1.0 if brighter else -1.0)
    gamma = 1.0 - 0.3 * x if brighter else 1.0 + 0.4 * x
    balance = np.clip(1.0 + rng.normal(0.0, 0.05 * x, 3), 0.8, 1.2)
    v = np.arange(256, dtype=np.float64) / 255.0
    lin = (v[:, None] ** fields.GAMMA) * (2.0**stops) * balance[None, :]
    disp = np.clip(lin, 0.0, 1.0) ** (gamma / fields.GAMMA)
    lut = np.round(disp * 255.0).astype(np.uint8).reshape(256, 1, 3)
    return cv2.LUT(np.ascontiguousarray(image), lut)


def jpeg_quality(x: float) -> int:
    """JPEG quality of :func:`jpeg` at intensity x: 95 near 0, 48 at 0.3, 17 at 0.6, 2 at 1."""
    return int(round(2 + 93 * (1.0 - x) ** 2))


MACROBLOCK = 16
"""Height and width of a JPEG/MPEG macroblock (px): the unit that gets damaged."""


def _damage_rows(out: np.ndarray, x: float, rng: np.random.Generator) -> None:
    """Damage 1 … round(1 + 6·(x − 0.5)) macroblock rows of ``out`` in place (x ≥ 0.5 only).

    From a drawn macroblock to the end of its row, either the line above is smeared down (a
    decoder's copy-from-above concealment) or each block keeps only its mean with a wrong
    colour offset (lost AC coefficients, a bad DC prediction).
    """
    h, w = out.shape[:2]
    rows, cols = -(-h // MACROBLOCK), -(-w // MACROBLOCK)
    n = min(rows, int(rng.integers(1, int(round(1 + 6 * (x - 0.5))) + 1)))
    for r in rng.choice(rows, n, replace=False):
        y0, y1 = r * MACROBLOCK, min(h, (r + 1) * MACROBLOCK)
        x0 = int(rng.integers(0, cols)) * MACROBLOCK
        if rng.random() < 0.5:
            out[y0:y1, x0:] = out[max(0, y0 - 1), x0:][None]
            continue
        for c in range(x0, w, MACROBLOCK):
            block = out[y0:y1, c : c + MACROBLOCK]
            shift = rng.normal(0.0, 40.0 * x, 3)
            block[:] = np.clip(block.reshape(-1, 3).mean(0) + shift, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, x: float, rng: np.random.Generator) -> np.ndarray:
    """A compression-damaged frame: re-encoded at JPEG quality :func:`jpeg_quality` (x) with
    OpenCV (blocking, ringing, chroma bleeding), and from x = 0.5 on, a few macroblock rows
    corrupted (:func:`_damage_rows`: smeared or reduced to wrongly coloured block means).
    x = 0: an exact copy; x = 1: quality 2 and up to four damaged rows.
    Returns a new H×W×3 uint8 frame.

    Raises:
        RuntimeError: OpenCV cannot encode or decode JPEG (a broken OpenCV build).
    """
    if x <= 0.0:
        return image.copy()
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality(x)])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        raise RuntimeError('OpenCV could not re-encode the frame as JPEG')
    out = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if x >= 0.5:
        _damage_rows(out, x, rng)
    return out


TRANSIENT_EFFECTS: dict[str, TransientEffect] = {'wiper': wiper, 'exposure': exposure, 'jpeg': jpeg}
"""Transient-only kind → effect function."""
