"""Frost corruption of CIFAR-C (Hendrycks & Dietterich, ICLR 2019), CIFAR constants.

The reference blends the image with a random crop of one of the authors' frost photographs
(frost1.png ... frost5.jpg, resized x0.2 for 32 px). Those photographs cannot be fetched here, so
by default a seeded procedural ice texture stands in for them (see docs/SHIFTS.md for how far its
effect is from the photographs'). Point ``LPT_FROST_DIR`` (or ``corrupt(..., frost_dir=...)``) at a
folder holding the photographs to use them exactly as the reference does.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from lpt_core.shifts._core import CORRUPTIONS, REFERENCE_SIZE, from_255, pick

FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # (image weight, frost weight)
# The reference draws np.random.randint(5), so frost6.jpg is never used.
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
FROST_DIR_ENV = "LPT_FROST_DIR"
# Assumed mean and standard deviation (0..255) of a frost crop: bluish-white ice on a darker pane.
# These are NOT measured from the photographs (unavailable here); docs/SHIFTS.md states the effect.
TEXTURE_MEAN_RGB = np.array([115.0, 128.0, 140.0])
TEXTURE_STD = 51.0
TEXTURE_CELLS = (3, 6, 12, 24)  # lattice cells across the image per octave (scale-free)


def resolve_frost_dir(frost_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The frost photograph folder: the argument, else ``$LPT_FROST_DIR``, else None (procedural)."""
    chosen = frost_dir if frost_dir is not None else os.environ.get(FROST_DIR_ENV) or None
    if chosen is None:
        return None
    path = Path(chosen)
    missing = [name for name in FROST_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"frost folder {path} lacks {missing}; expected {list(FROST_FILES)}")
    return path


def frost_mode(frost_dir: str | os.PathLike[str] | None = None) -> str:
    """Which frost source ``corrupt`` will use: ``"photos:<dir>"`` or ``"procedural"`` (record it)."""
    path = resolve_frost_dir(frost_dir)
    return f"photos:{path}" if path is not None else "procedural"


def procedural_frost(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` seeded ice textures (n, size, size, 3), float in [0, 255].

    Ridged multi-octave value noise (1 - |2u - 1|)^4 gives thin branching veins like ice
    crystals; each texture is then normalised to the assumed frost mean colour and contrast.
    """
    total = np.zeros((n, size, size))
    amplitude = 1.0
    for cells in TEXTURE_CELLS:
        lattice = rng.random((n, cells + 1, cells + 1))
        field = ndimage.zoom(lattice, (1, size / (cells + 1), size / (cells + 1)), order=1)
        total += amplitude * (1.0 - np.abs(2.0 * field - 1.0)) ** 4
        amplitude *= 0.6
    mean = total.mean(axis=(1, 2), keepdims=True)
    std = total.std(axis=(1, 2), keepdims=True) + 1e-12
    standard = ((total - mean) / std)[..., None]
    return np.clip(TEXTURE_MEAN_RGB + TEXTURE_STD * standard, 0, 255)


@lru_cache(maxsize=4)
def _load_photos(folder: str, factor: float) -> tuple[np.ndarray, ...]:
    """The five frost photographs, BGR as cv2 reads them, resized by ``factor``."""
    photos = []
    for name in FROST_FILES:
        image = cv2.imread(str(Path(folder) / name))
        if image is None:
            raise ValueError(f"cannot read frost photograph {Path(folder) / name}")
        photos.append(cv2.resize(image, (0, 0), fx=factor, fy=factor))
    return tuple(photos)


def photo_frost(n: int, size: int, folder: Path, rng: np.random.Generator) -> np.ndarray:
    """``n`` random RGB crops (n, size, size, 3) of the photographs, as the reference takes them.

    The photographs are resized by 0.2 * size / 32 (0.2 at the reference's 32 px).
    """
    photos = _load_photos(str(folder), 0.2 * size / REFERENCE_SIZE)
    crops = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        photo = photos[int(rng.integers(len(photos)))]
        if photo.shape[0] <= size or photo.shape[1] <= size:
            raise ValueError(f"frost photograph of shape {photo.shape} is too small for {size} px crops")
        top, left = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        crops[i] = photo[top : top + size, left : left + size][..., [2, 1, 0]]
    return crops


def frost(
    images: np.ndarray,
    severity: int,
    rng: np.random.Generator,
    frost_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Blend ``a * image + b * frost`` in [0, 255] with photographs or the procedural texture."""
    image_weight, frost_weight = pick(FROST, severity)
    n, size = images.shape[0], images.shape[1]
    folder = resolve_frost_dir(frost_dir)
    layer = procedural_frost(n, size, rng) if folder is None else photo_frost(n, size, folder, rng)
    return from_255(image_weight * images.astype(np.float64) + frost_weight * layer)


CORRUPTIONS.register("frost")(frost)
