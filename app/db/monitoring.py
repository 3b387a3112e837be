"""The store's label-free monitoring rows: each eval run's estimates (never metrics) and shift
detections, the night's Benjamini-Hochberg step over them, and late label sets of batches
(MONITORING_SPEC.md). With ``app.db.repository``, ``app.db.registry`` and ``app.db.views`` the
only SQL of the service; callers own the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.db.schema import Detection, Estimate, EvalRun, Metric, ShiftBatch

#: the detectors whose p-values enter the night's false-discovery control (label_shift has none)
TESTED = ("bbsd", "prompt_selection", "key_cosine")


def clear_run_rows(session: Session, run_id: int) -> None:
    """Remove every metric, estimate and detection of an eval run (a run being redone or failed)."""
    for table in (Metric, Estimate, Detection):
        session.execute(delete(table).where(table.run_id == run_id))


def write_monitoring(session: Session, run_id: int, monitoring: Mapping[str, Any] | None) -> int:
    """The estimates and detections of a result's ``monitoring`` block; returns the rows written."""
    if not monitoring:
        return 0
    errors = {(e["estimator"], e["group"]): e for e in monitoring.get("estimate_errors") or []}
    for e in monitoring.get("estimates") or []:
        err = errors.get((e["estimator"], e["group"]), {})
        session.add(Estimate(run_id=run_id, estimator=str(e["estimator"]), grp=str(e["group"]),
                             value=float(e["value"]), n=int(e["n"]), measured=err.get("measured"),
                             abs_error=err.get("abs_error")))  # fmt: skip
    rows = [Detection(run_id=run_id, detector=str(d["name"]), statistic=float(d["statistic"]),
                      p_value=float(d["pvalue"]), details_json=json.dumps(d.get("details") or {}, sort_keys=True))
            for d in monitoring.get("detectors") or []]  # fmt: skip
    shift = monitoring.get("label_shift")
    if shift:
        rows.append(Detection(run_id=run_id, detector="label_shift", statistic=float(shift["total_variation"]),
                              p_value=None, details_json=json.dumps(shift, sort_keys=True)))  # fmt: skip
    session.add_all(rows)
    session.flush()
    return len(monitoring.get("estimates") or []) + len(rows)


def night_tests(session: Session, job_run_id: int) -> list[Detection]:
    """The tested detections of the succeeded eval runs of one job run, in a stable order."""
    stmt = (select(Detection).join(EvalRun, EvalRun.id == Detection.run_id)
            .where(EvalRun.job_run_id == job_run_id, EvalRun.status == "succeeded",
                   Detection.detector.in_(TESTED), Detection.p_value.is_not(None))
            .order_by(Detection.run_id, Detection.detector))  # fmt: skip
    return list(session.scalars(stmt))


def set_verdicts(session: Session, rows: list[Detection], adjusted: list[float], rejected: list[bool]) -> None:
    """Record each detection's Benjamini-Hochberg adjusted p-value and verdict."""
    for row, p, r in zip(rows, adjusted, rejected, strict=True):
        row.p_adjusted, row.rejected = float(p), bool(r)
    session.flush()


def set_batch_labels(
    session: Session, batch_id: str, labels_hash: str, n_labeled: int, *, dvc_hash: str | None = None
) -> bool:
    """Record a batch's late label set (and the folder's new DVC md5); True when it changed (its
    pairs are then pending again)."""
    batch = session.get(ShiftBatch, batch_id)
    if batch is None:
        raise KeyError(f"unknown shift batch {batch_id!r}")
    if batch.labels_hash == labels_hash and batch.n_labeled == n_labeled:
        return False
    values: dict[str, Any] = {"labels_hash": labels_hash, "n_labeled": int(n_labeled)}
    if dvc_hash:
        values["dvc_hash"] = dvc_hash
    session.execute(update(ShiftBatch).where(ShiftBatch.id == batch_id).values(**values))
    return True


def night_estimates(session: Session, job_run_id: int, estimator: str) -> list[tuple[EvalRun, Estimate]]:
    """(eval run, overall estimate by ``estimator``) of the succeeded runs of one job run."""
    stmt = (select(EvalRun, Estimate).join(Estimate, Estimate.run_id == EvalRun.id)
            .where(EvalRun.job_run_id == job_run_id, EvalRun.status == "succeeded",
                   Estimate.estimator == estimator, Estimate.grp == "overall")
            .order_by(EvalRun.id))  # fmt: skip
    return [(run, est) for run, est in session.execute(stmt)]


def clean_top1(session: Session, model_version_id: int) -> float | None:
    """The version's measured overall top-1 on clean data (its latest clean run), or None."""
    stmt = (select(Metric.value).join(EvalRun, EvalRun.id == Metric.run_id)
            .join(ShiftBatch, ShiftBatch.id == EvalRun.batch_id)
            .where(EvalRun.model_version_id == model_version_id, EvalRun.status == "succeeded",
                   ShiftBatch.corruption == "none", Metric.name == "top1", Metric.grp == "overall")
            .order_by(EvalRun.finished_at.desc(), EvalRun.id.desc()).limit(1))  # fmt: skip
    return session.scalar(stmt)
