"""Prompt-selection drift for LPT (Dong et al., ICLR 2023): ours, per MONITORING_SPEC.md.

LPT's query picks the top-k (k = 2) group prompts per image. On a batch we test (a) whether the
prompt frequencies (counting every one of the k picks) differ from the reference's, with a
chi-square test of homogeneity on the 2 x M table (reference row, batch row), cells expected fewer
than 5 times in either row merged into one; and (b) whether the mean query-key cosine of the
selected keys differs from the reference's (Welch's two-sample t-test, Welch 1947).

Our choice, a deviation from a plain Pearson p-value: the k picks of one image are not independent
draws (pairs that co-occur inflate the statistic, two distinct picks per image deflate it) and the
reference row is a class-weighted, stratified sample, so chi2(M' - 1) is miscalibrated either way.
The p-value uses the second-order Rao-Scott correction (Rao & Scott, Annals of Statistics 1984):
under homogeneity X^2 is asymptotically sum_i lambda_i chi2_1, with lambda the eigenvalues of
A^(1/2) Cov(f_B - f_R) A^(1/2) (A the Pearson form), approximated by c * chi2_nu with matched mean
and variance (Satterthwaite 1946), images being the independent units. Cov(f_B) is the
per-image covariance of the weighted reference (the target population under the null) over n_B;
Cov(f_R) is that of a stratified mean, classes as strata (``reference.stratified_mean_cov``). With
multinomial covariances (independent picks) the correction vanishes: c = 1, nu = M' - 1. The
reference row of the table counts k * n_eff picks (Kish's effective sample size). The cosine
test's reference variance is the same stratified one, its degrees of freedom use n_eff - 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from lpt_core.monitoring.reference import effective_size, stratified_mean_cov

MIN_EXPECTED = 5.0


@dataclass(frozen=True, eq=False)
class SelectionReference:
    """Reference statistics of LPT's prompt selection (shares of picks over M prompts)."""

    pool_size: int
    top_k: int
    frequency: np.ndarray  # (M,) weighted share of picks per prompt, sums to 1
    image_cov: np.ndarray  # (M, M) weighted covariance of one image's pick shares X_i / k
    frequency_cov: np.ndarray  # (M, M) covariance of the weighted reference frequency
    picks: float  # k * n_eff: the reference row total of the contingency table
    cosine_mean: float  # weighted mean over images of the mean selected-key cosine
    cosine_mean_var: float  # variance of that weighted mean
    cosine_dof: float  # n_eff - 1, the reference's share of Welch's degrees of freedom


def pick_shares(selected: np.ndarray, pool_size: int) -> np.ndarray:
    """(N, M) float64: X_i / k, the share of image i's k picks that went to each prompt."""
    n, k = selected.shape
    if selected.max() >= pool_size:
        raise ValueError(f"selected prompt index {int(selected.max())} outside the pool of {pool_size}")
    shares = np.zeros((n, pool_size))
    np.add.at(shares, (np.repeat(np.arange(n), k), selected.ravel()), 1.0 / k)
    return shares


def fit_selection_reference(
    selected: np.ndarray, key_cosine: np.ndarray, labels: np.ndarray, weights: np.ndarray, prior: np.ndarray,
    pool_size: int,
) -> SelectionReference:
    """The reference selection statistics from (N, k) picks and cosines, labels, image weights and
    the (effective) target prior the weights implement."""
    shares = pick_shares(selected, pool_size)
    freq, freq_cov = stratified_mean_cov(shares, labels, prior)
    centred = shares - freq
    image_cov = (centred * weights[:, None]).T @ centred / weights.sum()  # one target-population image
    cosine = key_cosine.astype(np.float64).mean(axis=1, keepdims=True)
    cosine_mean, cosine_var = stratified_mean_cov(cosine, labels, prior)
    n_eff = effective_size(weights)
    return SelectionReference(
        pool_size=int(pool_size), top_k=int(selected.shape[1]), frequency=freq, image_cov=image_cov,
        frequency_cov=freq_cov, picks=float(selected.shape[1] * n_eff), cosine_mean=float(cosine_mean[0]),
        cosine_mean_var=float(cosine_var[0, 0]), cosine_dof=max(n_eff - 1.0, 1.0),
    )


