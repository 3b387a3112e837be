"""The seeded store the dashboard tests share (importable under a unique name; not a conftest)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy.engine import Engine

from app.db.schema import (
    Alert,
    EvalRun,
    JobRun,
    Metric,
    Model,
    ModelAlias,
    ModelEvent,
    ModelVersion,
    ShiftBatch,
)
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
        dataset="toy-lt", corruption=corruption, severity=severity, size=N, labeled=True, n_labeled=N,
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


# --- label-free monitoring: an unlabeled production batch, and estimates on the labelled ones -----

PROD = "prod-1122"  # production images without labels, evaluated on the third night
PROD_SIZE = 800
#: the unlabeled batch's estimates per model (overall), and the predicted-group offsets from them
PROD_ESTIMATES = {"lpt_main": {"atc_max_conf": 0.612, "atc_neg_entropy": 0.598, "doc": 0.630, "avg_conf": 0.655},
                  "ft_base": {"atc_max_conf": 0.548, "atc_neg_entropy": 0.541, "doc": 0.560, "avg_conf": 0.590}}
GROUP_OFFSETS = {"many": (0.09, 500), "medium": (-0.09, 180), "few": (-0.30, 120)}
#: (statistic, p-value) per detector; ft_base (not LPT) has no prompt-selection tests
PROD_TESTS = {"lpt_main": {"bbsd": (0.21, 0.0004), "prompt_selection": (31.2, 0.002), "key_cosine": (-1.1, 0.27)},
              "ft_base": {"bbsd": (0.12, 0.01)}}
#: BBSE's estimated class prior of the batch (the reference prior is balanced): the few-shot class 3 grows
PROD_PRIOR = [0.30, 0.20, 0.15, 0.35]
#: estimate - measured on the labelled shifted batches, per estimator, on night 0 (doubled on night 1;
#: lpt_main over-estimates, ft_base under-estimates)
EST_BIAS = {"atc_max_conf": 0.02, "atc_neg_entropy": 0.03, "doc": 0.04, "avg_conf": 0.08}
EXPECTED_MONITORING = {
    "lpt_estimate": "61.2%", "ft_estimate": "54.8%",
    "bh_adjusted": {("lpt_main", "bbsd"): 0.0016, ("lpt_main", "prompt_selection"): 0.004,
                    ("lpt_main", "key_cosine"): 0.27, ("ft_base", "bbsd"): 0.01 * 4 / 3},
    "mae_lpt_atc": {0: 0.02, 1: 0.04},  # night -> mean absolute error of ATC for lpt_main
    "tv": 0.15,  # 0.5 * (0.05 + 0.05 + 0.10 + 0.10) from the balanced prior
}


def monitoring_block(values: dict[str, float], tests: dict[str, tuple[float, float]], prior: list[float],
                     n: int) -> dict:
    """A result's ``monitoring`` block (``MonitorResult.to_dict()``) of an unlabeled batch."""
    import numpy as np

    from lpt_core.monitoring import (
        DetectorResult,
        Estimate,
        LabelShiftEstimate,
        MonitorResult,
    )

    rows = [Estimate(name, "overall", v, n, "group") for name, v in values.items()]
    rows += [Estimate(name, f"predicted:{g}", v + off, gn, "group") for g, (off, gn) in GROUP_OFFSETS.items()
             for name, v in values.items()]
    reference = np.full(len(prior), 1 / len(prior))
    shift = LabelShiftEstimate(np.asarray(prior), reference, np.asarray(prior) / reference, len(prior))
    detectors = tuple(DetectorResult(name, s, p, {}) for name, (s, p) in tests.items())
    return MonitorResult(n, 1.3, tuple(rows), (), detectors, shift).to_dict()


def _prod_batch() -> ShiftBatch:
    at = T0 + timedelta(days=2)
    return ShiftBatch(id=PROD, kind="real", source="incoming", dataset="toy-lt", corruption="unknown", severity=0,
                      size=PROD_SIZE, content_hash=f"{PROD:0<64}"[:64], dvc_hash=f"md5{PROD}",
                      path=f"data/shifts/{PROD}", validation_status="passed", validation_json="{}",
                      created_at=at, registered_at=at, labeled=False, n_labeled=0, labels_hash="")


def _labelled_estimates(s, run: EvalRun, model: str) -> None:
    """Estimates with the measured top-1 and the error on a labelled run (ORM rows)."""
    from app.db.schema import Estimate

    acc = s.query(Metric).filter_by(run_id=run.id, name="top1", grp="overall").one().value
    sign = 1.0 if model == "lpt_main" else -1.0
    night = (run.started_at - T0).days
    for name, bias in EST_BIAS.items():
        err = bias * (1 + night)
        s.add(Estimate(run_id=run.id, estimator=name, grp="overall", value=acc + sign * err, n=N, measured=acc,
                       abs_error=err))


def add_monitoring(engine: Engine) -> None:
    """Add a third night: the unlabeled batch ``PROD`` evaluated by both models (estimates and
    detections through ``repository.complete_eval_run``, then the night's Benjamini-Hochberg step)
    and a shift alert; and estimates with measurements on every labelled shifted batch."""
    from app.db import monitoring, repository
    from lpt_core.monitoring import benjamini_hochberg

    at = T0 + timedelta(days=2)
    with session_scope(engine) as s:
        job = JobRun(trigger="cron", status="succeeded", started_at=at, finished_at=at + timedelta(minutes=3),
                     pairs_evaluated=2, pairs_failed=0, code_version="test")
        s.add_all([job, _prod_batch()])
        s.flush()
        versions = {v.model.name: v for v in s.query(ModelVersion).all()}
        for name, values in PROD_ESTIMATES.items():
            run = EvalRun(model_version_id=versions[name].id, batch_id=PROD, code_version="test", job_run_id=job.id,
                          status="running", started_at=at)
            s.add(run)
            s.flush()
            block = monitoring_block(values, PROD_TESTS[name], PROD_PRIOR, PROD_SIZE)
            repository.complete_eval_run(s, run.id, {"metrics": [], "monitoring": block,
                                                     "run": {"eval_seconds": 1.2, "device": "cpu"}})
        tests = monitoring.night_tests(s, job.id)
        fdr = benjamini_hochberg([t.p_value for t in tests], 0.05)
        monitoring.set_verdicts(s, tests, list(fdr.adjusted), list(fdr.reject))
        for run in s.query(EvalRun).filter(EvalRun.status == "succeeded", EvalRun.batch_id != PROD).all():
            if s.get(ShiftBatch, run.batch_id).corruption != "none":
                _labelled_estimates(s, run, versions_by_id(versions)[run.model_version_id])
        s.add(Alert(job_run_id=job.id, model_version_id=versions["lpt_main"].id, batch_id=PROD, kind="shift",
                    message=f"lpt_main on {PROD}: shift detected by bbsd, prompt_selection (BH, alpha 0.05)", at=at))


def versions_by_id(versions: dict[str, ModelVersion]) -> dict[int, str]:
    """model version id -> model name."""
    return {v.id: name for name, v in versions.items()}
