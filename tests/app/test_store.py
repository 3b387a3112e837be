"""The store on SQLite and PostgreSQL: schema revision, UTC round trip, natural keys, upserts, versions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from app.db import registry
from app.db import repository as repo
from app.db.migrate import current_revision, head_revision
from app.db.schema import EvalRun, JobRun
from app.db.session import init_db, make_engine, session_scope


def _batch(batch_id: str = "b1", content: str = "c" * 64) -> dict:
    return {"id": batch_id, "kind": "generated", "source": "t", "dataset": "tiny", "corruption": "fog",
            "severity": 2, "size": 10, "content_hash": content, "dvc_hash": None, "path": "/x",
            "validation_status": "passed", "validation_json": "{}",
            "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc)}


def _model(name: str = "m1", sha: str = "a" * 64, method: str = "lpt") -> dict:
    return {"name": name, "method": method, "backbone": "vit", "backbone_fingerprint": "f", "artifact_path": "/m",
            "artifact_sha256": sha, "trainable_params": 10, "stored_params": 10, "stage": "candidate"}


def test_init_db_is_idempotent_and_refuses_an_unknown_revision(engine) -> None:
    init_db(engine)
    assert current_revision(engine) == head_revision()
    with session_scope(engine) as s:
        s.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(Exception, match="from_the_future"):
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


def test_model_upsert_is_idempotent_and_a_new_artifact_is_a_new_version(engine) -> None:
    for _ in range(2):
        with session_scope(engine) as s:
            registry.upsert_model(s, _model(), "test")
    with session_scope(engine) as s:
        counts = repo.count_rows(s)
        assert (counts["models"], counts["model_versions"], counts["model_events"]) == (1, 1, 1)
    with session_scope(engine) as s:
        v2, created = registry.upsert_model(s, _model(sha="b" * 64), "retrained")
        assert created and v2.version == 2 and v2.label == "m1@2"
    with session_scope(engine) as s:
        v1 = registry.get_version(s, "m1", 1)
        assert v1.stage == "retired" and registry.get_version(s, "m1").version == 2  # the newest by default
        assert [v.label for v in registry.list_versions(s)] == ["m1@2"]
        assert [v.label for v in registry.list_versions(s, current=False)] == ["m1@1", "m1@2"]
    with pytest.raises(ValueError, match="registered as a 'lpt' model"), session_scope(engine) as s:
        registry.upsert_model(s, _model(sha="c" * 64, method="vpt"), "test")
    with pytest.raises(KeyError, match="registered models: m1"), session_scope(engine) as s:
        registry.get_version(s, "nope")
    with pytest.raises(KeyError, match="no version 7; versions: 1, 2"), session_scope(engine) as s:
        registry.get_version(s, "m1", 7)
    assert registry.parse_model_ref("lpt@v3") == ("lpt", 3) and registry.parse_model_ref("lpt") == ("lpt", None)
    with pytest.raises(ValueError, match="NAME@VERSION"):
        registry.parse_model_ref("lpt@latest")


def test_a_deployed_version_stays_deployed_when_a_new_version_arrives(engine) -> None:
    from app import gate

    with session_scope(engine) as s:
        registry.upsert_model(s, _model(), "test")
        gate.promote(s, "m1", "first deployment")
        registry.upsert_model(s, _model(sha="b" * 64), "retrained")
    with session_scope(engine) as s:
        deployed = registry.deployed_version(s)
        assert deployed.label == "m1@1" and deployed.stage == "candidate"
        assert [(v.label, registry.state_of(v, deployed)) for v in registry.list_versions(s)] == [
            ("m1@1", "deployed"), ("m1@2", "candidate")]
        gate.promote(s, "m1@2", "the retrained one")
    with session_scope(engine) as s:
        assert registry.deployed_version(s).label == "m1@2" and registry.get_version(s, "m1", 1).stage == "retired"
        assert gate.rollback(s, "worse at night") == "rolled back m1@2 -> m1@1: worse at night"
        assert registry.deployed_version(s).label == "m1@1"


def test_eval_run_key_is_unique_and_metrics_upsert(engine) -> None:
    with session_scope(engine) as s:
        model, _ = registry.upsert_model(s, _model(), "test")
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
        s.add(EvalRun(model_version_id=model.id, batch_id="b1", code_version="v1", job_run_id=job.id, status="running"))


def test_malformed_result_metrics_are_refused(engine) -> None:
    with pytest.raises(ValueError, match="metric #0"):
        repo.metric_rows_from_result({"metrics": [{"name": "top1", "value": 0.5}]})


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        make_engine("mysql://x/y")
    with pytest.raises(ValueError, match="psycopg"):
        make_engine("postgresql+psycopg2://u@h/db")


def test_a_class_absent_from_the_batch_gets_no_metric_row() -> None:
    rows = repo.metric_rows_from_result({"metrics": [], "per_class": {"class_ids": [0, 1], "accuracy": [0.5, None],
                                                                     "n": [4, 0]}})
    assert [(r["grp"], r["value"]) for r in rows] == [("class:0", 0.5)]
