"""Schema migrations of the service store, with Alembic (revisions in ``app/db/migrations/versions``).

``upgrade(engine)`` brings any store to the newest revision: a new store gets every revision, a
store written before Alembic (a ``schema_version`` table of version 1, no ``alembic_version``) is
stamped at ``0001`` first, so its rows are kept and migrated. Only one process migrates at a time
(a PostgreSQL advisory lock, or a file lock next to the SQLite file); on SQLite, foreign-key
enforcement is off while revisions rebuild tables (dropping a referenced table would otherwise
cascade), and ``PRAGMA foreign_key_check`` must come back empty before the upgrade commits
(``migrations/env.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
PG_MIGRATION_LOCK = 0x4C50545F4D4947  # "LPT_MIG"
_ALEMBIC_LOG = logging.getLogger("alembic")
_ALEMBIC_LOG.setLevel(logging.WARNING)  # its INFO lines (plugins, context) on every command are noise


def alembic_config(connection: Connection | None = None):  # noqa: ANN201 - alembic.config.Config
    """An Alembic config for our revisions, bound to ``connection`` (no ini file)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision id of this code."""
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(alembic_config()).get_current_head())


def current_revision(engine: Engine) -> str | None:
    """The store's revision; "0001" for a pre-Alembic store, None for an empty one."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        found = MigrationContext.configure(conn).get_current_revision()
        if found is None and "schema_version" in inspect(conn).get_table_names():
            return "0001"
        return found


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade the store to ``revision`` (default: this code's head); returns (before, after)."""
    before = current_revision(engine)
    if before == head_revision() and revision == "head":
        return before, before  # the common case: nothing to do, no lock taken
    with _migration_lock(engine), _migration_connection(engine) as conn:
        from alembic import command

        cfg = alembic_config(conn)
        _ALEMBIC_LOG.setLevel(logging.INFO)  # a real migration: say which revisions run
        try:
            if _pre_alembic(conn):
                command.stamp(cfg, "0001")
            command.upgrade(cfg, revision)
        finally:
            _ALEMBIC_LOG.setLevel(logging.WARNING)
    return before, str(current_revision(engine))


def _pre_alembic(conn: Connection) -> bool:
    tables = set(inspect(conn).get_table_names())
    return "schema_version" in tables and "alembic_version" not in tables


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for migrations; on SQLite with foreign-key enforcement off for its lifetime."""
    with engine.connect() as conn:
        raw: Any = conn.connection.dbapi_connection
        if engine.dialect.name == "sqlite":
            raw.execute("PRAGMA foreign_keys=OFF")  # outside any transaction
        try:
            yield conn
            conn.commit()
        finally:
            if engine.dialect.name == "sqlite":
                raw.execute("PRAGMA foreign_keys=ON")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One migrating process at a time (others wait, then find the store upgraded)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_MIGRATION_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_MIGRATION_LOCK})
                conn.commit()
        return
    from filelock import FileLock

    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with FileLock(f"{database}.migrate.lock", timeout=300):
        yield
