"""Classification, calibration and robustness metrics (pure numpy / pandas).

Shot groups follow LPT (Dong et al., ICLR 2023) and the long-tail literature: "many" > 100
training images, "medium" 20..100, "few" < 20; the released LPT code counts exactly 20 as few,
available as ``few_includes_20=True``. This module holds the project's *only* definition.

Group accuracy is by default the mean of per-class accuracies over the classes of the group
(``pooling="class_mean"``); its confidence interval is a class-stratified bootstrap, drawn exactly
and cheaply as per-class binomials. The released LPT evaluation (``eval_phase2.py``) pools instead:
correct predictions / test images over the group's classes (``pooling="pooled"``, Wilson interval).
On a class-balanced test split (Places-LT's 100 per class, CIFAR's) the two are equal.
Robustness metrics follow Hendrycks & Dietterich (ICLR 2019): CE_c = sum_s E_{s,c} /
sum_s E^ref_{s,c}, mCE its mean, relative CE on (E - E_clean).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

GROUPS = ("many", "medium", "few")
GROUP_POOLINGS = ("class_mean", "pooled")
ECE_BINS = 15


def shot_groups(class_counts: np.ndarray, few_includes_20: bool = False) -> np.ndarray:
    """Group name per class: "many" (> 100), "medium" (20..100), "few" (< 20, or <= 20)."""
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"class_counts must be a 1-D array of non-negative counts, got {counts!r}")
    few_limit = 20 if few_includes_20 else 19
    return np.where(counts > 100, "many", np.where(counts > few_limit, "medium", "few")).astype("<U6")


def wilson_interval(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; raises for n <= 0."""
    if n <= 0:
        raise ValueError(f"a confidence interval needs n > 0, got n={n}")
    z = _z(level)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2.0)


