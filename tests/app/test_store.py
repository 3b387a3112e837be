"""The store on SQLite and PostgreSQL: schema version, UTC round trip, natural keys, upserts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from app.db import repository as repo
from app.db.schema import EvalRun, JobRun, SchemaVersion
from app.db.session import init_db, make_engine, session_scope


def _batch(batch_id: str = "b1", content: str = "c" * 64) -> dict:
    return {"id": batch_id, "kind": "generated", "source": "t", "dataset": "tiny", "corruption": "fog",
            "severity": 2, "size": 10, "content_hash": content, "dvc_hash": None, "path": "/x",
            "validation_status": "passed", "validation_json": "{}",
            "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc)}


def _model(name: str = "m1", sha: str = "a" * 64, method: str = "lpt") -> dict:
    return {"name": name, "method": method, "backbone": "vit", "backbone_fingerprint": "f", "artifact_path": "/m",
            "artifact_sha256": sha, "trainable_params": 10, "stored_params": 10, "state": "candidate"}


def test_init_db_is_idempotent_and_refuses_another_schema_version(engine) -> None:
    init_db(engine)
    with session_scope(engine) as s:
        assert s.scalars(select(SchemaVersion.version)).all() == [1]
        s.execute(text("UPDATE schema_version SET version = 99"))
    with pytest.raises(RuntimeError, match="schema version"):
        init_db(engine)


def test_times_come_back_aware_utc_and_naive_times_are_refused(engine) -> None:
    berlin = timezone(timedelta(hours=1))
    with session_scope(engine) as s:
        run = JobRun(trigger="manual", status="running", started_at=datetime(2026, 3, 1, 3, 30, tzinfo=berlin))
        s.add(run)
    with session_scope(engine) as s:
        got = s.scalars(select(JobRun)).one().started_at
    assert got == datetime(2026, 3, 1, 2, 30, tzinfo=timezone.utc) and got.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive datetime"):
        with session_scope(engine) as s:
            s.add(JobRun(trigger="manual", status="running", started_at=datetime(2026, 3, 1)))


def test_batch_upsert_is_idempotent_and_refuses_conflicting_content(engine) -> None:
    with session_scope(engine) as s:
        assert repo.upsert_batch(s, _batch())[1] is True
    with session_scope(engine) as s:
        assert repo.upsert_batch(s, _batch())[1] is False
    with pytest.raises(ValueError, match="same content"), session_scope(engine) as s:
        repo.upsert_batch(s, _batch("b2"))
    with pytest.raises(ValueError, match="immutable"), session_scope(engine) as s:
        repo.upsert_batch(s, _batch("b1", "d" * 64))
    with session_scope(engine) as s:
        assert repo.count_rows(s)["shift_batches"] == 1


def test_model_upsert_records_one_event_and_refuses_a_changed_artifact(engine) -> None:
    for _ in range(2):
        with session_scope(engine) as s:
            repo.upsert_model(s, _model(), "test")
    with session_scope(engine) as s:
        counts = repo.count_rows(s)
        assert (counts["models"], counts["model_events"]) == (1, 1)
    with pytest.raises(ValueError, match="new name"), session_scope(engine) as s:
        repo.upsert_model(s, _model(sha="b" * 64), "test")
    with pytest.raises(KeyError, match="m1"), session_scope(engine) as s:
        repo.get_model(s, "nope")


def test_eval_run_key_is_unique_and_metrics_upsert(engine) -> None:
    with session_scope(engine) as s:
        model, _ = repo.upsert_model(s, _model(), "test")
        repo.upsert_batch(s, _batch())
        job = repo.start_job_run(s, "manual", "v1")
        run = repo.begin_eval_run(s, model.id, "b1", "v1", job.id)
        result = {"metrics": [{"name": "top1", "group": "overall", "value": 0.5, "n": 10}]}
        assert repo.complete_eval_run(s, run.id, result) == 1
        assert repo.complete_eval_run(s, run.id, result) == 1  # upsert, not a duplicate
        with pytest.raises(ValueError, match="already succeeded"):
            repo.begin_eval_run(s, model.id, "b1", "v1", job.id)
        assert repo.count_rows(s)["metrics"] == 1
    with pytest.raises(IntegrityError), session_scope(engine) as s:
        s.add(EvalRun(model_id=model.id, batch_id="b1", code_version="v1", job_run_id=job.id, status="running"))


def test_malformed_result_metrics_are_refused(engine) -> None:
    with pytest.raises(ValueError, match="metric #0"):
        repo.metric_rows_from_result({"metrics": [{"name": "top1", "value": 0.5}]})


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        make_engine("mysql://x/y")
    with pytest.raises(ValueError, match="psycopg"):
        make_engine("postgresql+psycopg2://u@h/db")
