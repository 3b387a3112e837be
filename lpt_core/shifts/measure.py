"""Measurements behind docs/SHIFTS.md: throughput per corruption and the frost stand-in's effect.

Run ``OMP_NUM_THREADS=1 MAGICK_THREAD_LIMIT=1 taskset -c 0 python -m lpt_core.shifts.measure``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from lpt_core.shifts import ALL_CORRUPTIONS, corrupt
from lpt_core.shifts._frost import FROST, TEXTURE_MEAN_RGB


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` CIFAR-like test images: upsampled 4x4 colour fields plus mild noise, uint8."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 1, size=(n, 4, 4, 3))
    smooth = ndimage.zoom(small, (1, size / 4, size / 4, 1), order=1)
    return (np.clip(smooth + rng.normal(0, 0.05, smooth.shape), 0, 1) * 255).astype(np.uint8)


def throughput(images: np.ndarray, severity: int = 3, seed: int = 0) -> dict[str, float]:
    """Images per second of ``corrupt`` for every corruption at ``severity`` on ``images``."""
    rates = {}
    for name in ALL_CORRUPTIONS:
        start = time.perf_counter()
        corrupt(images, name, severity, seed)
        rates[name] = len(images) / (time.perf_counter() - start)
    return rates


def frost_effect(images: np.ndarray, seed: int = 0) -> list[dict[str, float]]:
    """Per severity: measured mean signed and absolute change of the procedural frost, and the
    mean change ``(a - 1) * E[x] + b * E[frost]`` that the blend weights imply (before clipping)."""
    rows = []
    x_mean = float(images.mean())
    frost_mean = float(TEXTURE_MEAN_RGB.mean())
    for severity, (a, b) in enumerate(FROST, start=1):
        delta = corrupt(images, "frost", severity, seed).astype(np.float64) - images
        rows.append({
            "severity": severity,
            "measured_mean_delta": float(delta.mean()),
            "measured_mean_abs_delta": float(np.abs(delta).mean()),
            "implied_mean_delta": (a - 1) * x_mean + b * frost_mean,
            "per_grey_level_of_frost_mean": b,
        })
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the throughput table and the frost table as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args(argv)
    images = smooth_images(args.n, args.size, seed=0)
    print(f"| corruption | images/s ({args.n} x {args.size}px, severity 3) |\n|---|---|")
    for name, rate in throughput(images).items():
        print(f"| {name} | {rate:,.0f} |")
    print("\n| severity | mean delta | mean abs delta | implied mean delta | d(implied)/d(frost mean) |")
    print("|---|---|---|---|---|")
    for row in frost_effect(images):
        print("| {severity} | {measured_mean_delta:.1f} | {measured_mean_abs_delta:.1f} | "
              "{implied_mean_delta:.1f} | {per_grey_level_of_frost_mean} |".format(**row))
    print(f"\nmean clean pixel {images.mean():.1f}")


if __name__ == "__main__":
    main()
