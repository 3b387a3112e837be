"""False-discovery-rate control over one night's shift tests (Benjamini & Hochberg, "Controlling
the False Discovery Rate", JRSS B 1995), through ``scipy.stats.false_discovery_control``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import false_discovery_control


@dataclass(frozen=True, eq=False)
class FDRResult:
    """BH-adjusted p-values and which tests are discoveries at ``alpha``, in the input order."""

    adjusted: np.ndarray  # (m,) float64
    reject: np.ndarray  # (m,) bool: adjusted <= alpha
    alpha: float


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray, alpha: float) -> FDRResult:
    """Benjamini-Hochberg step-up over ``pvalues`` (e.g. every detector of every (model, batch) of
    a night, from ``MonitorResult.pvalues()``); rejections control the FDR at ``alpha``."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or not ((p >= 0) & (p <= 1)).all():
        raise ValueError(f"p-values must be a 1-D sequence of values in [0, 1], got {p!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if len(p) == 0:
        return FDRResult(np.zeros(0), np.zeros(0, dtype=bool), float(alpha))
    adjusted = false_discovery_control(p, method="bh")
    return FDRResult(adjusted, adjusted <= alpha, float(alpha))
