"""Label-free accuracy estimates of a batch, overall and per predicted shot group.

- ATC, average thresholded confidence (Garg et al., "Leveraging Unlabeled Data to Predict
  Out-of-Distribution Performance", ICLR 2022): the share of batch images whose score exceeds the
  reference threshold t, for both scores (max softmax "atc_max_conf", negative entropy
  "atc_neg_entropy").
- DoC, difference of confidences (Guillory et al., "Predicting with Confidence on Unseen
  Distributions", ICCV 2021): acc_R - (mean_R g - mean_B g), "doc"; and the plain average
  confidence on the batch, "avg_conf". Our choice: DoC is reported with g = max softmax only; a
  difference of mean negative entropies is not in units of accuracy.
- Per shot group the same rules run on the images whose *predicted* class lies in the group
  (group names "predicted:many", ...): the true group is unknown without labels. A group whose
  reference share was too small uses the overall reference statistics (``source="global"``).
- ``measured_accuracy``: for labelled batches, the share of correct predictions among the images
  predicted in each group, the quantity the predicted-group estimates estimate. It is not the
  result file's group top-1 (a mean of per-class accuracies over the true group).

Estimates carry their estimator's name and never a measured metric's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lpt_core.monitoring.outputs import SCORES
from lpt_core.monitoring.reference import atc_threshold, weighted_mean

ESTIMATORS = ("atc_max_conf", "atc_neg_entropy", "doc", "avg_conf")
OVERALL = "overall"
GROUP_PREFIX = "predicted:"


@dataclass(frozen=True)
class ReferenceStats:
    """Weighted reference accuracy, ATC thresholds and mean scores of one set of reference images."""

    accuracy: float
    thresholds: dict[str, float]
    mean_scores: dict[str, float]


def fit_reference_stats(scores: dict[str, np.ndarray], correct: np.ndarray, weights: np.ndarray) -> ReferenceStats:
    """Weighted accuracy, per-score ATC threshold and weighted mean score of reference images."""
    if len(correct) == 0:
        raise ValueError("reference statistics need at least one reference image, got none")
    accuracy = weighted_mean(correct.astype(np.float64), weights)
    return ReferenceStats(
        accuracy=accuracy,
        thresholds={name: atc_threshold(scores[name], weights, accuracy) for name in SCORES},
        mean_scores={name: weighted_mean(scores[name], weights) for name in SCORES},
    )


@dataclass(frozen=True)
class GroupCalibration:
    """Reference statistics for the images predicted in one shot group (or the overall fallback)."""

    group: str  # "many" | "medium" | "few"
    n_reference: int  # reference images whose predicted class is in the group
    source: str  # "group": fitted on those images; "global": too few, the overall statistics
    stats: ReferenceStats


@dataclass(frozen=True)
class Estimate:
    """One accuracy estimate: estimator name, group ("overall" or "predicted:<group>"), value, n."""

    estimator: str
    group: str
    value: float
    n: int
    source: str  # "group": that group's reference statistics; "global": the overall ones

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def atc_estimate(batch_scores: np.ndarray, threshold: float) -> float:
    """Share of batch scores above the ATC threshold."""
    return float(np.mean(batch_scores > threshold))


def doc_estimate(reference: ReferenceStats, batch_max_conf: np.ndarray) -> float:
    """acc_R - (mean_R max_conf - mean_B max_conf)."""
    return float(reference.accuracy - (reference.mean_scores["max_conf"] - batch_max_conf.mean()))


def estimates_for(
    reference: ReferenceStats, batch_scores: dict[str, np.ndarray], group: str, source: str
) -> list[Estimate]:
    """Every estimator on one set of batch images (non-empty) against ``reference``."""
    n = len(batch_scores["max_conf"])
    if n == 0:
        raise ValueError(f"no batch images for group {group!r}")
    values = {
        "atc_max_conf": atc_estimate(batch_scores["max_conf"], reference.thresholds["max_conf"]),
        "atc_neg_entropy": atc_estimate(batch_scores["neg_entropy"], reference.thresholds["neg_entropy"]),
        "doc": doc_estimate(reference, batch_scores["max_conf"]),
        "avg_conf": float(batch_scores["max_conf"].mean()),
    }
    return [Estimate(name, group, values[name], n, source) for name in ESTIMATORS]


@dataclass(frozen=True)
class Measured:
    """Measured top-1 of a labelled batch: overall, or among images predicted in a group."""

    name: str
    group: str
    value: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def measured_accuracy(
    preds: np.ndarray, labels: np.ndarray, class_groups: np.ndarray, groups: tuple[str, ...]
) -> list[Measured]:
    """Top-1 overall and, per group in ``groups`` with predicted images, among those images."""
    correct = preds == labels
    rows = [Measured("top1", OVERALL, float(correct.mean()), len(correct))]
    predicted = class_groups[preds]
    for group in groups:
        mask = predicted == group
        if mask.any():
            rows.append(Measured("top1", GROUP_PREFIX + group, float(correct[mask].mean()), int(mask.sum())))
    return rows
