"""The real evaluator of the nightly job: load the shift batch's arrays and call
``lpt_core.evaluate.evaluate_artifact`` on the model artifact, returning a Result file dict.

torch, timm and the batch loader are imported on first use only, so a night with nothing to
evaluate never pays for them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.db.schema import utcnow
from app.settings import Settings


class RealEvaluator:
    """Callable ``PairSpec -> Result dict`` backed by lpt_core (see ``app.jobs.Evaluator``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backbone_weights = settings.backbone_weights or None

    def config(self) -> Any:
        """The :class:`lpt_core.evaluate.EvalConfig` of the settings (the one the pipeline uses too)."""
        from lpt_core.evaluate import EvalConfig

        rule = {"auto": None, "true": True, "false": False}[self.settings.eval_few_includes_20]
        return EvalConfig(device=self.settings.eval_device, amp=self.settings.eval_amp,
                          batch_size=self.settings.eval_batch_size, few_includes_20=rule)  # fmt: skip

    def __call__(self, spec: Any) -> dict[str, Any]:
        from lpt_core.data.batches import load_batch
        from lpt_core.evaluate import evaluate_artifact

        batch = load_batch(Path(spec.batch_path))
        result = evaluate_artifact(
            Path(spec.artifact_path), batch.images, batch.labels, self.config(),
            backbone_weights=self.backbone_weights, model_name=spec.model_name,
        )
        return complete_result(result.to_dict(), spec)


def complete_result(raw: Any, spec: Any) -> dict[str, Any]:
    """A Result file dict from ``EvalResult.to_json()`` output (dict or JSON text), with the
    model and shift sections and the code version filled in from what the store knows."""
    out = json.loads(raw) if isinstance(raw, str) else dict(raw)
    model = dict(out.get("model") or {})
    model.update(name=spec.model_name, version=spec.model_version, method=spec.method, artifact=spec.artifact_path,
                 artifact_sha256=spec.artifact_sha256)
    out["model"] = model
    out["shift"] = {"id": spec.batch_id, "kind": spec.batch_kind, "dataset": spec.dataset,
                    "corruption": spec.corruption, "severity": spec.severity, "size": spec.size,
                    "content_hash": spec.content_hash, "dvc_hash": spec.dvc_hash}
    out["code_version"] = spec.code_version
    out.setdefault("schema", "lpt-result/2")
    run = dict(out.get("run") or {})
    run.setdefault("created_at", utcnow().isoformat())
    out["run"] = run
    return out
