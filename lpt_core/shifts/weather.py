"""Weather corruptions of CIFAR-C (Hendrycks & Dietterich, ICLR 2019), CIFAR constants: snow, fog, spatter.

Frost lives in ``_frost.py`` (it needs the authors' photographs or a procedural stand-in).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from lpt_core.shifts._core import CORRUPTIONS, from_unit, pick, to_unit
from lpt_core.shifts._magick import motion_blur_image
from lpt_core.shifts.blur import clipped_zoom

# (loc, scale, zoom, threshold, motion radius, motion sigma, blend)
SNOW = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # (strength, wibble decay)
# (loc, scale, sigma, threshold, intensity, mud?)
SPATTER = (
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)
WATER_RGB = np.array([175, 238, 238]) / 255.0  # pale turquoise
MUD_RGB = np.array([63, 42, 20]) / 255.0  # mud brown


def grey(x: np.ndarray) -> np.ndarray:
    """OpenCV's RGB -> grey (0.299 R + 0.587 G + 0.114 B) of a float32 (N, H, W, 3) batch."""
    n, h, w, _ = x.shape
    return cv2.cvtColor(x.reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY).reshape(n, h, w, 1)


@CORRUPTIONS.register("snow")
def snow(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Thresholded zoomed noise, motion-blurred by ImageMagick, added twice (rotated) over a greyed image."""
    loc, scale, zoom, thresh, radius, sigma, blend = pick(SNOW, severity)
    n, h, w, _ = images.shape
    x = to_unit(images, np.float32)
    layer = clipped_zoom(rng.normal(loc=loc, scale=scale, size=(n, h, w, 1)), zoom)[..., 0]
    layer[layer < thresh] = 0
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8)
    angles = rng.uniform(-135, -45, size=n)
    flakes = np.stack([motion_blur_image(f, radius, sigma, a) for f, a in zip(layer, angles)])
    flakes = (flakes / 255.0)[..., None]
    x = blend * x + (1 - blend) * np.maximum(x, grey(x) * 1.5 + 0.5)
    return from_unit(x + flakes + np.rot90(flakes, k=2, axes=(1, 2)))


def plasma_fractal(n: int, mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` diamond-square height maps (n, mapsize, mapsize) in [0, 1]; mapsize a power of two."""
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    maps = np.zeros((n, mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        # wibble * U(-wibble, wibble): the reference's noise amplitude is wibble squared.
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:mapsize:step, 0:mapsize:step]
        square = corners + np.roll(corners, -1, axis=1)
        square += np.roll(square, -1, axis=2)
        maps[:, half:mapsize:step, half:mapsize:step] = wibbled_mean(square)
        centres = maps[:, half:mapsize:step, half:mapsize:step]
        corners = maps[:, 0:mapsize:step, 0:mapsize:step]
        left = (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=2))
        maps[:, 0:mapsize:step, half:mapsize:step] = wibbled_mean(left)
        top = (centres + np.roll(centres, 1, axis=2)) + (corners + np.roll(corners, -1, axis=1))
        maps[:, half:mapsize:step, 0:mapsize:step] = wibbled_mean(top)
        step //= 2
        wibble /= wibbledecay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


@CORRUPTIONS.register("fog")
def fog(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Adds a plasma fractal (map side: the next power of two >= H, cropped) and rescales."""
    strength, decay = pick(FOG, severity)
    n, h, w, _ = images.shape
    x = to_unit(images)
    max_val = x.max(axis=(1, 2, 3), keepdims=True)
    mapsize = 1 << (h - 1).bit_length()
    x += strength * plasma_fractal(n, mapsize, decay, rng)[:, :h, :w, None]
    return from_unit(x * max_val / (max_val + strength))


def _water_mask(liquid: np.ndarray, intensity: float) -> np.ndarray:
    """The reference's water-drop shading for one (H, W) liquid layer; zeros if there is no drop."""
    # float -> uint8 wraps above 255 as numpy does on x86 (the reference's .astype(np.uint8)).
    layer = (liquid * 255).astype(np.int64).astype(np.uint8)
    dist = cv2.distanceTransform(255 - cv2.Canny(layer, 50, 150), cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)
    dist = cv2.blur(cv2.filter2D(dist, cv2.CV_8U, emboss), (3, 3)).astype(np.float32)
    mask = layer * dist
    peak = mask.max()
    # The reference divides by this peak and yields NaN when it is 0; we leave such images clean.
    return mask * (intensity / peak) if peak > 0 else mask


@CORRUPTIONS.register("spatter")
def spatter(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Water drops (severities 1-3) or mud splashes (4-5) from thresholded blurred noise."""
    loc, scale, sigma, thresh, intensity, mud = pick(SPATTER, severity)
    n, h, w, _ = images.shape
    x = to_unit(images, np.float32)
    liquid = ndimage.gaussian_filter(
        rng.normal(loc=loc, scale=scale, size=(n, h, w)), (0, sigma, sigma), mode="nearest", truncate=4.0
    )
    liquid[liquid < thresh] = 0
    if not mud:
        masks = np.stack([_water_mask(layer, intensity) for layer in liquid])[..., None]
        return from_unit(x + masks * WATER_RGB)
    m = ndimage.gaussian_filter(
        (liquid > thresh).astype(np.float32), (0, intensity, intensity), mode="nearest", truncate=4.0
    )
    m[m < 0.8] = 0
    m = m[..., None]
    return from_unit(x * (1 - m) + MUD_RGB * m)