def class_mean_bootstrap(
    correct: np.ndarray, n: np.ndarray, rng: np.random.Generator, n_boot: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the mean per-class accuracy under a class-stratified bootstrap.

    Resampling a class's n_c samples with replacement gives Binomial(n_c, k_c / n_c) correct, so
    the bootstrap is drawn directly as binomials (exact, vectorised).
    """
    correct, n = np.asarray(correct, dtype=np.int64), np.asarray(n, dtype=np.int64)
    if len(n) == 0 or (n <= 0).any():
        raise ValueError(f"every class in a bootstrap needs n > 0, got n={n.tolist()}")
    draws = rng.binomial(n, correct / n, size=(n_boot, len(n))) / n
    means = draws.mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def per_class_accuracy(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(correct count, sample count) per class, each int64 (C,)."""
    labels = _check_labels(labels, num_classes)
    hit = np.asarray(preds) == labels
    return (
        np.bincount(labels, weights=hit, minlength=num_classes).astype(np.int64),
        np.bincount(labels, minlength=num_classes).astype(np.int64),
    )


def _check_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got range {labels.min()}..{labels.max()}")
    return labels


def macro_f1(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Macro-averaged F1 over the classes present in labels or predictions (zero division -> 0)."""
    labels = _check_labels(labels, num_classes)
    preds = np.asarray(preds, dtype=np.int64)
    tp = np.bincount(labels[preds == labels], minlength=num_classes)
    support = np.bincount(labels, minlength=num_classes)
    predicted = np.bincount(preds, minlength=num_classes)
    denom = support + predicted
    present = denom > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros(num_classes), where=present)
    return float(f1[present].mean())


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels (probabilities clipped at 1e-12)."""
    p = np.asarray(probs)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(p, 1e-12, None)).mean())


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE with ``n_bins`` equal-width confidence bins (lo, hi]: sum_b |B_b|/N * |acc_b - conf_b|."""
    probs = np.asarray(probs)
    conf = probs.max(axis=1)
    hit = probs.argmax(axis=1) == np.asarray(labels)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    acc_sum = np.bincount(bins, weights=hit, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / len(conf))


def _metric(name: str, group: str, value: float, ci: tuple[float, float] | None, n: int) -> dict[str, Any]:
    low, high = (None, None) if ci is None else ci
    return {"name": name, "group": group, "value": float(value), "ci_low": low, "ci_high": high, "n": int(n)}


def classification_metrics(
    logits: np.ndarray,
    labels: np.ndarray,
    class_counts: np.ndarray,
    *,
    logit_scale: float = 1.0,
    few_includes_20: bool = False,
    level: float = 0.95,
    seed: int = 0,
    pooling: str = "class_mean",
) -> dict[str, Any]:
    """All metrics of one evaluation: ``{"metrics": [rows], "per_class": {...}}``.

    Rows (name, group, value, ci_low, ci_high, n): top1 / error for overall, each non-empty shot
    group (accuracy per ``pooling``, see the module docstring) and each class present
    ("class:<i>"), macro_f1, nll and ece (15 bins) overall.
    Probabilities are softmax(logit_scale * logits) (LPT's cosine logits are scaled by s = 20).
    """
    _check_pooling(pooling)
    logits = np.asarray(logits, dtype=np.float64)
    counts = np.asarray(class_counts)
    num_classes = len(counts)
    if logits.ndim != 2 or logits.shape[1] != num_classes or len(logits) != len(labels):
        raise ValueError(f"logits {logits.shape} do not match {len(labels)} labels and {num_classes} classes")
    preds = logits.argmax(axis=1)
    probs = softmax(logit_scale * logits)
    correct, n = per_class_accuracy(preds, labels, num_classes)
    total, hits = int(n.sum()), int(correct.sum())
    rows = _accuracy_rows("overall", hits / total, wilson_interval(hits, total, level), total)
    rows += _group_rows(correct, n, shot_groups(counts, few_includes_20), np.random.default_rng(seed), level, pooling)
    rows += [
        _metric("macro_f1", "overall", macro_f1(preds, labels, num_classes), None, total),
        _metric("nll", "overall", nll(probs, labels), None, total),
        _metric("ece", "overall", expected_calibration_error(probs, labels), None, total),
    ]
    for c in np.flatnonzero(n):
        rows += _accuracy_rows(f"class:{c}", correct[c] / n[c], wilson_interval(correct[c], n[c], level), n[c])
    accuracy = np.divide(correct, n, out=np.full(num_classes, np.nan), where=n > 0)
    per_class = {
        "class_ids": list(range(num_classes)),
        "train_counts": counts.astype(int).tolist(),
        "accuracy": [None if np.isnan(a) else float(a) for a in accuracy],
        "n": n.astype(int).tolist(),
    }
    return {"metrics": rows, "per_class": per_class}


def _accuracy_rows(group: str, acc: float, ci: tuple[float, float], n: int) -> list[dict[str, Any]]:
    """A top1 row and its complementary error row."""
    return [_metric("top1", group, acc, ci, n), _metric("error", group, 1.0 - acc, (1.0 - ci[1], 1.0 - ci[0]), n)]


def _check_pooling(pooling: str) -> None:
    if pooling not in GROUP_POOLINGS:
        raise ValueError(f"group pooling must be one of {list(GROUP_POOLINGS)}, got {pooling!r}")


def _pooled_accuracy(correct: np.ndarray, n: np.ndarray, pooling: str) -> float:
    """Accuracy over some classes: the mean of their accuracies, or all their hits / all their images."""
    if pooling == "pooled":
        return float(correct.sum() / n.sum())
    return float((correct / n).mean())


def _group_rows(
    correct: np.ndarray, n: np.ndarray, groups: np.ndarray, rng: np.random.Generator, level: float,
    pooling: str = "class_mean",
) -> list[dict[str, Any]]:  # fmt: skip
    rows: list[dict[str, Any]] = []
    for group in GROUPS:
        members = (groups == group) & (n > 0)
        if not members.any():
            continue
        acc = _pooled_accuracy(correct[members], n[members], pooling)
        if pooling == "pooled":
            ci = wilson_interval(int(correct[members].sum()), int(n[members].sum()), level)
        else:
            ci = class_mean_bootstrap(correct[members], n[members], rng, level=level)
        rows += _accuracy_rows(group, acc, ci, int(n[members].sum()))
    return rows


def group_accuracy(
    preds: np.ndarray, labels: np.ndarray, class_counts: np.ndarray, few_includes_20: bool = False,
    pooling: str = "class_mean",
) -> dict[str, float]:  # fmt: skip
    """{"overall", "many", "medium", "few"} accuracy; groups pooled per ``pooling`` (module docstring)."""
    _check_pooling(pooling)
    counts = np.asarray(class_counts)
    correct, n = per_class_accuracy(preds, labels, len(counts))
    groups = shot_groups(counts, few_includes_20)
    out = {"overall": float(correct.sum() / n.sum())}
    for group in GROUPS:
        members = (groups == group) & (n > 0)
        if members.any():
            out[group] = _pooled_accuracy(correct[members], n[members], pooling)
    return out


# --- robustness -------------------------------------------------------------------------------


def _pivot_errors(table: pd.DataFrame, what: str) -> pd.DataFrame:
    """(corruption x severity) error matrix from long rows (corruption, severity, error)."""
    missing = {"corruption", "severity", "error"} - set(table.columns)
    if missing:
        raise ValueError(f"{what} table lacks columns {sorted(missing)}; has {list(table.columns)}")
    if table.duplicated(["corruption", "severity"]).any():
        raise ValueError(f"{what} table has duplicate (corruption, severity) rows")
    return table.pivot(index="corruption", columns="severity", values="error")


def _aligned(errors: pd.DataFrame, reference: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    e, r = _pivot_errors(errors, "model"), _pivot_errors(reference, "reference")
    r = r.reindex(index=e.index, columns=e.columns)
    if r.isna().to_numpy().any() or e.isna().to_numpy().any():
        lacking = [(c, s) for c in e.index for s in e.columns if pd.isna(r.loc[c, s]) or pd.isna(e.loc[c, s])]
        raise ValueError(f"reference or model lacks (corruption, severity) pairs {lacking[:10]}")
    return e, r


def corruption_error(errors: pd.DataFrame, reference: pd.DataFrame) -> pd.Series:
    """CE_c = sum_s E_{s,c} / sum_s E^ref_{s,c} per corruption (errors as fractions or %)."""
    e, r = _aligned(errors, reference)
    denom = r.sum(axis=1)
    if (denom <= 0).any():
        raise ValueError(f"reference has zero total error on {list(denom.index[denom <= 0])}")
    return (e.sum(axis=1) / denom).rename("ce")


def mce(errors: pd.DataFrame, reference: pd.DataFrame) -> float:
    """Mean corruption error: the mean of CE_c over the corruptions."""
    return float(corruption_error(errors, reference).mean())


def relative_corruption_error(
    errors: pd.DataFrame, clean_error: float, reference: pd.DataFrame, reference_clean_error: float
) -> pd.Series:
    """Relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^ref_{s,c} - E^ref_clean)."""
    e, r = _aligned(errors, reference)
    denom = (r - reference_clean_error).sum(axis=1)
    if (denom == 0).any():
        raise ValueError(f"reference degradation is zero on {list(denom.index[denom == 0])}")
    return ((e - clean_error).sum(axis=1) / denom).rename("relative_ce")


def relative_mce(
    errors: pd.DataFrame, clean_error: float, reference: pd.DataFrame, reference_clean_error: float
) -> float:
    """The mean of relative CE_c over the corruptions."""
    return float(relative_corruption_error(errors, clean_error, reference, reference_clean_error).mean())


def mean_corrupted_accuracy(table: pd.DataFrame) -> float:
    """Mean accuracy over all (corruption, severity) rows (RobustBench's "robust accuracy")."""
    if "accuracy" not in table.columns or table.empty:
        raise ValueError(f"need a non-empty table with an 'accuracy' column, got {list(table.columns)}")
    return float(table["accuracy"].mean())


def robustness_gap(clean: Mapping[str, float], shifted: Mapping[str, float]) -> pd.Series:
    """clean - shifted accuracy per group present in both (e.g. overall/many/medium/few)."""
    common = [g for g in clean if g in shifted]
    if not common:
        raise ValueError(f"no common groups between clean {list(clean)} and shifted {list(shifted)}")
    return pd.Series({g: float(clean[g]) - float(shifted[g]) for g in common}, name="gap")
