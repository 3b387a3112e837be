"""Shared machinery of the CIFAR-C corruptions: registry, input checks, seeding, conversions.

The corruptions reimplement, batched, the CIFAR (32 px) variant of Hendrycks & Dietterich,
"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations" (ICLR 2019),
script ``ImageNet-C/create_c/make_cifar_c.py`` of ``hendrycks/robustness``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lpt_core.registry import Registry

#: A corruption takes a checked uint8 batch (N, H, W, 3), a severity in 1..5 and a generator.
CorruptionFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

CORRUPTIONS: Registry[CorruptionFn] = Registry("corruption")

#: The 15 benchmark corruptions, in make_cifar_c.py order (this order also seeds the RNG).
BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)

#: The 4 held-out corruptions of the reference (validation only).
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

ALL_CORRUPTIONS: tuple[str, ...] = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: Side length the reference constants were written for.
REFERENCE_SIZE = 32


def pick(values: tuple, severity: int):  # noqa: ANN201 - returns whatever the table holds
    """The reference constant for ``severity`` (1-based) from a 5-entry table."""
    return values[severity - 1]


def check_images(images: object) -> np.ndarray:
    """Return ``images`` if it is a non-empty uint8 (N, H, W, 3) square batch, else raise ValueError."""
    if not isinstance(images, np.ndarray):
        raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must have dtype uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    n, h, w, _ = images.shape
    if n == 0 or h == 0 or w == 0:
        raise ValueError(f"images must be non-empty, got shape {images.shape}")
    if h != w:
        raise ValueError(f"images must be square (H == W), got H={h}, W={w}")
    if h < 8:
        raise ValueError(f"images must be at least 8x8 pixels, got {h}x{w}")
    return images


def check_severity(severity: object) -> int:
    """Return ``severity`` as an int if it is one of 1..5, else raise ValueError."""
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)):
        raise ValueError(f"severity must be an int in 1..5, got {severity!r}")
    if int(severity) not in SEVERITIES:
        raise ValueError(f"severity must be in 1..5, got {severity!r}")
    return int(severity)


def make_rng(seed: int, corruption: str, severity: int) -> np.random.Generator:
    """The generator for one (seed, corruption, severity): independent streams per condition."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    index = ALL_CORRUPTIONS.index(corruption)
    return np.random.default_rng([int(seed), index, int(severity)])


def to_unit(images: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """uint8 [0, 255] -> float [0, 1], as the reference's ``np.array(x) / 255.``."""
    return images.astype(dtype) / 255.0


def from_unit(x: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 as the reference: clip, scale by 255, then truncate (``np.uint8``)."""
    return from_255(np.clip(x, 0.0, 1.0) * 255.0)


def from_255(x: np.ndarray) -> np.ndarray:
    """float [0, 255] -> uint8 by clipping and truncation; NaN (never expected) is refused."""
    if np.isnan(x).any():
        raise FloatingPointError("corruption produced NaN values")
    return np.clip(x, 0.0, 255.0).astype(np.uint8)
