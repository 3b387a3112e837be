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
from urllib.parse import quote, unquote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

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
    """Bring the store to this code's schema: create it, or upgrade it with its rows kept
    (Alembic, :func:`app.db.migrate.upgrade`; a store at the newest revision costs one query)."""
    from app.db.migrate import upgrade

    upgrade(engine)


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


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (plain or ``file:`` URI form); None for other backends or memory."""
    parsed = make_url(url)
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or not db or db == ":memory:" or "mode=memory" in url:
        return None
    return Path(unquote(db.removeprefix("file:")))


def missing_sqlite_file(url: str) -> bool:
    """Whether ``url`` names a SQLite file that does not exist (an empty store, never to be created)."""
    path = sqlite_file(url)
    return path is not None and not path.exists()


def read_only_engine(url: str) -> Engine:
    """An Engine that can only read the store at ``url``.

    SQLite: ``file:PATH?mode=ro&uri=true`` (a missing file raises, never gets created) plus
    ``PRAGMA query_only``. PostgreSQL: every transaction is READ ONLY (psycopg 3 ``read_only``).
    """
    path = sqlite_file(url)
    if path is not None:
        target = URL.create("sqlite", database=f"file:{quote(str(path.resolve()))}",
                            query={"mode": "ro", "uri": "true"})
        engine = create_engine(target, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_read_only(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA query_only=ON")

        return engine
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":

        @event.listens_for(engine, "connect")
        def _pg_read_only(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.read_only = True

    return engine
