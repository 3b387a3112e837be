"""Every write of the service and the reads the service itself needs: batches, job runs, eval runs,
metrics and alerts here, the model registry in ``app.db.registry`` (these two and the dashboard's
read-only ``app.db.views`` are the only modules with SQL).

Writers insert by natural key with ``ON CONFLICT`` (SQLite >= 3.24 and PostgreSQL share the
syntax), so rerunning an ingest or a job never duplicates rows. Callers own the transaction
(``app.db.session.session_scope``); nothing here commits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from app.db.monitoring import clear_run_rows, write_monitoring
from app.db.registry import deployed_version, state_of
from app.db.schema import (
    DEPLOYED,
    Alert,
    Detection,
    Estimate,
    EvalRun,
    JobRun,
    Metric,
    Model,
    ModelAlias,
    ModelEvent,
    ModelVersion,
    ShiftBatch,
    utcnow,
)
from app.db.upsert import insert_for, insert_ignore

#: version stages the nightly job evaluates (and the deployed version, whatever its stage)
EVALUATED_STAGES = ("candidate", "baseline")


# --- shift batches -----------------------------------------------------------------------------

def upsert_batch(session: Session, values: Mapping[str, Any]) -> tuple[ShiftBatch, bool]:
    """Register a shift batch by id; returns (row, created).

    Refuses (``ValueError``) an id that is already registered with other content, and content
    that is already registered under another id.
    """
    other = session.scalars(
        select(ShiftBatch).where(ShiftBatch.content_hash == values["content_hash"])
    ).first()
    if other is not None and other.id != values["id"]:
        raise ValueError(
            f"shift batch {values['id']!r} has the same content ({values['content_hash'][:12]}) "
            f"as the registered batch {other.id!r}"
        )
    created = insert_ignore(session, ShiftBatch, values, ["id"])
    row = session.get_one(ShiftBatch, values["id"], populate_existing=True)
    if row.content_hash != values["content_hash"]:
        raise ValueError(
            f"shift batch {row.id!r} is registered with content {row.content_hash[:12]}, "
            f"not {values['content_hash'][:12]}: batch ids are immutable, use a new id"
        )
    return row, created


def get_batch(session: Session, batch_id: str) -> ShiftBatch:
    """The batch ``batch_id``; ``KeyError`` naming it when unknown."""
    row = session.get(ShiftBatch, batch_id)
    if row is None:
        raise KeyError(f"unknown shift batch {batch_id!r}")
    return row


def batch_ids(session: Session) -> set[str]:
    """Ids of every registered batch (one query: a night with nothing new stays cheap)."""
    return set(session.scalars(select(ShiftBatch.id)))


def list_batches(session: Session, *, passed_only: bool = True) -> list[ShiftBatch]:
    """Registered batches, oldest first (by registration, then id)."""
    stmt = select(ShiftBatch).order_by(ShiftBatch.registered_at, ShiftBatch.id)
    if passed_only:
        stmt = stmt.where(ShiftBatch.validation_status == "passed")
    return list(session.scalars(stmt))


# --- job runs ----------------------------------------------------------------------------------

def start_job_run(session: Session, trigger: str, code_version: str) -> JobRun:
    """A new job run in state ``running``."""
    run = JobRun(trigger=trigger, status="running", started_at=utcnow(), code_version=code_version)
    session.add(run)
    session.flush()
    return run


def finish_job_run(session: Session, job_run_id: int, status: str, **fields: Any) -> None:
    """Close a job run with ``status`` and e.g. pairs_evaluated, pairs_failed, error, report_path."""
    session.execute(
        update(JobRun).where(JobRun.id == job_run_id).values(status=status, finished_at=utcnow(), **fields)
    )


def recent_job_runs(session: Session, limit: int = 10) -> list[JobRun]:
    """The last ``limit`` job runs, newest first."""
    return list(session.scalars(select(JobRun).order_by(JobRun.id.desc()).limit(limit)))


def _rowcount(result: Any) -> int:
    """Rows matched by an UPDATE (a ``CursorResult``; typed as the generic ``Result``)."""
    return int(result.rowcount)


def fail_interrupted(session: Session, now: datetime) -> tuple[int, int]:
    """Mark job and eval runs left ``running`` by a dead process as failed; returns (jobs, evals).

    Call only while holding the job lock: then nothing else can be running.
    """
    msg = f"interrupted: the process died before finishing (found at {now.isoformat()})"
    evals = _rowcount(session.execute(
        update(EvalRun).where(EvalRun.status == "running").values(status="failed", error=msg, finished_at=now)
    ))
    jobs = _rowcount(session.execute(
        update(JobRun).where(JobRun.status == "running").values(status="failed", error=msg, finished_at=now)
    ))
    return jobs, evals


# --- evaluation runs and metrics ---------------------------------------------------------------

def pending_pairs(session: Session, code_version: str) -> list[tuple[ModelVersion, ShiftBatch]]:
    """(version, batch) pairs of evaluated versions (candidate or baseline stage, or deployed) x
    passed, loadable batches (non-empty path) with no succeeded run by ``code_version``, in a
    stable order (batch registration, model name, version)."""
    done = (
        select(EvalRun.id)
        .where(EvalRun.model_version_id == ModelVersion.id, EvalRun.batch_id == ShiftBatch.id)
        .where(EvalRun.code_version == code_version, EvalRun.status == "succeeded")
        .where(EvalRun.labels_hash == ShiftBatch.labels_hash)  # labels that came later: measure again
    )
    deployed = select(ModelAlias.version_id).where(ModelAlias.alias == DEPLOYED).scalar_subquery()
    stmt = (
        select(ModelVersion, ShiftBatch)
        .join(Model, Model.id == ModelVersion.model_id)
        .join(ShiftBatch, and_(ShiftBatch.validation_status == "passed", ShiftBatch.path != ""))
        .where(or_(ModelVersion.stage.in_(EVALUATED_STAGES), ModelVersion.id == deployed), ~done.exists())
        .order_by(ShiftBatch.registered_at, ShiftBatch.id, Model.name, ModelVersion.version)
    )
    return [(v, b) for v, b in session.execute(stmt)]


def begin_eval_run(
    session: Session, model_version_id: int, batch_id: str, code_version: str, job_run_id: int,
    labels_hash: str = "",
) -> EvalRun:
    """The eval run of (model version, batch, code_version, label set) set to ``running`` (a failed
    one is retried). ``labels_hash`` names the batch's late label set ("" for none).

    Refuses (``ValueError``) a pair that already succeeded.
    """
    key = {"model_version_id": model_version_id, "batch_id": batch_id, "code_version": code_version,
           "labels_hash": labels_hash}
    values = {**key, "job_run_id": job_run_id, "status": "running", "started_at": utcnow()}
    insert_ignore(session, EvalRun, values, list(key))
    run = session.scalars(
        select(EvalRun).filter_by(**key).execution_options(populate_existing=True)
    ).one()
    if run.status == "succeeded":
        raise ValueError(f"eval run {run.id} ({model_version_id}, {batch_id!r}, {code_version!r}) already succeeded")
    clear_run_rows(session, run.id)  # leftovers of no complete run
    for name, value in values.items():
        setattr(run, name, value)
    run.error, run.finished_at = None, None
    session.flush()
    return run


def complete_eval_run(session: Session, run_id: int, result: Mapping[str, Any]) -> int:
    """Write the metrics (and the monitoring block's estimates and detections) of a result (Result
    file schema) and mark the run succeeded; returns the number of metric rows. Call inside the
    same transaction as nothing else, so everything lands together or not at all."""
    from lpt_core.results import run_details

    rows = metric_rows_from_result(result)
    run = run_details(result)  # none for pipeline results (the same bytes on every clone)
    if rows:  # one multi-row statement: compiled once, a single round trip
        stmt = insert_for(session, Metric).values([{"run_id": run_id, **row} for row in rows])
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "name", "grp"],
            set_={k: stmt.excluded[k] for k in ("value", "ci_low", "ci_high", "n")},
        )
        session.execute(stmt)
    write_monitoring(session, run_id, result.get("monitoring"))
    session.execute(
        update(EvalRun).where(EvalRun.id == run_id).values(
            status="succeeded", error=None, finished_at=utcnow(),
            eval_seconds=run.get("eval_seconds"), images_per_second=run.get("images_per_second"),
            device=run.get("device"),
        )
    )
    return len(rows)


def fail_eval_run(session: Session, run_id: int, error: str) -> None:
    """Mark an eval run failed with ``error``; any metrics, estimates and detections it had are removed."""
    clear_run_rows(session, run_id)
    session.execute(
        update(EvalRun).where(EvalRun.id == run_id).values(status="failed", error=error, finished_at=utcnow())
    )


def metric_rows_from_result(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The metric rows of a result: its ``metrics`` list plus per-class top-1 from ``per_class``
    where the list has none. Raises ``ValueError`` on a malformed entry."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for i, m in enumerate(result.get("metrics") or []):
        try:
            row = {"name": str(m["name"]), "grp": str(m["group"]), "value": float(m["value"]),
                   "ci_low": _opt_float(m.get("ci_low")), "ci_high": _opt_float(m.get("ci_high")),
                   "n": int(m["n"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"result metric #{i} {m!r} is malformed: {exc}") from None
        rows[(str(row["name"]), str(row["grp"]))] = row
    per_class = result.get("per_class") or {}
    for cid, acc, n in zip(per_class.get("class_ids", []), per_class.get("accuracy", []), per_class.get("n", [])):
        if acc is None or not n:  # a class absent from the batch has no accuracy (JSON null)
            continue
        rows.setdefault(("top1", f"class:{cid}"), {"name": "top1", "grp": f"class:{cid}", "value": float(acc),
                                                  "ci_low": None, "ci_high": None, "n": int(n)})
    return list(rows.values())


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def run_status(
    session: Session, model_version_id: int, batch_id: str, code_version: str, labels_hash: str = ""
) -> str | None:
    """The status of the eval run of this key, or None when there is none (a lookup, not a failure)."""
    return session.scalar(
        select(EvalRun.status).filter_by(model_version_id=model_version_id, batch_id=batch_id,
                                         code_version=code_version, labels_hash=labels_hash)
    )


def count_rows(session: Session) -> dict[str, int]:
    """Row counts of the main tables (for idempotency checks and status output)."""
    tables = {"shift_batches": ShiftBatch, "models": Model, "model_versions": ModelVersion,
              "model_aliases": ModelAlias, "eval_runs": EvalRun, "metrics": Metric, "job_runs": JobRun,
              "model_events": ModelEvent, "alerts": Alert, "estimates": Estimate, "detections": Detection}
    return {name: int(session.scalar(select(func.count()).select_from(t)) or 0) for name, t in tables.items()}


# --- reads for reports and the gate ------------------------------------------------------------

@dataclass(frozen=True)
class ScoreRow:
    """One metric of one succeeded eval run, with its model and batch context."""

    run_id: int
    job_run_id: int
    version_id: int
    model: str  # the registered model's name
    version: int
    method: str
    state: str
    batch_id: str
    batch_kind: str
    dataset: str
    corruption: str
    severity: int
    registered_at: datetime
    finished_at: datetime | None
    name: str
    grp: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    eval_seconds: float
    images_per_second: float
    trainable_params: int
    stored_params: int


def scores(
    session: Session, *, names: Sequence[str] = ("top1",), groups: Sequence[str] = ("overall", "many", "medium", "few"),
    code_version: str | None = None,
) -> list[ScoreRow]:
    """Metrics of succeeded eval runs (all code versions unless given), oldest run first."""
    stmt = (
        select(EvalRun, ModelVersion, Model, ShiftBatch, Metric)
        .join(ModelVersion, ModelVersion.id == EvalRun.model_version_id)
        .join(Model, Model.id == ModelVersion.model_id)
        .join(ShiftBatch, ShiftBatch.id == EvalRun.batch_id)
        .join(Metric, Metric.run_id == EvalRun.id)
        .where(and_(EvalRun.status == "succeeded", Metric.name.in_(list(names)), Metric.grp.in_(list(groups))))
        .order_by(EvalRun.finished_at, EvalRun.id, Metric.name, Metric.grp)
    )
    if code_version is not None:
        stmt = stmt.where(EvalRun.code_version == code_version)
    deployed = deployed_version(session)
    return [
        ScoreRow(r.id, r.job_run_id, v.id, m.name, v.version, m.method, state_of(v, deployed), b.id, b.kind,
                 b.dataset, b.corruption, b.severity, b.registered_at, r.finished_at, x.name, x.grp, x.value,
                 x.ci_low, x.ci_high, x.n, r.eval_seconds or 0.0, r.images_per_second or 0.0, v.trainable_params,
                 v.stored_params)
        for r, v, m, b, x in session.execute(stmt)
    ]


def add_alert(
    session: Session, kind: str, message: str, *, job_run_id: int | None = None,
    model_version_id: int | None = None, batch_id: str | None = None, details: Mapping[str, Any] | None = None,
) -> Alert:
    """Record an alert."""
    alert = Alert(kind=kind, message=message, job_run_id=job_run_id, model_version_id=model_version_id,
                  batch_id=batch_id,
                  details_json=json.dumps(details or {}, sort_keys=True, default=str), at=utcnow())
    session.add(alert)
    session.flush()
    return alert


def alerts_for_job(session: Session, job_run_id: int) -> list[Alert]:
    """Alerts raised by one job run, oldest first."""
    return list(session.scalars(select(Alert).where(Alert.job_run_id == job_run_id).order_by(Alert.id)))


def failed_runs(session: Session, job_run_id: int) -> list[EvalRun]:
    """Eval runs of one job run that failed."""
    return list(session.scalars(
        select(EvalRun).where(EvalRun.job_run_id == job_run_id, EvalRun.status == "failed").order_by(EvalRun.id)
    ))


# --- the job lock on PostgreSQL --------------------------------------------------------------

PG_JOB_LOCK = 0x4C50545F4A4F42  # "LPT_JOB"


def try_job_lock(conn: Any) -> bool:
    """Take the session-level advisory lock of the nightly job on ``conn`` (PostgreSQL); False if held."""
    got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_JOB_LOCK}).scalar()
    conn.commit()  # session-level: the lock outlives the transaction
    return bool(got)


def release_job_lock(conn: Any) -> None:
    """Release the nightly job's advisory lock taken by :func:`try_job_lock` on ``conn``."""
    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_JOB_LOCK})
    conn.commit()
