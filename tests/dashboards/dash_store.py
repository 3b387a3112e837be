"""The seeded store the dashboard tests share (importable under a unique name; not a conftest)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy.engine import Engine

from app.db.schema import Alert, EvalRun, JobRun, Metric, Model, ModelAlias, ModelEvent, ModelVersion, ShiftBatch
from app.db.session import init_db, session_scope

T0 = datetime(2026, 11, 20, 2, 30, tzinfo=timezone.utc)
N = 1000
CLASS_COUNTS = [500, 120, 50, 5]  # many, many, medium, few
# (corruption, severity) -> top-1 per model; ("none", 0) is the clean test split.
ACC = {
    "lpt_main": {("none", 0): 0.80, ("gaussian_noise", 1): 0.70, ("gaussian_noise", 3): 0.50, ("fog", 1): 0.60},
    "ft_base": {("none", 0): 0.85, ("gaussian_noise", 1): 0.60, ("gaussian_noise", 3): 0.40, ("fog", 1): 0.50},
}
MODELS = {"lpt_main": ("lpt", "deployed", 92_160, 1_009_000), "ft_base": ("full_ft", "baseline", 5_400_000, 5_400_000)}
EXPECTED = {  # figures the pages must show, computed by hand from ACC
    "lpt_main": {"clean": "80.0%", "shifted": "60.0%", "gap": "20.0%"},
    "ft_base": {"clean": "85.0%", "shifted": "50.0%", "gap": "35.0%"},
    "shifted_diff": "+10.0 pp",
    "headline": "lpt_main (LPT, deployed) against ft_base (full fine-tuning)",
}
FAILED_ERROR = "RuntimeError: backbone fingerprint mismatch (demo of a failure)"


def _batch(corruption: str, severity: int, night: int) -> ShiftBatch:
    bid = "clean-test" if corruption == "none" else f"{corruption}-s{severity}"
    return ShiftBatch(
        id=bid, kind="clean" if corruption == "none" else "generated", source="lpt_core.shifts",
        dataset="toy-lt", corruption=corruption, severity=severity, size=N,
        content_hash=f"{bid:0<64}"[:64], dvc_hash=None if corruption == "fog" else f"md5{bid}",
        path=f"data/shifts/{bid}", validation_status="passed",
        validation_json=json.dumps({"success": True, "statistics": {"evaluated_expectations": 7}}),
        created_at=T0 + timedelta(days=night), registered_at=T0 + timedelta(days=night),
    )


def _metrics(run_id: int, acc: float) -> list[Metric]:
    rows = [Metric(run_id=run_id, name="top1", grp="overall", value=acc, ci_low=acc - 0.03,
                   ci_high=acc + 0.03, n=N)]
    for grp, delta in (("many", 0.1), ("medium", 0.0), ("few", -0.2)):
        rows.append(Metric(run_id=run_id, name="top1", grp=grp, value=acc + delta, n=N // 4))
    for cid, delta in enumerate((0.1, 0.05, 0.0, -0.2)):
        rows.append(Metric(run_id=run_id, name="top1", grp=f"class:{cid}", value=acc + delta, n=N // 4))
    return rows


def _register(s, name: str, method: str, state: str, trainable: int, stored: int, sha: str) -> ModelVersion:
    """Model ``name`` with version 1 in ``state`` (deployed = the alias on a candidate version)."""
    model = Model(name=name, method=method, created_at=T0)
    s.add(model)
    s.flush()
    version = ModelVersion(model_id=model.id, version=1, backbone="vit_tiny_test", backbone_fingerprint="f" * 64,
                           artifact_path=f"models/{name}", artifact_sha256=sha, trainable_params=trainable,
                           stored_params=stored, data_version="md5toy", created_at=T0,
                           stage="candidate" if state == "deployed" else state,
                           class_counts_json=json.dumps(CLASS_COUNTS))
    s.add(version)
    s.flush()
    if state == "deployed":
        s.add(ModelAlias(alias="deployed", version_id=version.id, updated_at=T0))
        s.flush()
    return version


def seed_store(engine: Engine, report: Path | None = None) -> None:
    """Write two models x four batches (two nights), one failed run, an alert and a promotion."""
    init_db(engine)
    with session_scope(engine) as s:
        models = {name: _register(s, name, method, state, trainable, stored, name[0] * 64)
                  for name, (method, state, trainable, stored) in MODELS.items()}
        job = JobRun(trigger="cron", status="succeeded", started_at=T0, finished_at=T0 + timedelta(minutes=5),
                     pairs_evaluated=8, pairs_failed=1, code_version="test",
                     report_path=str(report) if report else None)
        s.add(job)
        batches = {key: _batch(*key, night=i % 2) for i, key in enumerate(ACC["lpt_main"])}
        s.add_all(batches.values())
        s.flush()
        for name, table in ACC.items():
            for key, acc in table.items():
                at = T0 + timedelta(days=list(table).index(key) % 2)
                run = EvalRun(model_version_id=models[name].id, batch_id=batches[key].id, code_version="test",
                              job_run_id=job.id, status="succeeded", started_at=at, finished_at=at,
                              eval_seconds=1.5, images_per_second=666.0, device="cpu")
                s.add(run)
                s.flush()
                s.add_all(_metrics(run.id, acc))
        s.add(EvalRun(model_version_id=models["lpt_main"].id, batch_id="fog-s1", code_version="older",
                      job_run_id=job.id, status="failed", error=FAILED_ERROR, started_at=T0, finished_at=T0))
        s.add(Alert(job_run_id=job.id, model_version_id=models["ft_base"].id, batch_id="gaussian_noise-s3",
                    kind="regression", message="ft_base fell 4.0 pp on gaussian_noise-s3", at=T0))
        s.add(ModelEvent(model_version_id=models["lpt_main"].id, from_state="candidate", to_state="deployed",
                         reason="beats the baseline on shifted batches", at=T0 + timedelta(hours=1)))


def add_model(engine: Engine, name: str, method: str, state: str, acc: float) -> None:
    """Register one more model evaluated on every batch of the seeded store at top-1 ``acc``."""
    with session_scope(engine) as s:
        model = _register(s, name, method, state, 92_160, 92_160, name[-1] * 64)
        job = s.query(JobRun).order_by(JobRun.id).first()
        for batch in s.query(ShiftBatch).all():
            run = EvalRun(model_version_id=model.id, batch_id=batch.id, code_version="test", job_run_id=job.id,
                          status="succeeded", started_at=batch.created_at, finished_at=batch.created_at)
            s.add(run)
            s.flush()
            s.add_all(_metrics(run.id, acc))
