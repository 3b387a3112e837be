"""Every write of the service and the reads the service itself needs (the only module with SQL,
besides the dashboard's read-only ``app.db.views``).

Writers insert by natural key with ``ON CONFLICT`` (SQLite >= 3.24 and PostgreSQL share the
syntax), so rerunning an ingest or a job never duplicates rows. Callers own the transaction
(``app.db.session.session_scope``); nothing here commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.schema import (
    MODEL_STATES,
    Alert,
    EvalRun,
    JobRun,
    Metric,
    Model,
    ModelEvent,
    ShiftBatch,
    utcnow,
)

EVALUATED_STATES = ("deployed", "candidate", "baseline")


def _insert(session: Session, table: Any) -> Any:
    """The dialect's INSERT construct (both support ON CONFLICT)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"unsupported database dialect {dialect!r}: expected sqlite or postgresql")


def _insert_ignore(session: Session, table: Any, values: Mapping[str, Any], keys: Sequence[str]) -> bool:
    """INSERT ... ON CONFLICT (keys) DO NOTHING; True when a row was inserted."""
    stmt = _insert(session, table).values(**values).on_conflict_do_nothing(index_elements=list(keys))
    # RETURNING, not rowcount: psycopg reports no reliable rowcount for ON CONFLICT inserts
    return session.execute(stmt.returning(table.__table__.c[keys[0]])).first() is not None


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
    created = _insert_ignore(session, ShiftBatch, values, ["id"])
    row = session.get(ShiftBatch, values["id"], populate_existing=True)
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


def list_batches(session: Session, *, passed_only: bool = True) -> list[ShiftBatch]:
    """Registered batches, oldest first (by registration, then id)."""
    stmt = select(ShiftBatch).order_by(ShiftBatch.registered_at, ShiftBatch.id)
    if passed_only:
        stmt = stmt.where(ShiftBatch.validation_status == "passed")
    return list(session.scalars(stmt))


# --- models and their states -------------------------------------------------------------------

def upsert_model(session: Session, values: Mapping[str, Any], reason: str) -> tuple[Model, bool]:
    """Register a model by name (state as given) unless present; returns (row, created).

    A name already registered with another artifact hash is refused: artifacts are immutable.
    """
    if values.get("state") not in MODEL_STATES:
        raise ValueError(f"model state {values.get('state')!r} is not one of {MODEL_STATES}")
    created = _insert_ignore(session, Model, values, ["name"])
    row = session.scalars(
        select(Model).where(Model.name == values["name"]).execution_options(populate_existing=True)
    ).one()
    if row.artifact_sha256 != values["artifact_sha256"]:
        raise ValueError(
            f"model {row.name!r} is registered with artifact sha256 {row.artifact_sha256[:12]}, "
            f"the artifact now hashes to {values['artifact_sha256'][:12]}: register it under a new name"
        )
    if created:
        add_event(session, row, "none", row.state, reason, {"artifact_sha256": row.artifact_sha256})
    return row, created


def get_model(session: Session, name: str) -> Model:
    """The model called ``name``; ``KeyError`` listing the registered names when unknown."""
    row = session.scalars(select(Model).where(Model.name == name)).first()
    if row is None:
        names = ", ".join(session.scalars(select(Model.name).order_by(Model.name))) or "(none)"
        raise KeyError(f"unknown model {name!r}; registered models: {names}")
    return row


def list_models(session: Session, states: Iterable[str] | None = None) -> list[Model]:
    """Models (optionally only those in ``states``), by name."""
    stmt = select(Model).order_by(Model.name)
    if states is not None:
        stmt = stmt.where(Model.state.in_(list(states)))
    return list(session.scalars(stmt))


def add_event(
    session: Session, model: Model, from_state: str, to_state: str, reason: str, evidence: Mapping[str, Any]
) -> ModelEvent:
    """Record one state change of ``model`` (does not change the model itself)."""
    event = ModelEvent(
        model_id=model.id, from_state=from_state, to_state=to_state, reason=reason,
        evidence_json=json.dumps(evidence, sort_keys=True, default=str), at=utcnow(),
    )
    session.add(event)
    session.flush()
    return event


