"""One (model, batch) of label-free monitoring: every accuracy estimate and every shift detector.

``monitor_batch`` applies a model's :class:`Calibration` to the outputs of one forward pass over
a batch (``lpt_core.evaluate.predict_outputs``): ATC (Garg et al., ICLR 2022) and DoC / average
confidence (Guillory et al., ICCV 2021) overall and per predicted shot group; BBSD (Lipton et al.,
ICML 2018; Rabanser et al., NeurIPS 2019); the BBSE label-shift estimate (Lipton et al., ICML
2018); for LPT, prompt-selection drift and the key-cosine test. Its p-values are per batch; over a
night, combine them with :func:`lpt_core.monitoring.benjamini_hochberg` (Benjamini & Hochberg 1995)
before alerting. Everything is vectorised over images (measured cost: the package docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lpt_core.metrics import GROUPS
from lpt_core.monitoring.calibration import Calibration
from lpt_core.monitoring.estimates import (
    ESTIMATORS,
    GROUP_PREFIX,
    OVERALL,
    Estimate,
    Measured,
    estimates_for,
    measured_accuracy,
)
from lpt_core.monitoring.ks import bbsd
from lpt_core.monitoring.label_shift import LabelShiftEstimate, bbse
from lpt_core.monitoring.outputs import ModelOutputs, confidence_scores, log_probabilities
from lpt_core.monitoring.selection import cosine_test, selection_chi2

RESULT_SCHEMA = "lpt-monitor/1"
DETECTORS = ("bbsd", "prompt_selection", "key_cosine")  # the last two for LPT only


@dataclass(frozen=True)
class DetectorResult:
    """One shift test on one batch: its statistic, p-value and test-specific details."""

    name: str
    statistic: float
    pvalue: float
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"name": self.name, "statistic": self.statistic, "pvalue": self.pvalue, "details": self.details}


@dataclass(frozen=True, eq=False)
class MonitorResult:
    """Every estimate and detector result of one (model, batch)."""

    n_images: int
    temperature: float
    estimates: tuple[Estimate, ...]
    measured: tuple[Measured, ...]  # empty for an unlabelled batch
    detectors: tuple[DetectorResult, ...]
    label_shift: LabelShiftEstimate

    def pvalues(self) -> dict[str, float]:
        """{detector name: p-value}, the inputs of the night's Benjamini-Hochberg step."""
        return {d.name: d.pvalue for d in self.detectors}

    def estimate(self, estimator: str, group: str = OVERALL) -> float:
        """The value of ``estimator`` for ``group`` ("overall" or "predicted:<group>"); raises if absent."""
        for row in self.estimates:
            if row.estimator == estimator and row.group == group:
                return row.value
        groups = sorted({r.group for r in self.estimates})
        raise KeyError(f"no estimate {estimator!r} for group {group!r}; groups: {groups}, estimators: {ESTIMATORS}")

    def estimate_errors(self) -> list[dict[str, Any]]:
        """For a labelled batch: each estimate against the measured top-1 of the same group."""
        measured = {m.group: m.value for m in self.measured}
        return [
            {"estimator": e.estimator, "group": e.group, "estimate": e.value, "measured": measured[e.group],
             "abs_error": abs(e.value - measured[e.group]), "n": e.n}
            for e in self.estimates if e.group in measured
        ]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this result (no NaN, no timestamps)."""
        return {
            "schema": RESULT_SCHEMA, "n_images": self.n_images, "temperature": self.temperature,
            "estimates": [e.to_dict() for e in self.estimates], "measured": [m.to_dict() for m in self.measured],
            "estimate_errors": self.estimate_errors(), "detectors": [d.to_dict() for d in self.detectors],
            "label_shift": self.label_shift.to_dict(),
        }


def monitor_batch(
    calibration: Calibration, outputs: ModelOutputs, *, labels: np.ndarray | None = None, top_classes: int = 5
) -> MonitorResult:
    """Estimate the batch's accuracy and test it for shift against ``calibration`` (same model).

    ``labels`` (optional) add the measured top-1, overall and per predicted group, on the images
    whose label is known (-1 marks an image without a label: labels that arrived for a sample);
    estimates and detectors always use every image. ``top_classes`` is how many classes the
    label-shift estimate lists.
    """
    _check_batch(calibration, outputs)
    log_probs = log_probabilities(outputs.logits, calibration.logit_scale, calibration.temperature)
    probs = np.exp(log_probs)
    scores = confidence_scores(log_probs, probs)
    preds = outputs.logits.argmax(axis=1)
    estimates = _estimates(calibration, scores, preds)
    measured: tuple[Measured, ...] = ()
    if labels is not None:
        labels = _check_labels(labels, outputs)
        known = labels >= 0
        if known.any():
            measured = tuple(measured_accuracy(preds[known], labels[known], calibration.class_groups, GROUPS))
    return MonitorResult(
        n_images=outputs.num_images, temperature=calibration.temperature, estimates=estimates, measured=measured,
        detectors=_detectors(calibration, outputs, probs.astype(np.float32)),
        label_shift=bbse(calibration.confusion_pinv, calibration.target_prior, preds, top=top_classes),
    )


def _estimates(cal: Calibration, scores: dict[str, np.ndarray], preds: np.ndarray) -> tuple[Estimate, ...]:
    rows = estimates_for(cal.overall, scores, OVERALL, "group")
    predicted = cal.class_groups[preds]
    for group in cal.groups:
        mask = predicted == group.group
        if mask.any():  # a group nobody was predicted in has no estimate, never NaN
            rows += estimates_for(group.stats, {k: v[mask] for k, v in scores.items()},
                                  GROUP_PREFIX + group.group, group.source)
    return tuple(rows)


def _detectors(cal: Calibration, outputs: ModelOutputs, probs: np.ndarray) -> tuple[DetectorResult, ...]:
    found = [_result("bbsd", bbsd(cal.ks_reference, probs))]
    if cal.selection is not None and outputs.selected is not None and outputs.key_cosine is not None:
        found.append(_result("prompt_selection", selection_chi2(cal.selection, outputs.selected)))
        found.append(_result("key_cosine", cosine_test(cal.selection, outputs.key_cosine)))
    return tuple(found)


def _result(name: str, test: dict[str, Any]) -> DetectorResult:
    details = {k: v for k, v in test.items() if k not in ("statistic", "pvalue")}
    return DetectorResult(name, float(test["statistic"]), float(test["pvalue"]), details)


def _check_batch(cal: Calibration, outputs: ModelOutputs) -> None:
    if outputs.num_classes != cal.num_classes:
        raise ValueError(f"batch logits have {outputs.num_classes} classes, the calibration {cal.num_classes}")
    if outputs.num_images < 2:
        raise ValueError(f"a monitored batch needs at least 2 images, got {outputs.num_images}")
    if outputs.has_selection != (cal.selection is not None):
        has = "carry" if outputs.has_selection else "lack"
        raise ValueError(f"the batch outputs {has} prompt selections but the calibration "
                         f"{'has' if cal.selection is not None else 'has no'} selection reference: another model?")


def _check_labels(labels: np.ndarray, outputs: ModelOutputs) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (outputs.num_images,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {outputs.num_images} integers, got shape {labels.shape} dtype {labels.dtype}")
    if labels.min() < -1 or labels.max() >= outputs.num_classes:
        raise ValueError(f"labels must lie in 0..{outputs.num_classes - 1} (-1: no label), got "
                         f"{labels.min()}..{labels.max()}")
    return labels.astype(np.int64)