def merge_cells(expected: np.ndarray, min_expected: float = MIN_EXPECTED) -> np.ndarray:
    """Cell index (M,) per prompt: those expected fewer than ``min_expected`` times (``expected``,
    in the smaller row) share cell 0, grown by the next rarest prompts until it reaches that count;
    every other prompt keeps a cell of its own (1, 2, ... in increasing expected count)."""
    order = np.argsort(expected, kind="stable")
    ranked = expected[order]
    rare = int(np.searchsorted(ranked, min_expected, side="left"))
    while 0 < rare < len(ranked) and ranked[:rare].sum() < min_expected:
        rare += 1
    cell = np.empty(len(expected), dtype=np.int64)
    first = 1 if rare else 0
    cell[order[:rare]] = 0
    cell[order[rare:]] = np.arange(first, first + len(ranked) - rare)
    return cell


def selection_chi2(ref: SelectionReference, selected: np.ndarray) -> dict[str, Any]:
    """Chi-square of homogeneity of the batch's prompt picks against the reference's (Rao-Scott p)."""
    n_batch, k = selected.shape
    if k != ref.top_k:
        raise ValueError(f"batch selects top-{k} prompts, the reference top-{ref.top_k}")
    pool = max(ref.pool_size, int(selected.max()) + 1)  # a prompt the reference never saw is drift, not an error
    f_ref, image_cov, freq_cov = _padded(ref, pool)
    f_batch = np.bincount(selected.ravel(), minlength=pool) / (k * n_batch)
    rows = np.array([ref.picks, k * n_batch])
    pooled = (rows[0] * f_ref + rows[1] * f_batch) / rows.sum()
    cell = merge_cells(rows.min() * pooled)
    cells = int(cell.max()) + 1
    merged = np.flatnonzero(cell == 0).tolist() if cells < pool else []
    if cells < 2:
        return {"statistic": 0.0, "pvalue": 1.0, "pvalue_uncorrected": 1.0, "cells": cells, "df": 0.0, "scale": 1.0,
                "merged_prompts": merged}
    merge = np.zeros((cells, pool))
    merge[cell, np.arange(pool)] = 1.0
    diff, share = merge @ (f_batch - f_ref), merge @ pooled
    factor = rows[0] * rows[1] / rows.sum()
    statistic = float(factor * np.sum(np.square(diff) / share))
    cov = merge @ (image_cov / n_batch + freq_cov) @ merge.T
    pvalue, scale, dof = _rao_scott(statistic, cov, factor / share)
    return {
        "statistic": statistic, "pvalue": pvalue, "pvalue_uncorrected": float(stats.chi2.sf(statistic, cells - 1)),
        "cells": cells, "df": dof, "scale": scale, "merged_prompts": merged,
    }


def _rao_scott(statistic: float, cov: np.ndarray, pearson: np.ndarray) -> tuple[float, float, float]:
    """(p-value, scale c, dof nu) of X^2 = D' diag(pearson) D with Cov(D) = ``cov``: c * chi2_nu."""
    root = np.sqrt(pearson)
    lam = np.clip(np.linalg.eigvalsh(root[:, None] * cov * root[None, :]), 0.0, None)
    if lam.sum() <= 0:  # the reference selection never varies: any difference is certain
        return float(statistic == 0.0), 1.0, 0.0
    scale, dof = float(np.square(lam).sum() / lam.sum()), float(lam.sum() ** 2 / np.square(lam).sum())
    return float(stats.chi2.sf(statistic / scale, dof)), scale, dof


def _padded(ref: SelectionReference, pool: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    extra = pool - ref.pool_size
    if extra == 0:
        return ref.frequency, ref.image_cov, ref.frequency_cov
    return np.pad(ref.frequency, (0, extra)), np.pad(ref.image_cov, (0, extra)), np.pad(ref.frequency_cov, (0, extra))


def cosine_test(ref: SelectionReference, key_cosine: np.ndarray) -> dict[str, float]:
    """Welch's t-test of the batch's mean selected-key cosine against the weighted reference mean."""
    cosine = key_cosine.astype(np.float64).mean(axis=1)
    n = len(cosine)
    if n < 2:
        raise ValueError(f"the cosine test needs a batch of at least 2 images, got {n}")
    batch_var = float(cosine.var(ddof=1)) / n
    total = batch_var + ref.cosine_mean_var
    if total <= 0:
        raise ValueError("the selected-key cosines are constant in both the reference and the batch")
    diff = float(cosine.mean()) - ref.cosine_mean
    dof = total**2 / (batch_var**2 / (n - 1) + ref.cosine_mean_var**2 / ref.cosine_dof)
    t = diff / np.sqrt(total)
    return {
        "statistic": float(t), "pvalue": float(2.0 * stats.t.sf(abs(t), dof)), "df": float(dof),
        "batch_mean": diff + ref.cosine_mean, "reference_mean": ref.cosine_mean,
    }