def set_state(
    session: Session, model: Model, to_state: str, reason: str, evidence: Mapping[str, Any]
) -> ModelEvent:
    """Move ``model`` to ``to_state`` and record the event with its reason and evidence."""
    if to_state not in MODEL_STATES:
        raise ValueError(f"model state {to_state!r} is not one of {MODEL_STATES}")
    from_state = model.state
    model.state = to_state
    session.flush()
    return add_event(session, model, from_state, to_state, reason, evidence)


def model_events(session: Session, model_id: int | None = None) -> list[ModelEvent]:
    """State changes, oldest first (optionally of one model)."""
    stmt = select(ModelEvent).order_by(ModelEvent.at, ModelEvent.id)
    if model_id is not None:
        stmt = stmt.where(ModelEvent.model_id == model_id)
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


def fail_interrupted(session: Session, now: datetime) -> tuple[int, int]:
    """Mark job and eval runs left ``running`` by a dead process as failed; returns (jobs, evals).

    Call only while holding the job lock: then nothing else can be running.
    """
    msg = f"interrupted: the process died before finishing (found at {now.isoformat()})"
    evals = session.execute(
        update(EvalRun).where(EvalRun.status == "running").values(status="failed", error=msg, finished_at=now)
    ).rowcount
    jobs = session.execute(
        update(JobRun).where(JobRun.status == "running").values(status="failed", error=msg, finished_at=now)
    ).rowcount
    return jobs, evals


# --- evaluation runs and metrics ---------------------------------------------------------------

def pending_pairs(session: Session, code_version: str) -> list[tuple[Model, ShiftBatch]]:
    """(model, batch) pairs of evaluated-state models x passed, loadable batches (non-empty path)
    with no succeeded run by ``code_version``, in a stable order (batch registration, model name)."""
    done = (
        select(EvalRun.id)
        .where(EvalRun.model_id == Model.id, EvalRun.batch_id == ShiftBatch.id)
        .where(EvalRun.code_version == code_version, EvalRun.status == "succeeded")
    )
    stmt = (
        select(Model, ShiftBatch)
        .join(ShiftBatch, and_(ShiftBatch.validation_status == "passed", ShiftBatch.path != ""))
        .where(Model.state.in_(EVALUATED_STATES), ~done.exists())
        .order_by(ShiftBatch.registered_at, ShiftBatch.id, Model.name)
    )
    return [(m, b) for m, b in session.execute(stmt)]


def begin_eval_run(
    session: Session, model_id: int, batch_id: str, code_version: str, job_run_id: int
) -> EvalRun:
    """The eval run of (model, batch, code_version) set to ``running`` (a failed one is retried).

    Refuses (``ValueError``) a pair that already succeeded.
    """
    key = {"model_id": model_id, "batch_id": batch_id, "code_version": code_version}
    values = {**key, "job_run_id": job_run_id, "status": "running", "started_at": utcnow()}
    _insert_ignore(session, EvalRun, values, list(key))
    run = session.scalars(
        select(EvalRun).filter_by(**key).execution_options(populate_existing=True)
    ).one()
    if run.status == "succeeded":
        raise ValueError(f"eval run {run.id} ({model_id}, {batch_id!r}, {code_version!r}) already succeeded")
    session.execute(delete(Metric).where(Metric.run_id == run.id))  # leftovers of no complete run
    for name, value in values.items():
        setattr(run, name, value)
    run.error, run.finished_at = None, None
    session.flush()
    return run


