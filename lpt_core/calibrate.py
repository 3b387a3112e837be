"""A model's monitoring calibration, fitted once on labelled reference data it did not train on
(MONITORING_SPEC.md; :mod:`lpt_core.monitoring`) and stored in its artifact.

The training run fits it on the validation split right after training (``lpt train``, the
pipeline's train stages); ``lpt calibrate`` fits it for a model trained or imported elsewhere and
writes a new artifact (artifacts are immutable: a calibrated model is a new version). The
reference's class mix is weighted to the deployment prior (``target_prior``: balanced by
default, "train" for a deployment distributed like the training set, or a prior vector).
Predictions for the reference run in fp32: evaluate with ``amp: "off"`` (LPT_EVAL_AMP=off) where
bf16 would shift the logits the detectors compare.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
REFERENCES = ("val", "none")


@dataclass(frozen=True)
class CalibrationSpec:
    """Where a model's reference comes from and which class prior the deployment has."""

    reference: str = "val"  # "val": the prepared dataset's validation split | "none": no calibration
    target_prior: str | tuple[float, ...] = "balanced"  # "balanced" | "train" | one probability per class

    def __post_init__(self) -> None:
        if self.reference not in REFERENCES:
            raise ValueError(f"calibration.reference must be one of {list(REFERENCES)}, got {self.reference!r}")
        if isinstance(self.target_prior, str) and self.target_prior not in ("balanced", "train"):
            raise ValueError(f"calibration.target_prior must be 'balanced', 'train' or a list of class "
                             f"probabilities, got {self.target_prior!r}")  # fmt: skip


def target_prior(spec: CalibrationSpec, class_counts: np.ndarray) -> str | np.ndarray:
    """The target prior argument of :func:`lpt_core.monitoring.fit_calibration`."""
    if spec.target_prior == "train":
        counts = np.asarray(class_counts, dtype=np.float64)
        return counts / counts.sum()
    if isinstance(spec.target_prior, str):
        return spec.target_prior
    prior = np.asarray(spec.target_prior, dtype=np.float64)
    if prior.shape != (len(class_counts),) or (prior < 0).any() or not np.isclose(prior.sum(), 1.0):
        raise ValueError(f"calibration.target_prior needs {len(class_counts)} non-negative probabilities summing "
                         f"to 1, got {prior.tolist()}")  # fmt: skip
    return prior


def fit_reference(
    model: Any, images: np.ndarray, labels: np.ndarray, class_counts: np.ndarray, *, spec: CalibrationSpec,
    logit_scale: float, few_includes_20: bool, device: str = "cpu", batch_size: int = 256,
    info: dict[str, Any] | None = None,
) -> Any:  # fmt: skip
    """Fit the calibration of ``model`` (a Classifier) on reference ``images`` and ``labels``."""
    from lpt_core.evaluate import predict_outputs
    from lpt_core.monitoring import fit_calibration

    outputs = predict_outputs(model, images, batch_size=batch_size, device=device, amp="off")
    pool = getattr(getattr(model, "group_pool", None), "prompts", None)
    cal = fit_calibration(
        outputs, np.asarray(labels, dtype=np.int64), np.asarray(class_counts), logit_scale=logit_scale,
        target_prior=target_prior(spec, class_counts), few_includes_20=few_includes_20,
        pool_size=None if outputs.selected is None or pool is None else int(pool.shape[0]),
        info={"reference_images": int(len(labels)), "amp": "off", **(info or {})},
    )
    log.info("calibration on %d reference images (effective %.0f after prior weighting): temperature %.3f, "
             "weighted reference accuracy %.4f", len(labels), cal.effective_size, cal.temperature,
             cal.overall.accuracy)  # fmt: skip
    return cal


def calibrate_artifact(
    artifact: Path, images: np.ndarray, labels: np.ndarray, out: Path, *, spec: CalibrationSpec,
    reference: str, device: str = "cpu", backbone_weights: str | Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A copy of ``artifact`` at ``out`` with a calibration fitted on (images, labels); returns its meta."""
    from lpt_core.artifacts import RESERVED_KEYS, load_artifact, read_meta, save_artifact

    if Path(out).resolve() == Path(artifact).resolve():
        raise ValueError(f"--out {out} is the artifact itself: artifacts are immutable, write a new one")
    model, meta = load_artifact(artifact, backbone_weights=backbone_weights, device=device)
    rule = dict(meta.get("group_rule") or {})
    cal = fit_reference(model, images, labels, np.asarray(meta["class_counts"]), spec=spec,
                        logit_scale=float(meta.get("logit_scale", 20.0)),
                        few_includes_20=bool(rule.get("few_includes_20", False)), device=device,
                        info={"reference": reference})  # fmt: skip
    keep = {k: v for k, v in meta.items() if k not in RESERVED_KEYS}
    keep["calibration"] = {"reference": reference, "target_prior": json.loads(json.dumps(spec.target_prior)),
                           "calibrated_from": str(artifact)}  # fmt: skip
    save_artifact(out, model.cpu(), keep, calibration=cal)
    return read_meta(out)
