"""Alembic environment of the service store: migrations run on the connection ``app.db.migrate``
passes in (``config.attributes["connection"]``), never on one built from an ini file."""

from __future__ import annotations

from alembic import context

from app.db.schema import Base

target_metadata = Base.metadata
#: tables in the same database that belong to others (APScheduler's job store)
FOREIGN_TABLES = {"apscheduler_jobs"}


def include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001, ANN201 - Alembic's hook signature
    """Leave other owners' tables alone when comparing the schema."""
    return not (type_ == "table" and name in FOREIGN_TABLES)


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `lpt db upgrade` (app.db.migrate), which passes the connection")
context.configure(connection=connection, target_metadata=target_metadata, include_object=include_object,
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
with context.begin_transaction():
    context.run_migrations()
    if connection.dialect.name == "sqlite":  # enforcement is off while revisions rebuild tables
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"migration left {len(broken)} broken foreign key(s), e.g. {tuple(broken[0])}")
