"""Synthetic inputs for benchmarks: smooth random uint8 images in the project's NHWC convention.

Pure noise would make blur, JPEG and pixelation costs unrepresentative, so images are random
low-resolution colour fields upsampled bilinearly (smooth regions and edges, like photos).
"""

from __future__ import annotations

import numpy as np


def synthetic_images(n: int, size: int, seed: int = 0, coarse: int = 4) -> np.ndarray:
    """``n`` smooth random uint8 images of shape (size, size, 3), reproducible from ``seed``."""
    if n < 1 or size < 1:
        raise ValueError(f"need n >= 1 and size >= 1, got n={n}, size={size}")
    if not 2 <= coarse <= size:
        raise ValueError(f"coarse grid must be in 2..size={size}, got {coarse}")
    rng = np.random.default_rng(seed)
    grid = rng.uniform(0.0, 255.0, size=(n, coarse, coarse, 3))
    pos = np.linspace(0.0, coarse - 1.0, size)
    lo = np.minimum(np.floor(pos).astype(int), coarse - 2)
    frac = (pos - lo)[None, :, None, None]
    rows = grid[:, lo] * (1 - frac) + grid[:, lo + 1] * frac  # interpolate along H
    frac_w = (pos - lo)[None, None, :, None]
    out = rows[:, :, lo] * (1 - frac_w) + rows[:, :, lo + 1] * frac_w  # and along W
    return np.clip(out, 0, 255).astype(np.uint8)


def synthetic_labels(n: int, num_classes: int, seed: int = 0) -> np.ndarray:
    """``n`` uniform random int64 labels in ``0..num_classes-1``."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return np.random.default_rng(seed).integers(0, num_classes, size=n, dtype=np.int64)

