"""BBSE: black-box shift estimation of the batch's class prior (Lipton et al., "Detecting and
Correcting for Label Shift with Black Box Predictors", ICML 2018).

With the weighted reference confusion matrix M[i, j] = P_R(y_hat = i, y = j) (columns sum to the
target prior) and the batch's prediction rates q[i] = P_B(y_hat = i), the importance weights w
solve M w = q: the minimum-norm least-squares solution (pseudo-inverse, computed once per
calibration), clipped at 0. The estimated batch prior is pi_B(j) = w_j * pi_target(j), renormalised.
Classes without reference images have an all-zero column and get w_j = 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def weighted_confusion(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray, num_classes: int) -> np.ndarray:
    """M[i, j] = weighted share of reference images predicted i with label j (C, C), summing to 1."""
    flat = np.bincount(preds * num_classes + labels, weights=weights, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes) / weights.sum()


@dataclass(frozen=True, eq=False)
class LabelShiftEstimate:
    """The BBSE prior of one batch and the classes whose share changed most."""

    prior: np.ndarray  # (C,) estimated batch prior
    reference_prior: np.ndarray  # (C,) the target prior the reference was weighted to
    importance: np.ndarray  # (C,) w, clipped at 0
    top: int

    @property
    def total_variation(self) -> float:
        """0.5 * sum_j |pi_B(j) - pi_target(j)|."""
        return float(0.5 * np.abs(self.prior - self.reference_prior).sum())

    def largest_changes(self) -> list[dict[str, Any]]:
        """The ``top`` classes by |pi_B - pi_target|, largest first, with both shares and the change."""
        change = self.prior - self.reference_prior
        order = np.argsort(-np.abs(change), kind="stable")[: self.top]
        return [
            {"class": int(j), "reference_share": float(self.reference_prior[j]),
             "estimated_share": float(self.prior[j]), "change": float(change[j])}
            for j in order
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the estimated prior, total variation from the target prior, largest changes."""
        return {
            "estimator": "bbse", "prior": self.prior.tolist(), "total_variation": self.total_variation,
            "largest_changes": self.largest_changes(),
        }


def bbse(
    confusion_pinv: np.ndarray, target_prior: np.ndarray, batch_preds: np.ndarray, *, top: int = 5
) -> LabelShiftEstimate:
    """Estimate the batch's class prior from its predictions (``confusion_pinv`` = pinv(M))."""
    num_classes = len(target_prior)
    q = np.bincount(batch_preds, minlength=num_classes) / len(batch_preds)
    w = np.clip(confusion_pinv @ q, 0.0, None)
    mass = w * target_prior
    if mass.sum() <= 0:
        raise ValueError("BBSE gave zero importance to every class; the reference confusion matrix is degenerate")
    return LabelShiftEstimate(mass / mass.sum(), target_prior, w, min(top, num_classes))
