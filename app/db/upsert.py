"""Dialect-aware INSERT ... ON CONFLICT, shared by the writers (``app.db.repository``,
``app.db.registry``): SQLite >= 3.24 and PostgreSQL spell it the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_for(session: Session, table: Any) -> Any:
    """The dialect's INSERT construct (both support ON CONFLICT)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"unsupported database dialect {dialect!r}: expected sqlite or postgresql")


def insert_ignore(session: Session, table: Any, values: Mapping[str, Any], keys: Sequence[str]) -> bool:
    """INSERT ... ON CONFLICT (keys) DO NOTHING; True when a row was inserted."""
    stmt = insert_for(session, table).values(**values).on_conflict_do_nothing(index_elements=list(keys))
    # RETURNING, not rowcount: psycopg reports no reliable rowcount for ON CONFLICT inserts
    return session.execute(stmt.returning(table.__table__.c[keys[0]])).first() is not None
