"""Digital corruptions of CIFAR-C (Hendrycks & Dietterich, ICLR 2019), CIFAR constants.

Colour-space corruptions run on the whole batch in skimage's HSV; pixelate runs Pillow's BOX
filter once per pass on a mosaic of the batch (each pass is 1-D, so images never mix); JPEG is
inherently per image.
"""

from __future__ import annotations

from io import BytesIO

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import color

from lpt_core.shifts._core import CORRUPTIONS, from_unit, pick, to_unit

BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to V in HSV
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)  # factor on (x - per-channel mean)
SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))  # S * a + b in HSV
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # BOX down-scale factor
JPEG_QUALITY = (80, 65, 58, 50, 40)
# (alpha, sigma, affine) as fractions of the image side IMSIZE (32 in the reference).
ELASTIC = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))


def _hsv_shift(images: np.ndarray, channel: int, scale: float, offset: float) -> np.ndarray:
    hsv = color.rgb2hsv(to_unit(images), channel_axis=-1)
    hsv[..., channel] = np.clip(hsv[..., channel] * scale + offset, 0, 1)
    return from_unit(color.hsv2rgb(hsv, channel_axis=-1))


@CORRUPTIONS.register("brightness")
def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Adds a constant to the HSV value channel."""
    return _hsv_shift(images, 2, 1.0, pick(BRIGHTNESS, severity))


@CORRUPTIONS.register("saturate")
def saturate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Scales and shifts the HSV saturation channel (severities 1-2 desaturate, 3-5 saturate)."""
    return _hsv_shift(images, 1, *pick(SATURATE, severity))


@CORRUPTIONS.register("contrast")
def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Shrinks each channel towards its per-image mean."""
    x = to_unit(images)
    means = x.mean(axis=(1, 2), keepdims=True)
    return from_unit((x - means) * pick(CONTRAST, severity) + means)


def _box_pass(images: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pillow BOX resize of each image in a (N, H, W, 3) batch; only one of the sides may change."""
    n, h, w, _ = images.shape
    if height == h:  # horizontal pass: stack images vertically, rows never mix
        mosaic = Image.fromarray(np.ascontiguousarray(images.reshape(n * h, w, 3)))
        return np.asarray(mosaic.resize((width, n * h), Image.BOX)).reshape(n, h, width, 3)
    if width != w:
        raise ValueError(f"_box_pass changes one side at a time, got {(w, h)} -> {(width, height)}")
    side_by_side = np.ascontiguousarray(images.transpose(1, 0, 2, 3).reshape(h, n * w, 3))
    out = np.asarray(Image.fromarray(side_by_side).resize((n * w, height), Image.BOX))
    return out.reshape(height, n, w, 3).transpose(1, 0, 2, 3)


def box_resize(images: np.ndarray, size: int) -> np.ndarray:
    """Pillow ``resize((size, size), BOX)`` of every image: horizontal then vertical pass, as Pillow."""
    return _box_pass(_box_pass(images, size, images.shape[1]), size, size)


@CORRUPTIONS.register("pixelate")
def pixelate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """BOX down-scaling to int(H * factor) and back up to H."""
    side = images.shape[1]
    small = int(side * pick(PIXELATE, severity))
    return np.ascontiguousarray(box_resize(box_resize(images, small), side))


@CORRUPTIONS.register("jpeg_compression")
def jpeg_compression(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pillow JPEG encode/decode at the reference quality (Pillow's default chroma subsampling)."""
    quality = pick(JPEG_QUALITY, severity)
    out = np.empty_like(images)
    for i, img in enumerate(images):
        buffer = BytesIO()
        Image.fromarray(img).save(buffer, "JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def elastic_constants(severity: int, side: int) -> tuple[float, float, float]:
    """(alpha, sigma, affine) in pixels: the reference's fractions times IMSIZE = the image side."""
    return tuple(side * f for f in pick(ELASTIC, severity))  # type: ignore[return-value]


def _random_affine(image: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """Warp one float32 (H, W, 3) image by the affine map that moves three anchor points by ``jitter``."""
    size = np.float32(image.shape[:2])
    centre, square = size // 2, min(image.shape[:2]) // 3
    pts1 = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    matrix = cv2.getAffineTransform(pts1, (pts1 + jitter).astype(np.float32))
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101)


@CORRUPTIONS.register("elastic_transform")
def elastic_transform(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Random affine warp then a smooth random displacement field (bilinear, reflect borders)."""
    n, h, w, c = images.shape
    alpha, sigma, affine = elastic_constants(severity, h)
    x = to_unit(images, np.float32)
    jitter = rng.uniform(-affine, affine, size=(n, 3, 2)).astype(np.float32)
    x = np.stack([_random_affine(img, jit) for img, jit in zip(x, jitter)])
    fields = rng.uniform(-1, 1, size=(2, n, h, w))
    fields = ndimage.gaussian_filter(fields, (0, 0, sigma, sigma), mode="reflect", truncate=3)
    dx, dy = (fields * alpha).astype(np.float32)
    nn, yy, xx, zz = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    coords = (nn, yy + dy[..., None], xx + dx[..., None], zz)
    out = ndimage.map_coordinates(x, [a.ravel() for a in coords], order=1, mode="reflect")
    return from_unit(out.reshape(x.shape))
