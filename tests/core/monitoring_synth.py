"""Synthetic model outputs with known answers for the monitoring tests (importable by name)."""

from __future__ import annotations

import numpy as np

from lpt_core.monitoring import ModelOutputs

SCALE = 20.0  # the monitor's default logit scale s


def longtail_counts(num_classes: int, n_max: int, rho: float) -> np.ndarray:
    """floor(n_max * (1/rho)^(i/(C-1))), at least 1 (the project's long-tail profile)."""
    i = np.arange(num_classes)
    return np.maximum(np.floor(n_max * (1.0 / rho) ** (i / (num_classes - 1))), 1).astype(np.int64)


def calibrated(n: int, num_classes: int, rng: np.random.Generator, low: float = 0.3) -> tuple[ModelOutputs, np.ndarray]:
    """A perfectly calibrated model: confidence u ~ U(low, 1) on the predicted class, the rest
    spread evenly; the label is the prediction with probability u, else uniform over the others."""
    u = rng.uniform(low, 1.0, n)
    pred = rng.integers(0, num_classes, n)
    probs = np.repeat(((1.0 - u) / (num_classes - 1))[:, None], num_classes, axis=1)
    probs[np.arange(n), pred] = u
    other = (pred + rng.integers(1, num_classes, n)) % num_classes
    labels = np.where(rng.random(n) < u, pred, other)
    return ModelOutputs((np.log(probs) / SCALE).astype(np.float32)), labels


def class_logits(labels: np.ndarray, mu: np.ndarray, rng: np.random.Generator, sigma: float = 0.12) -> np.ndarray:
    """Cosine logits: the true class ~ N(mu[y], sigma), the others ~ N(0, sigma), clipped to [-1, 1]."""
    c = rng.normal(0.0, sigma, size=(len(labels), len(mu)))
    c[np.arange(len(labels)), labels] += mu[labels]
    return np.clip(c, -1.0, 1.0).astype(np.float32)


def selections(
    labels: np.ndarray, pool: int, rng: np.random.Generator, p_pair: float = 0.7, shift: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """LPT-like top-2 picks: class y picks its own pair (2y, 2y+1) mod M with probability p_pair,
    else a random distinct pair; key cosines depend on the class."""
    n = len(labels)
    first, second = (2 * labels + shift) % pool, (2 * labels + 1 + shift) % pool
    r1 = rng.integers(0, pool, n)
    r2 = (r1 + rng.integers(1, pool, n)) % pool
    own = rng.random(n) < p_pair
    selected = np.stack([np.where(own, first, r1), np.where(own, second, r2)], axis=1).astype(np.int64)
    cosine = (0.4 + 0.02 * (labels % 3))[:, None] + rng.normal(0.0, 0.05, (n, 2))
    return selected, cosine.astype(np.float32)


def lpt_outputs(
    labels: np.ndarray, mu: np.ndarray, pool: int, rng: np.random.Generator, **kw: float
) -> ModelOutputs:
    """Class logits plus LPT-like selections for ``labels``."""
    selected, cosine = selections(labels, pool, rng, **kw)
    return ModelOutputs(class_logits(labels, mu, rng), selected, cosine)
