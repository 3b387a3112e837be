"""Engine and session factories for the service store (SQLite by default, PostgreSQL via psycopg 3).

The engine is made by a function, never at import. SQLite connections get foreign keys on, WAL
journaling (a dashboard can read while the job writes) and a busy timeout; transactions begin
explicitly so that a unit of work really is atomic under pysqlite.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db.schema import SCHEMA_VERSION, Base, SchemaVersion

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An Engine for ``url`` (default: ``Settings.from_env().db_url``).

    ``sqlite:///relative.db`` is relative to the current directory; its parent folder is created.
    PostgreSQL URLs must use the psycopg 3 driver (``postgresql+psycopg://``).
    """
    if url is None:
        from app.settings import load_settings

        url = load_settings().db_url
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, parsed.database, **kwargs)
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise ValueError(f"PostgreSQL URLs must use postgresql+psycopg://, got {url!r}")
        return create_engine(url, pool_pre_ping=True, future=True, **kwargs)
    raise ValueError(f"unsupported database URL {url!r}: expected sqlite:/// or postgresql+psycopg://")


def _sqlite_engine(url: str, database: str | None, **kwargs: Any) -> Engine:
    """A SQLite engine with per-connection pragmas and explicit BEGIN."""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy emit BEGIN itself (see "begin" below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if database and database != ":memory:":
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: no corruption, fsync per checkpoint
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def is_sqlite(engine: Engine) -> bool:
    """Whether ``engine`` talks to SQLite."""
    return engine.dialect.name == "sqlite"


def init_db(engine: Engine) -> None:
    """Create missing tables and check the stored schema version.

    Raises ``RuntimeError`` when the database was created by another schema version (there is no
    Alembic yet: rebuild the store from the results files, or migrate by hand).
    """
    Base.metadata.create_all(engine)
    try:
        with session_scope(engine) as session:
            if not session.scalars(select(SchemaVersion.version)).all():
                session.add(SchemaVersion(version=SCHEMA_VERSION))
    except IntegrityError:  # another process stamped it first
        pass
    with session_scope(engine) as session:
        found = session.scalars(select(SchemaVersion.version)).all()
        if found != [SCHEMA_VERSION]:
            raise RuntimeError(
                f"database schema version {found} does not match this code's {SCHEMA_VERSION}; "
                "rebuild the store (lpt ingest) or migrate it"
            )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A ``sessionmaker`` bound to ``engine`` that keeps loaded objects usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit when the block ends normally, roll back (and re-raise) otherwise."""
    session = session_factory(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
