"""The per-model calibration for label-free monitoring, fitted once on a labelled reference set the
model did not train on (MONITORING_SPEC.md, "Calibration").

It holds the temperature (Guo et al., ICML 2017), the class-prior weights, the weighted reference
accuracy, ATC thresholds (Garg et al., ICLR 2022) and mean scores for DoC (Guillory et al., ICCV
2021), overall and per predicted shot group, and what the detectors need: the reference
probabilities for BBSD and the weighted confusion matrix for BBSE (Lipton et al., ICML 2018), and
LPT's prompt-selection statistics. Shot groups come from ``lpt_core.metrics.shot_groups``.

Our choice for per-group statistics: a group is fitted on the reference images whose predicted
class lies in it when there are at least ``min_group_images`` of them (a raw count), otherwise it
uses the overall statistics; ``GroupCalibration.source`` records which.

Stored as a folder (written atomically): ``calibration.json`` (scalars and metadata, sorted keys)
and ``calibration.safetensors`` (arrays); no timestamps, so identical inputs give identical bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lpt_core.metrics import GROUPS, shot_groups
from lpt_core.monitoring import store
from lpt_core.monitoring.estimates import GroupCalibration, ReferenceStats, fit_reference_stats
from lpt_core.monitoring.ks import KSReference, ks_reference
from lpt_core.monitoring.label_shift import weighted_confusion
from lpt_core.monitoring.outputs import ModelOutputs, confidence_scores, log_probabilities
from lpt_core.monitoring.reference import (
    TEMPERATURE_BOUNDS,
    effective_size,
    fit_temperature,
    prior_weights,
    target_prior_vector,
)
from lpt_core.monitoring.selection import SelectionReference, fit_selection_reference

DEFAULT_LOGIT_SCALE = 20.0  # s of every loss on cosine logits (lpt_core.losses)
DEFAULT_MIN_GROUP_IMAGES = 100


@dataclass(frozen=True, eq=False)
class Calibration:
    """Everything :func:`lpt_core.monitoring.monitor_batch` needs for one model."""

    num_classes: int
    logit_scale: float
    temperature: float
    few_includes_20: bool
    min_group_images: int
    effective_size: float  # Kish's n_eff of the reference weights
    target_prior_name: str  # "balanced" or "given"
    missing_classes: tuple[int, ...]  # classes without reference images (weight and BBSE column 0)
    overall: ReferenceStats
    groups: tuple[GroupCalibration, ...]
    class_counts: np.ndarray  # (C,) int64 training counts (shot groups)
    target_prior: np.ndarray  # (C,) float64, renormalised over the classes present
    reference_labels: np.ndarray  # (N,) int64
    reference_weights: np.ndarray  # (N,) float64, mean 1
    reference_probs: np.ndarray  # (N, C) float32 softmax(s * c / T)
    confusion: np.ndarray  # (C, C) float64 weighted M[i, j] = P_R(y_hat = i, y = j)
    selection: SelectionReference | None = None
    reference_selected: np.ndarray | None = None  # (N, k) int64, LPT only
    reference_key_cosine: np.ndarray | None = None  # (N, k) float32, LPT only
    info: dict[str, Any] = field(default_factory=dict)  # caller's provenance (artifact hash, reference id)

    @property
    def reference_size(self) -> int:
        """N, the number of reference images."""
        return len(self.reference_labels)

    @property
    def class_groups(self) -> np.ndarray:
        """Shot group name per class (``lpt_core.metrics.shot_groups``)."""
        return shot_groups(self.class_counts, self.few_includes_20)

    @cached_property
    def ks_reference(self) -> KSReference:
        """The sorted, weighted reference probabilities for BBSD (built on first use)."""
        return ks_reference(self.reference_probs, self.reference_weights)

    @cached_property
    def confusion_pinv(self) -> np.ndarray:
        """pinv(M), the minimum-norm least-squares solver of BBSE (built on first use)."""
        return np.linalg.pinv(self.confusion)

    def metadata(self) -> dict[str, Any]:
        """The JSON-ready scalars and metadata (the content of ``calibration.json``)."""
        return store.metadata(self)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays (the content of ``calibration.safetensors``)."""
        return store.arrays(self)

    def save(self, directory: str | Path) -> Path:
        """Write the calibration folder atomically; returns it."""
        return store.save(self, Path(directory))

    @classmethod
    def load(cls, directory: str | Path) -> Calibration:
        """Read a folder written by :meth:`save`; refuses another schema or missing arrays."""
        return store.load(cls, Path(directory))


