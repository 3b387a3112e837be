"""Fixtures of the service tests: a store on SQLite and, when ``LPT_TEST_PG_URL`` points at a
reachable server, on PostgreSQL (each test in its own schema, dropped afterwards)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from app_fakes import settings_for  # noqa: E402

PG_ENV = "LPT_TEST_PG_URL"


def _pg_skip_reason() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        return f"{PG_ENV} is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
    try:
        import psycopg

        psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3).close()
    except Exception as exc:  # any connection problem means: skip with the reason
        return f"PostgreSQL at {PG_ENV} is unreachable: {exc}"
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    reason = _pg_skip_reason()
    if reason:
        pytest.skip(reason)
    from sqlalchemy import create_engine, text

    base = os.environ[PG_ENV]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[object]:
    """An initialised engine on ``db_url``."""
    from app.db.session import init_db, make_engine

    eng = make_engine(db_url)
    init_db(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> object:
    """Service settings on ``db_url`` rooted in ``tmp_path``."""
    return settings_for(db_url, tmp_path)
