"""The real evaluator of the nightly job: each pair is one ``lpt_core.eval_worker.EvalWorker``
evaluation (``lpt_core.evaluate.evaluate_loaded`` on the shift batch's arrays), returned as a
Result file dict.

One evaluator is one worker: it keeps the backbones (built and fingerprinted once), the loaded
artifacts and the current batch between pairs, so a night's pairs, ordered batch by batch
(``app.units``), load each backbone and each batch once. torch, timm and the batch loader are
imported on first use only, so a night with nothing to evaluate never pays for them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from app.db.schema import utcnow
from app.settings import Settings


class RealEvaluator:
    """Callable ``PairSpec -> Result dict`` backed by lpt_core (see ``app.jobs.Evaluator``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backbone_weights = settings.backbone_weights or None
        self._worker: Any = None
        self._next_batch: dict[tuple[str, int, str], str] = {}

    def config(self) -> Any:
        """The :class:`lpt_core.evaluate.EvalConfig` of the settings (the one the pipeline uses too)."""
        from lpt_core.evaluate import EvalConfig

        rule = {"auto": None, "true": True, "false": False}[self.settings.eval_few_includes_20]
        return EvalConfig(device=self.settings.eval_device, amp=self.settings.eval_amp,
                          batch_size=self.settings.eval_batch_size, few_includes_20=rule)  # fmt: skip

    @property
    def worker(self) -> Any:
        """The :class:`lpt_core.eval_worker.EvalWorker` (made on first use)."""
        if self._worker is None:
            from lpt_core.eval_worker import EvalWorker

            self._worker = EvalWorker(self.config(), backbone_weights=self.backbone_weights,
                                      reuse=bool(self.settings.eval_reuse),
                                      compile=self.settings.eval_compile == "on")  # fmt: skip
        return self._worker

    def expect(self, specs: Sequence[Any]) -> None:
        """The order the next pairs come in: each pair's next batch is read while it is evaluated."""
        self._next_batch = {}
        for spec, nxt in zip(specs, specs[1:]):
            self._next_batch[_key(spec)] = nxt.batch_path

    def __call__(self, spec: Any) -> dict[str, Any]:
        result = self.worker.evaluate(spec.artifact_path, spec.batch_path, model_name=spec.model_name,
                                      next_batch=self._next_batch.get(_key(spec)))  # fmt: skip
        return complete_result(result.to_dict(), spec)

    def stats(self) -> dict[str, Any]:
        """The worker's counts (backbone builds, artifact loads, batch reads) and seconds."""
        return {} if self._worker is None else self._worker.stats.to_dict()

    def close(self) -> None:
        """Release the worker's backbones, artifacts and batch."""
        if self._worker is not None:
            self._worker.close()


def _key(spec: Any) -> tuple[str, int, str]:
    return (spec.model_name, spec.model_version, spec.batch_id)


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
