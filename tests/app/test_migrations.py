"""Alembic migrations: a store written by the code before Alembic (schema version 1, commit 48b6d29)
upgrades on SQLite and PostgreSQL with every row kept, and the revisions build exactly the models.

``fixtures/store_v1.sqlite`` was written by that code (dash_store.seed_store plus a candidate, a
retired model, events and a promotion alert); ``fixtures/store_v1.json`` is the same rows, loaded
into a PostgreSQL schema created by revision 0001.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import MetaData, insert, text

from app.db import registry
from app.db import repository as repo
from app.db.migrate import current_revision, head_revision, upgrade
from app.db.schema import Base, EvalRun, ModelEvent
from app.db.session import init_db, make_engine, session_scope

FIXTURES = Path(__file__).parent / "fixtures"
V1 = json.loads((FIXTURES / "store_v1.json").read_text())
V1_ORDER = ("schema_version", "shift_batches", "models", "job_runs", "model_events", "eval_runs", "metrics", "alerts")


def _schema_diff(engine) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    skip = {"alembic_version", "apscheduler_jobs"}
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_object": lambda o, name, kind, r, c: not (kind == "table" and name in skip)})
        return compare_metadata(ctx, Base.metadata)


def _load_v1(engine) -> None:
    """The version-1 rows into a store at revision 0001 (PostgreSQL: sequences moved past them)."""
    upgrade(engine, "0001")
    meta = MetaData()
    meta.reflect(engine)
    with engine.begin() as conn:
        for table in V1_ORDER:
            if V1[table]:
                conn.execute(insert(meta.tables[table]), V1[table])
        if engine.dialect.name == "postgresql":
            for table in ("models", "job_runs", "model_events", "eval_runs", "metrics", "alerts"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT MAX(id) FROM {table}))"))


def _check_every_row_kept(engine) -> None:
    assert current_revision(engine) == head_revision()
    assert _schema_diff(engine) == []
    with session_scope(engine) as s:
        counts = repo.count_rows(s)
        for table in ("shift_batches", "job_runs", "eval_runs", "metrics", "model_events", "alerts"):
            assert counts[table] == len(V1[table]), table
        assert counts["models"] == counts["model_versions"] == len(V1["models"])
        old = {m["id"]: m for m in V1["models"]}
        for version in registry.list_versions(s, current=False):
            row = old[version.id]  # version ids are the old model ids: every reference stays valid
            assert (version.model.name, version.version, version.artifact_sha256) == (row["name"], 1, row["artifact_sha256"])
            assert version.stage == ("candidate" if row["state"] == "deployed" else row["state"])
            assert json.loads(version.class_counts_json) == json.loads(row["class_counts_json"])
        assert registry.deployed_version(s).model.name == next(m["name"] for m in V1["models"] if m["state"] == "deployed")
        runs = {r.id: r.model_version_id for r in s.query(EvalRun)}
        assert runs == {r["id"]: r["model_id"] for r in V1["eval_runs"]}
        events = {e.id: (e.model_version_id, e.reason) for e in s.query(ModelEvent)}
        assert events == {e["id"]: (e["model_id"], e["reason"]) for e in V1["model_events"]}
        values = sorted(round(r.value, 9) for r in repo.scores(s, groups=("overall",)))
        expected = sorted(round(m["value"], 9) for m in V1["metrics"] if m["grp"] == "overall"
                          and any(r["id"] == m["run_id"] and r["status"] == "succeeded" for r in V1["eval_runs"]))
        assert values == expected
    with session_scope(engine) as s:  # the upgraded store works: a retrained model is its next version
        lpt = registry.get_version(s, "lpt_main")
        values = {"name": "lpt_main", "method": "lpt", "stage": "candidate", "artifact_sha256": "n" * 64,
                  **{k: getattr(lpt, k) for k in ("artifact_path", "backbone", "backbone_fingerprint",
                                                  "trainable_params", "stored_params")}}
        assert registry.upsert_model(s, values, "retrained after the upgrade")[0].version == 2


def test_a_schema_1_sqlite_store_upgrades_with_every_row_kept(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    shutil.copy(FIXTURES / "store_v1.sqlite", store)
    engine = make_engine(f"sqlite:///{store}")
    assert current_revision(engine) == "0001"  # a schema_version table and no alembic_version
    init_db(engine)  # what the service does on start
    _check_every_row_kept(engine)
    init_db(engine)  # and again: nothing to do
    assert current_revision(engine) == head_revision()


@pytest.mark.postgres
def test_a_schema_1_postgresql_store_upgrades_with_every_row_kept(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the PostgreSQL half of the migration test")
    engine = make_engine(db_url)
    _load_v1(engine)
    assert current_revision(engine) == "0001"
    init_db(engine)
    _check_every_row_kept(engine)


def test_the_revisions_build_exactly_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    init_db(engine)
    assert current_revision(engine) == head_revision()
    assert _schema_diff(engine) == []


def test_the_scheduler_job_store_survives_an_upgrade(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    shutil.copy(FIXTURES / "store_v1.sqlite", store)
    engine = make_engine(f"sqlite:///{store}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE apscheduler_jobs (id VARCHAR(191) PRIMARY KEY, next_run_time FLOAT, "
                             "job_state BLOB NOT NULL)")
        conn.exec_driver_sql("INSERT INTO apscheduler_jobs VALUES ('lpt-nightly', 1.0, x'00')")
    init_db(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM apscheduler_jobs").scalars().all() == ["lpt-nightly"]
