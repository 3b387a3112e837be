"""Blur corruptions of CIFAR-C (Hendrycks & Dietterich, ICLR 2019), CIFAR constants.

Defocus, gaussian and zoom blur filter the whole batch at once (the filters never mix images);
motion blur calls ImageMagick per image, as the reference does.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from lpt_core.shifts._core import CORRUPTIONS, from_unit, pick, to_unit
from lpt_core.shifts._magick import motion_blur_image

DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # (disk radius, alias sigma)
GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # (sigma, delta, iters)
MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # ImageMagick (radius, sigma)
ZOOM_END = (1.06, 1.11, 1.16, 1.21, 1.26)  # zoom factors np.arange(1, end, 0.01)
GAUSSIAN_BLUR_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)


def blur_hw(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float (N, H, W, C) batch over H and W only.

    Same maths as skimage's ``gaussian(x, sigma, channel_axis=-1)`` defaults (nearest borders,
    truncate 4) applied image by image.
    """
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest", truncate=4.0)


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's anti-aliased disk, cropped to its non-zero support (same correlation)."""
    half = 8 if radius <= 8 else int(radius)
    ksize = (3, 3) if radius <= 8 else (5, 5)
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = np.array(xx**2 + yy**2 <= radius**2, dtype=np.float32)
    disk /= disk.sum()
    kernel = cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)
    rows, cols = np.nonzero(kernel)
    return kernel[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


@CORRUPTIONS.register("defocus_blur")
def defocus_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Correlation with an anti-aliased disk, reflect-101 borders (cv2.filter2D's default)."""
    kernel = disk_kernel(*pick(DEFOCUS, severity)).astype(np.float64)
    out = ndimage.correlate(to_unit(images), kernel[None, :, :, None], mode="mirror")
    return from_unit(out)


def glass_shuffle(x: np.ndarray, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """The reference's local pixel "swap" loop (max_delta = 1), as one gather per iteration.

    The reference's ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` swaps numpy *views*, so it only
    copies ``x[h', w']`` into ``x[h, w]``. With offsets in {-1, 0} and the loop running from the
    last pixel backwards, every source pixel is read before it is written in that pass, so the
    whole pass equals a parallel gather over rows/cols 2..H-1 with per-pixel offsets (dx, dy).
    """
    n, h, w, _ = x.shape
    rows = np.arange(n)[:, None, None]
    hh, ww = np.meshgrid(np.arange(2, h), np.arange(2, w), indexing="ij")
    for _ in range(iterations):
        # The reference visits pixels from (H-1, W-1) backwards and draws (dx, dy) at each one.
        offsets = rng.integers(-1, 1, size=(n, h - 2, w - 2, 2))[:, ::-1, ::-1]
        src_h, src_w = hh + offsets[..., 1], ww + offsets[..., 0]
        out = x.copy()
        out[:, 2:, 2:] = x[rows, src_h, src_w]
        x = out
    return x


@CORRUPTIONS.register("glass_blur")
def glass_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, local pixel shuffling, gaussian blur again."""
    sigma, max_delta, iterations = pick(GLASS, severity)
    if max_delta != 1:
        raise ValueError(f"glass_shuffle assumes max_delta == 1, got {max_delta}")
    blurred = (blur_hw(to_unit(images), sigma) * 255).astype(np.uint8)
    shuffled = glass_shuffle(blurred, iterations, rng)
    return from_unit(blur_hw(to_unit(shuffled), sigma))


@CORRUPTIONS.register("motion_blur")
def motion_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """ImageMagick motion blur at a random angle in U(-45, 45) degrees per image."""
    radius, sigma = pick(MOTION, severity)
    angles = rng.uniform(-45, 45, size=len(images))
    return np.stack([motion_blur_image(img, radius, sigma, a) for img, a in zip(images, angles)])


def zoom_matrix(size: int, zoom_factor: float) -> np.ndarray:
    """(round(size * zoom), size) linear-interpolation matrix of ``scipy.ndimage.zoom(order=1)``.

    scipy maps output pixel o to input coordinate o * (size - 1) / (out - 1); order-1 zooms are
    separable, so two matrix products reproduce them (to float rounding) without the 16-tap 4-D
    interpolation scipy would run over the batch and channel axes.
    """
    out = int(round(size * zoom_factor))
    pos = np.arange(out) * ((size - 1) / (out - 1))
    lo = np.clip(np.floor(pos).astype(int), 0, size - 1)
    hi = np.minimum(lo + 1, size - 1)
    frac = pos - lo
    matrix = np.zeros((out, size))
    np.add.at(matrix, (np.arange(out), lo), 1 - frac)
    np.add.at(matrix, (np.arange(out), hi), frac)
    return matrix


def clipped_zoom(x: np.ndarray, zoom_factor: float) -> np.ndarray:
    """Zoom the centre of a (N, H, W, C) batch by ``zoom_factor`` (bilinear), cropped back to H x W."""
    h = x.shape[1]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    matrix = zoom_matrix(ch, zoom_factor)
    trim = (matrix.shape[0] - h) // 2
    matrix = matrix[trim : trim + h].astype(x.dtype)
    crop = x[:, top : top + ch, top : top + ch].transpose(0, 3, 1, 2)  # (N, C, ch, ch)
    return (matrix @ crop @ matrix.T).transpose(0, 2, 3, 1)


@CORRUPTIONS.register("zoom_blur")
def zoom_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Average of the image and its centre zooms by 1, 1.01, ... (the reference's float arange)."""
    x = to_unit(images, np.float32)
    factors = np.arange(1, pick(ZOOM_END, severity), 0.01)
    out = np.zeros_like(x)
    for factor in factors:
        out += clipped_zoom(x, factor)
    return from_unit((x + out) / (len(factors) + 1))


@CORRUPTIONS.register("gaussian_blur")
def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur (skimage defaults: nearest borders, truncate 4)."""
    return from_unit(blur_hw(to_unit(images), pick(GAUSSIAN_BLUR_SIGMA, severity)))
