"""Long-tailed training sets (CIFAR-100-LT protocol of Cao et al. 2019, used by LPT, Dong et al. ICLR 2023).

Class ``i`` of ``C`` keeps ``floor(n_max * (1/rho)^(i / (C - 1)))`` training images, in class
order; which images it keeps is a seeded draw. A validation split for model selection is then
held out per class from the long-tailed set (see :func:`holdout_sizes`); the test split is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def longtail_counts(n_max: int, num_classes: int, rho: float) -> list[int]:
    """Per-class image counts of an exponential profile with imbalance ratio ``rho`` (>= 1)."""
    if n_max < 1 or num_classes < 1:
        raise ValueError(f"n_max and num_classes must be >= 1, got n_max={n_max}, num_classes={num_classes}")
    if not rho >= 1:
        raise ValueError(f"imbalance ratio rho must be >= 1, got {rho}")
    if num_classes == 1:
        return [int(n_max)]
    # Same expression as the reference LDAM/LPT data code: img_max * (1/rho) ** (i / (C - 1.0)).
    return [int(math.floor(n_max * (1.0 / rho) ** (i / (num_classes - 1.0)))) for i in range(num_classes)]


def make_longtail(labels: np.ndarray, counts: Sequence[int], seed: int) -> np.ndarray:
    """Indices into ``labels`` keeping ``counts[c]`` seeded-random images of each class ``c`` (sorted)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = []
    for c, n in enumerate(counts):
        pool = np.flatnonzero(labels == c)
        if n > len(pool):
            raise ValueError(f"class {c} needs {n} images for the long-tailed profile but has only {len(pool)}")
        picked.append(rng.choice(pool, size=int(n), replace=False))
    extra = sorted(set(np.unique(labels).tolist()) - set(range(len(counts))))
    if extra:
        raise ValueError(f"labels {extra} are outside the {len(counts)} classes of the profile")
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def holdout_sizes(counts: Sequence[int], frac_or_per_class: float | int) -> list[int]:
    """Validation images held out per class.

    A float in [0, 1) holds out ``floor(frac * n)`` images, an int ``k`` holds out ``k``; either
    is capped at ``n - 1`` so every class keeps at least one training image, and a class with
    fewer than 2 images contributes none.
    """
    if isinstance(frac_or_per_class, bool) or frac_or_per_class < 0:
        raise ValueError(f"hold-out must be a fraction in [0, 1) or a count >= 0, got {frac_or_per_class!r}")
    if isinstance(frac_or_per_class, float) and not frac_or_per_class < 1:
        raise ValueError(f"hold-out fraction must be < 1, got {frac_or_per_class}")
    out = []
    for n in counts:
        want = math.floor(frac_or_per_class * n) if isinstance(frac_or_per_class, float) else int(frac_or_per_class)
        out.append(0 if n < 2 else min(want, n - 1))
    return out


def holdout_split(
    indices: np.ndarray, labels: np.ndarray, frac_or_per_class: float | int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` (rows of ``labels``) into (train, val) per :func:`holdout_sizes`, seeded."""
    indices = np.asarray(indices)
    lab = np.asarray(labels)[indices]
    classes = np.unique(lab)
    num = int(classes.max()) + 1 if len(classes) else 0
    counts = np.bincount(lab, minlength=num)
    sizes = holdout_sizes(counts.tolist(), frac_or_per_class)
    rng = np.random.default_rng(seed)
    val = [rng.choice(indices[lab == c], size=sizes[c], replace=False) for c in range(num) if sizes[c]]
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, indices.dtype)
    train_idx = np.setdiff1d(indices, val_idx)
    return train_idx, val_idx


def cap_per_class(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Sorted indices keeping at most ``cap`` seeded-random images per class."""
    if cap < 1:
        raise ValueError(f"per-class cap must be >= 1, got {cap}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        keep.append(pool if len(pool) <= cap else rng.choice(pool, size=cap, replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def select_classes(
    labels: np.ndarray, class_names: Sequence[str], keep: Sequence[str | int]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows of the classes ``keep`` (names or ids), relabelled 0..k-1 in the order of ``keep``.

    Returns (row indices, new labels for those rows, new class names).
    """
    names = list(class_names)
    ids = []
    for k in keep:
        if isinstance(k, str):
            if k not in names:
                raise ValueError(f"unknown class {k!r}; classes are {names}")
            ids.append(names.index(k))
        elif isinstance(k, (int, np.integer)) and 0 <= int(k) < len(names):
            ids.append(int(k))
        else:
            raise ValueError(f"class id {k!r} is out of range 0..{len(names) - 1}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"classes {list(keep)} contain a duplicate")
    labels = np.asarray(labels)
    mapping = np.full(max(len(names), int(labels.max(initial=0)) + 1), -1, dtype=np.int64)
    mapping[ids] = np.arange(len(ids))
    rows = np.flatnonzero(mapping[labels] >= 0)
    return rows, mapping[labels[rows]], [names[i] for i in ids]
