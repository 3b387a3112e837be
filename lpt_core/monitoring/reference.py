"""Statistics fitted once per model on the labelled reference set (MONITORING_SPEC.md, "Calibration").

- Class-prior weights w_i = pi_target(y_i) / pi_R(y_i): the reference set's class mix (often
  long-tailed) is reweighted to the deployment prior, balanced by default. Our choice: classes with
  no reference image cannot be reweighted; the target prior is renormalised over the classes that
  are present and the absent ones are recorded by the caller. Weights are scaled to mean 1.
- Temperature T (Guo et al., ICML 2017): the weighted negative log-likelihood of
  softmax(s * c / T) minimised over log T by a bounded 1-D search (scipy ``minimize_scalar``).
- ATC threshold (Garg et al., "Leveraging Unlabeled Data to Predict Out-of-Distribution
  Performance", ICLR 2022): t such that the weighted share of reference scores > t equals the
  weighted reference accuracy. Our choice: t is the midpoint between the two reference scores
  that straddle the weighted (1 - accuracy)-quantile, so the share is met to within one image's
  weight and a new image is never compared with a score equal to a reference one.
- The variance of a weighted reference mean (selection frequencies, key cosines) is that of a
  stratified mean with the classes as strata (Cochran, Sampling Techniques, 1977, ch. 5).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

TEMPERATURE_BOUNDS = (0.05, 20.0)


def target_prior_vector(target_prior: str | np.ndarray, num_classes: int) -> np.ndarray:
    """The target class prior (C,) float64 summing to 1: "balanced" or a given non-negative vector."""
    if isinstance(target_prior, str):
        if target_prior != "balanced":
            raise ValueError(f"target_prior={target_prior!r}; expected 'balanced' or a vector of {num_classes} values")
        return np.full(num_classes, 1.0 / num_classes)
    prior = np.asarray(target_prior, dtype=np.float64)
    if prior.shape != (num_classes,) or (prior < 0).any() or not np.isfinite(prior).all() or prior.sum() <= 0:
        raise ValueError(f"target_prior must be {num_classes} non-negative finite values, sum > 0; got {prior!r}")
    return prior / prior.sum()


def prior_weights(labels: np.ndarray, target_prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weights (N,), effective target prior (C,)): w_i = pi_target(y_i) / pi_R(y_i), mean 1.

    The effective prior is ``target_prior`` renormalised over the classes present in ``labels``.
    """
    counts = np.bincount(labels, minlength=len(target_prior)).astype(np.float64)
    prior = np.where(counts > 0, target_prior, 0.0)
    if prior.sum() <= 0:
        raise ValueError("the target prior gives no mass to any class present in the reference labels")
    prior = prior / prior.sum()
    per_class = np.divide(prior * len(labels), counts, out=np.zeros_like(prior), where=counts > 0)
    weights = per_class[labels]
    return weights / weights.mean(), prior


def effective_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2."""
    return float(weights.sum() ** 2 / np.square(weights).sum())


def weighted_nll(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray, scale: float) -> float:
    """Weighted mean of -log softmax(scale * logits)[y]."""
    z = logits * scale
    nll = logsumexp(z, axis=1) - z[np.arange(len(labels)), labels]
    return float(np.dot(weights, nll) / weights.sum())


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    logit_scale: float,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
) -> float:
    """T minimising the weighted NLL of softmax(logit_scale * logits / T), searched within ``bounds``."""
    low, high = bounds
    if not 0 < low < high:
        raise ValueError(f"temperature bounds must satisfy 0 < low < high, got {bounds}")
    z = np.asarray(logits, dtype=np.float64)
    result = minimize_scalar(
        lambda log_t: weighted_nll(z, labels, weights, logit_scale / np.exp(log_t)),
        bounds=(np.log(low), np.log(high)), method="bounded", options={"xatol": 1e-7},
    )
    if not result.success:
        raise RuntimeError(f"temperature search failed: {result.message}")
    return float(np.exp(result.x))


def atc_threshold(scores: np.ndarray, weights: np.ndarray, accuracy: float) -> float:
    """t with weighted share of ``scores`` > t equal to ``accuracy`` (to within one image's weight)."""
    if not 0.0 <= accuracy <= 1.0 or len(scores) == 0:
        raise ValueError(f"need scores and an accuracy in [0, 1], got {len(scores)} scores and {accuracy}")
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    below = np.concatenate([[0.0], np.cumsum(weights[order]) / weights.sum()])  # share <= s[k-1], k=0..N
    k = int(np.argmin(np.abs(below - (1.0 - accuracy))))  # the k lowest scores fall at or below t
    if k == 0:
        return float(np.nextafter(s[0], -np.inf))
    if k == len(s):
        return float(s[-1])
    return float(0.5 * (s[k - 1] + s[k])) if s[k] > s[k - 1] else float(s[k - 1])


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """sum w x / sum w."""
    return float(np.dot(weights, values) / weights.sum())


def stratified_mean_cov(values: np.ndarray, labels: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class-prior-weighted mean of ``values`` (N, d) and its covariance (d, d) as a stratified mean.

    The weighted reference mean is sum_y pi(y) mean_y, a post-stratified estimator with the
    classes as strata, so its covariance is sum_y pi(y)^2 S_y / n_y with S_y the within-class
    covariance (Cochran, Sampling Techniques, ch. 5): between-class spread does not enter, since the
    reference's class counts are fixed by the split. A class with one image borrows the pooled
    within-class covariance.
    """
    num_classes = len(prior)
    n = np.bincount(labels, minlength=num_classes).astype(np.float64)
    sums = np.zeros((num_classes, values.shape[1]))
    np.add.at(sums, labels, values)
    means = np.divide(sums, n[:, None], out=np.zeros_like(sums), where=n[:, None] > 0)
    centred = values - means[labels]
    present = n > 0
    dof = max(len(labels) - int(present.sum()), 1)
    pooled = centred.T @ centred / dof
    per_image = np.divide(np.square(prior), n * (n - 1), out=np.zeros_like(n), where=n > 1)[labels]
    cov = (centred * per_image[:, None]).T @ centred
    cov += pooled * np.square(prior[n == 1]).sum()
    return prior[present] @ means[present], cov
