"""Noise corruptions of CIFAR-C (Hendrycks & Dietterich, ICLR 2019), CIFAR constants.

Every function draws its noise for the whole batch at once from the given generator.
"""

from __future__ import annotations

import numpy as np

from lpt_core.shifts._core import CORRUPTIONS, from_unit, pick, to_unit

# make_cifar_c.py constants, severity 1..5.
GAUSSIAN_SIGMA = (0.04, 0.06, 0.08, 0.09, 0.10)
SHOT_RATE = (500, 250, 100, 75, 50)
IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)
SPECKLE_SIGMA = (0.06, 0.1, 0.12, 0.16, 0.2)


@CORRUPTIONS.register("gaussian_noise")
def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive N(0, sigma) noise on [0, 1] pixels."""
    x = to_unit(images)
    return from_unit(x + rng.normal(scale=pick(GAUSSIAN_SIGMA, severity), size=x.shape))


@CORRUPTIONS.register("shot_noise")
def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon noise: poisson(x * rate) / rate."""
    rate = pick(SHOT_RATE, severity)
    return from_unit(rng.poisson(to_unit(images) * rate) / rate)


@CORRUPTIONS.register("impulse_noise")
def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise per pixel and channel, as skimage's ``random_noise(mode='s&p')``."""
    x = to_unit(images)
    flipped = rng.random(x.shape) <= pick(IMPULSE_AMOUNT, severity)
    salted = rng.random(x.shape) <= 0.5
    x[flipped & salted] = 1.0
    x[flipped & ~salted] = 0.0
    return from_unit(x)


@CORRUPTIONS.register("speckle_noise")
def speckle_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise x + x * N(0, sigma)."""
    x = to_unit(images)
    return from_unit(x + x * rng.normal(scale=pick(SPECKLE_SIGMA, severity), size=x.shape))