def fit_calibration(
    outputs: ModelOutputs,
    labels: np.ndarray,
    class_counts: np.ndarray,
    *,
    logit_scale: float = DEFAULT_LOGIT_SCALE,
    target_prior: str | np.ndarray = "balanced",
    pool_size: int | None = None,
    few_includes_20: bool = False,
    min_group_images: int = DEFAULT_MIN_GROUP_IMAGES,
    temperature_bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
    info: dict[str, Any] | None = None,
) -> Calibration:
    """Fit a model's monitoring calibration on its reference outputs and labels.

    ``class_counts`` are the training counts per class (they define the shot groups);
    ``pool_size`` is LPT's group-prompt pool size M (default: the largest selected index + 1);
    ``info`` is stored as-is for the caller's provenance (JSON values: lists, not tuples, so that
    a loaded calibration compares equal).
    """
    labels = _check_inputs(outputs, labels, class_counts, logit_scale, min_group_images)
    json.dumps(info or {})  # non-JSON provenance raises here, before any work
    counts = np.asarray(class_counts, dtype=np.int64)
    prior = target_prior_vector(target_prior, outputs.num_classes)
    weights, prior = prior_weights(labels, prior)
    temperature = fit_temperature(outputs.logits, labels, weights, logit_scale, temperature_bounds)
    log_probs = log_probabilities(outputs.logits, logit_scale, temperature)
    probs = np.exp(log_probs)
    preds = outputs.logits.argmax(axis=1)  # the prediction of lpt_core.metrics (T > 0 keeps the argmax)
    overall, groups = _accuracy_statistics(
        confidence_scores(log_probs, probs), preds, labels, weights, shot_groups(counts, few_includes_20),
        min_group_images,
    )
    selection = _fit_selection(outputs, labels, weights, prior, pool_size)
    return Calibration(
        num_classes=outputs.num_classes, logit_scale=float(logit_scale), temperature=temperature,
        few_includes_20=bool(few_includes_20), min_group_images=int(min_group_images),
        effective_size=effective_size(weights),
        target_prior_name="balanced" if isinstance(target_prior, str) else "given",
        missing_classes=tuple(int(c) for c in np.flatnonzero(np.bincount(labels, minlength=len(counts)) == 0)),
        overall=overall, groups=groups, class_counts=counts, target_prior=prior, reference_labels=labels,
        reference_weights=weights, reference_probs=probs.astype(np.float32),
        confusion=weighted_confusion(preds, labels, weights, outputs.num_classes), selection=selection,
        reference_selected=outputs.selected, reference_key_cosine=outputs.key_cosine, info=dict(info or {}),
    )


def _check_inputs(
    outputs: ModelOutputs, labels: np.ndarray, class_counts: np.ndarray, logit_scale: float, min_group: int
) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (outputs.num_images,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {outputs.num_images} integers, got shape {labels.shape} dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= outputs.num_classes:
        raise ValueError(f"labels must lie in 0..{outputs.num_classes - 1}, got {labels.min()}..{labels.max()}")
    if np.shape(class_counts) != (outputs.num_classes,):
        raise ValueError(f"class_counts must have {outputs.num_classes} entries, got shape {np.shape(class_counts)}")
    if not logit_scale > 0 or min_group < 1:
        raise ValueError(f"need logit_scale > 0 and min_group_images >= 1, got {logit_scale} and {min_group}")
    return labels.astype(np.int64)


def _accuracy_statistics(
    scores: dict[str, np.ndarray], preds: np.ndarray, labels: np.ndarray, weights: np.ndarray,
    class_groups: np.ndarray, min_images: int,
) -> tuple[ReferenceStats, tuple[GroupCalibration, ...]]:
    """Overall and per-predicted-group reference statistics; a group without classes is left out."""
    correct = preds == labels
    overall = fit_reference_stats(scores, correct, weights)
    groups = tuple(
        _fit_group(g, class_groups[preds] == g, scores, correct, weights, overall, min_images)
        for g in GROUPS if (class_groups == g).any()
    )
    return overall, groups


def _fit_group(
    group: str, mask: np.ndarray, scores: dict[str, np.ndarray], correct: np.ndarray, weights: np.ndarray,
    overall: ReferenceStats, min_images: int,
) -> GroupCalibration:
    n = int(mask.sum())
    if n < min_images:
        return GroupCalibration(group, n, "global", overall)
    stats = fit_reference_stats({k: v[mask] for k, v in scores.items()}, correct[mask], weights[mask])
    return GroupCalibration(group, n, "group", stats)


def _fit_selection(
    outputs: ModelOutputs, labels: np.ndarray, weights: np.ndarray, prior: np.ndarray, pool_size: int | None
) -> SelectionReference | None:
    if not outputs.has_selection:
        if pool_size is not None:
            raise ValueError(f"pool_size={pool_size} given, but the outputs carry no prompt selection (LPT phase 2)")
        return None
    assert outputs.selected is not None and outputs.key_cosine is not None  # has_selection
    largest = int(outputs.selected.max())
    pool = largest + 1 if pool_size is None else int(pool_size)
    if pool <= largest:
        raise ValueError(f"pool_size={pool_size}, but a selected prompt index is {largest}")
    return fit_selection_reference(outputs.selected, outputs.key_cosine, labels, weights, prior, pool)