def complete_eval_run(session: Session, run_id: int, result: Mapping[str, Any]) -> int:
    """Write the metrics of a result (Result file schema) and mark the run succeeded; returns
    the number of metric rows. Call inside the same transaction as nothing else, so both land
    together or not at all."""
    rows = metric_rows_from_result(result)
    if rows:  # one multi-row statement: compiled once, a single round trip
        stmt = _insert(session, Metric).values([{"run_id": run_id, **row} for row in rows])
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "name", "grp"],
            set_={k: stmt.excluded[k] for k in ("value", "ci_low", "ci_high", "n")},
        )
        session.execute(stmt)
    session.execute(
        update(EvalRun).where(EvalRun.id == run_id).values(
            status="succeeded", error=None, finished_at=utcnow(),
            eval_seconds=float(result.get("eval_seconds") or 0.0),
            images_per_second=float(result.get("images_per_second") or 0.0),
            device=str(result.get("device") or ""),
        )
    )
    return len(rows)


def fail_eval_run(session: Session, run_id: int, error: str) -> None:
    """Mark an eval run failed with ``error``; any metrics it had are removed."""
    session.execute(delete(Metric).where(Metric.run_id == run_id))
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
        rows[(row["name"], row["grp"])] = row
    per_class = result.get("per_class") or {}
    for cid, acc, n in zip(per_class.get("class_ids", []), per_class.get("accuracy", []), per_class.get("n", [])):
        rows.setdefault(("top1", f"class:{cid}"), {"name": "top1", "grp": f"class:{cid}", "value": float(acc),
                                                  "ci_low": None, "ci_high": None, "n": int(n)})
    return list(rows.values())


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def run_status(session: Session, model_id: int, batch_id: str, code_version: str) -> str | None:
    """The status of the eval run of this key, or None when there is none (a lookup, not a failure)."""
    return session.scalar(
        select(EvalRun.status).filter_by(model_id=model_id, batch_id=batch_id, code_version=code_version)
    )


def count_rows(session: Session) -> dict[str, int]:
    """Row counts of the main tables (for idempotency checks and status output)."""
    tables = {"shift_batches": ShiftBatch, "models": Model, "eval_runs": EvalRun, "metrics": Metric,
              "job_runs": JobRun, "model_events": ModelEvent, "alerts": Alert}
    return {name: session.scalar(select(func.count()).select_from(t)) for name, t in tables.items()}


# --- reads for reports and the gate ------------------------------------------------------------

@dataclass(frozen=True)
class ScoreRow:
    """One metric of one succeeded eval run, with its model and batch context."""

    run_id: int
    job_run_id: int
    model: str
    method: str
    state: str
    batch_id: str
    batch_kind: str
    dataset: str
    corruption: str
    severity: int
    registered_at: datetime
    finished_at: datetime
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
        select(EvalRun, Model, ShiftBatch, Metric)
        .join(Model, Model.id == EvalRun.model_id)
        .join(ShiftBatch, ShiftBatch.id == EvalRun.batch_id)
        .join(Metric, Metric.run_id == EvalRun.id)
        .where(and_(EvalRun.status == "succeeded", Metric.name.in_(list(names)), Metric.grp.in_(list(groups))))
        .order_by(EvalRun.finished_at, EvalRun.id, Metric.name, Metric.grp)
    )
    if code_version is not None:
        stmt = stmt.where(EvalRun.code_version == code_version)
    return [
        ScoreRow(r.id, r.job_run_id, m.name, m.method, m.state, b.id, b.kind, b.dataset, b.corruption, b.severity,
                 b.registered_at, r.finished_at, x.name, x.grp, x.value, x.ci_low, x.ci_high, x.n,
                 r.eval_seconds or 0.0, r.images_per_second or 0.0, m.trainable_params, m.stored_params)
        for r, m, b, x in session.execute(stmt)
    ]


def add_alert(
    session: Session, kind: str, message: str, *, job_run_id: int | None = None, model_id: int | None = None,
    batch_id: str | None = None, details: Mapping[str, Any] | None = None,
) -> Alert:
    """Record an alert."""
    alert = Alert(kind=kind, message=message, job_run_id=job_run_id, model_id=model_id, batch_id=batch_id,
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
