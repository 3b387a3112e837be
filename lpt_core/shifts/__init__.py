"""CIFAR-C common corruptions (Hendrycks & Dietterich, ICLR 2019) with the CIFAR (32 px) constants.

``corrupt(images, corruption, severity, seed)`` applies one of the 15 benchmark or 4 extra
corruptions of ``make_cifar_c.py`` to a uint8 (N, H, W, 3) batch, reproducibly from the seed.
Images corrupted here are *in-memory* CIFAR-C-style shifts, not the published CIFAR-100-C files.
"""

from __future__ import annotations

import os

import numpy as np

from lpt_core.shifts import blur, digital, noise, weather  # noqa: F401  (register corruptions)
from lpt_core.shifts._core import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    check_images,
    check_severity,
    make_rng,
)
from lpt_core.shifts._frost import FROST_DIR_ENV, frost_mode

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "FROST_DIR_ENV",
    "SEVERITIES",
    "corrupt",
    "frost_mode",
]


def corrupt(
    images: np.ndarray,
    corruption: str,
    severity: int,
    seed: int,
    *,
    frost_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Apply ``corruption`` at ``severity`` (1..5) to a uint8 (N, H, W, 3) batch; same seed, same bytes.

    ``frost_dir`` (or ``$LPT_FROST_DIR``) points frost at the authors' photographs; without it
    frost uses a procedural texture (see ``frost_mode``). Raises KeyError for an unknown
    corruption and ValueError for a bad batch, severity or seed.
    """
    fn = CORRUPTIONS.get(corruption)
    images = check_images(images)
    severity = check_severity(severity)
    rng = make_rng(seed, corruption, severity)
    if frost_dir is not None:
        if corruption != "frost":
            raise ValueError(f"frost_dir only applies to 'frost', not to {corruption!r}")
        out = fn(images, severity, rng, frost_dir=frost_dir)  # type: ignore[call-arg]
    else:
        out = fn(images, severity, rng)
    if out.shape != images.shape or out.dtype != np.uint8:
        raise RuntimeError(f"{corruption} returned {out.dtype} {out.shape}, expected uint8 {images.shape}")
    return out
