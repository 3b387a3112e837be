"""BBSD: black-box shift detection on softmax outputs (Lipton et al., "Detecting and Correcting for
Label Shift with Black Box Predictors", ICML 2018; Rabanser et al., "Failing Loudly: An Empirical
Study of Methods for Detecting Dataset Shift", NeurIPS 2019).

For each class j a two-sample Kolmogorov-Smirnov test between the reference's and the batch's
p_j(x); the batch's p-value is min_j p_j * C (Bonferroni), capped at 1.

The reference is weighted (class-prior weights, MONITORING_SPEC.md), so its empirical CDF is
F_R(x) = sum_i w_i 1[x_i <= x] / sum_i w_i and the statistic is D = sup_x |F_R(x) - F_B(x)|,
computed exactly (both right- and left-limits at every batch point) with one sorted search per
class. Our choice of p-value: the asymptotic two-sample distribution (Smirnov 1939; Kolmogorov's
limit law), p = kstwobign.sf(D * sqrt(n_eff * n_B / (n_eff + n_B))), with the reference size
replaced by Kish's effective sample size n_eff = (sum w)^2 / sum w^2, the variance-equivalent
size of a weighted mean. The limit law is never smaller than scipy's finite-n rule of
``ks_2samp(method="asymp")`` (kstwo.sf(D, round(en))): above it by at most 0.01 for en >= 1000,
0.03 for en >= 100, more for a handful of images (conservative), and it costs microseconds where
kstwo.sf takes seconds for thousands of images and many classes.
Kish's size is exact for weights independent of the value and approximate when the weights (a
function of the label) correlate with p_j; tests/core/test_monitoring_detectors.py checks the
false-alarm rate on a long-tailed reference whose p_j depends on the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True, eq=False)
class KSReference:
    """Per class, the sorted reference values and the weighted CDF at each of them."""

    sorted_values: np.ndarray  # (C, N) float32, each row ascending
    cdf: np.ndarray  # (C, N + 1) float64: cdf[j, m] = weighted share of the m smallest values
    effective_size: float


def ks_reference(values: np.ndarray, weights: np.ndarray) -> KSReference:
    """Prepare weighted reference values (N, C) for repeated two-sample KS tests."""
    cols = np.ascontiguousarray(np.asarray(values, dtype=np.float32).T)
    order = np.argsort(cols, axis=1, kind="stable")
    sorted_w = weights[order] / weights.sum()
    cdf = np.concatenate([np.zeros((cols.shape[0], 1)), np.cumsum(sorted_w, axis=1)], axis=1)
    cdf[:, -1] = 1.0  # exact, whatever the rounding of the cumulative sum
    n_eff = float(weights.sum() ** 2 / np.square(weights).sum())
    return KSReference(np.take_along_axis(cols, order, axis=1), cdf, n_eff)


def weighted_ks_statistics(ref: KSReference, batch: np.ndarray) -> np.ndarray:
    """D_j = sup_x |F_R,j(x) - F_B,j(x)| per column j of ``batch`` (n, C) (batch unweighted)."""
    cols = np.sort(np.ascontiguousarray(np.asarray(batch, dtype=np.float32).T), axis=1)
    num_classes, n = cols.shape
    if num_classes != ref.sorted_values.shape[0] or n == 0:
        raise ValueError(f"batch must be (n > 0, {ref.sorted_values.shape[0]}), got {tuple(batch.shape)}")
    below = np.empty(cols.shape, dtype=np.intp)  # reference values < each batch value
    at_or_below = np.empty(cols.shape, dtype=np.intp)
    for j in range(num_classes):  # one vectorised search per class, over all batch images
        below[j] = np.searchsorted(ref.sorted_values[j], cols[j], side="left")
        at_or_below[j] = np.searchsorted(ref.sorted_values[j], cols[j], side="right")
    rank = np.arange(n, dtype=np.float64) / n
    # on [b_(k-1), b_k) the batch CDF is k/n: F_R - F_B peaks just below b_k, F_B - F_R at b_(k-1)
    d_plus = (np.take_along_axis(ref.cdf, below, axis=1) - rank).max(axis=1)
    d_minus = (rank + 1.0 / n - np.take_along_axis(ref.cdf, at_or_below, axis=1)).max(axis=1)
    return np.maximum(np.maximum(d_plus, d_minus), 0.0)


def ks_pvalues(statistics: np.ndarray, effective_size: float, n_batch: int) -> np.ndarray:
    """Asymptotic two-sample KS p-values with the reference size ``effective_size`` (n_eff)."""
    en = effective_size * n_batch / (effective_size + n_batch)
    return np.clip(stats.kstwobign.sf(np.asarray(statistics) * np.sqrt(en)), 0.0, 1.0)


def bbsd(ref: KSReference, batch_probs: np.ndarray) -> dict[str, float | int]:
    """BBSD on softmax outputs: Bonferroni-combined per-class KS p-value and the most shifted class."""
    statistics = weighted_ks_statistics(ref, batch_probs)
    pvalues = ks_pvalues(statistics, ref.effective_size, len(batch_probs))
    worst = int(np.argmin(pvalues))
    return {
        "statistic": float(statistics[worst]), "pvalue": float(min(1.0, pvalues[worst] * len(pvalues))),
        "class": worst, "class_pvalue": float(pvalues[worst]), "effective_reference_size": ref.effective_size,
    }
