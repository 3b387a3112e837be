"""Small statistics for the nightly report: a two-proportion z-test and a Wald interval for the
difference of two accuracies (pure Python; accuracies are proportions over n images)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Change:
    """Accuracy change p_new - p_old with its confidence interval and two-sided p-value."""

    delta: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float


def two_proportion_change(p_old: float, n_old: int, p_new: float, n_new: int, alpha: float = 0.05) -> Change:
    """Compare two accuracies measured on independent samples of sizes ``n_old`` and ``n_new``.

    The p-value is the pooled two-proportion z-test's; the interval is the unpooled Wald interval
    at level 1 - ``alpha``. Raises ``ValueError`` for an empty sample or a proportion outside [0, 1].
    """
    for name, p, n in (("old", p_old, n_old), ("new", p_new, n_new)):
        if n < 1:
            raise ValueError(f"{name} sample size must be >= 1, got {n}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} accuracy must be in [0, 1], got {p}")
    delta = p_new - p_old
    pooled = (p_old * n_old + p_new * n_new) / (n_old + n_new)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_old + 1 / n_new))
    if se_pooled == 0.0:
        z, p_value = 0.0, 1.0  # both all-correct or all-wrong: no evidence of change
    else:
        z = delta / se_pooled
        p_value = math.erfc(abs(z) / math.sqrt(2))
    se = math.sqrt(p_old * (1 - p_old) / n_old + p_new * (1 - p_new) / n_new)
    q = NormalDist().inv_cdf(1 - alpha / 2)
    return Change(delta, delta - q * se, delta + q * se, z, p_value)


def is_significant_drop(change: Change, alpha: float) -> bool:
    """A regression: the accuracy fell and the z-test rejects "no change" at level ``alpha``."""
    return change.delta < 0 and change.p_value < alpha
