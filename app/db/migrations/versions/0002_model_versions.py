"""Model versions: a registered model has numbered immutable versions and a ``deployed`` alias.

Every row is kept. Each version-1 model becomes a registered model (name, method) with version 1
holding its artifact and counts, under the same id, so the ids that eval runs, events and alerts
stored stay valid as version ids; its state becomes the version's stage, and the deployed one
gets the ``deployed`` alias instead (its stage is "candidate", as before it was promoted).
PostgreSQL changes the tables in place; SQLite, which cannot alter constraints, rebuilds them
(foreign-key enforcement is off during migrations, see ``app.db.migrate``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
VERSION_COLUMNS = ("artifact_path", "artifact_sha256", "backbone", "backbone_fingerprint", "trainable_params",
                   "stored_params", "data_version", "class_counts_json")
#: tables whose model_id becomes model_version_id: (table, nullable, indexed)
RETARGETED = (("eval_runs", False, True), ("model_events", False, True), ("alerts", True, False))


def _choice(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16, create_constraint=True)


def upgrade() -> None:
    """Add model_versions and model_aliases, fill them from models, retarget the references."""
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("artifact_path", sa.String(1024), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("backbone", sa.String(128), nullable=False),
        sa.Column("backbone_fingerprint", sa.String(64), nullable=False),
        sa.Column("trainable_params", sa.BigInteger, nullable=False),
        sa.Column("stored_params", sa.BigInteger, nullable=False),
        sa.Column("data_version", sa.String(128), nullable=False),
        sa.Column("class_counts_json", sa.Text, nullable=False),
        sa.Column("stage", _choice("version_stage", "candidate", "retired", "baseline"), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.UniqueConstraint("model_id", "version", name="uq_model_version"),
        sa.UniqueConstraint("model_id", "artifact_sha256", name="uq_model_artifact"),
    )
    op.create_table(
        "model_aliases",
        sa.Column("alias", sa.String(32), primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
    )
    cols = ", ".join(VERSION_COLUMNS)
    op.execute(
        f"INSERT INTO model_versions (id, model_id, version, {cols}, stage, created_at) "
        f"SELECT id, id, 1, {cols}, CASE WHEN state = 'deployed' THEN 'candidate' ELSE state END, created_at "
        "FROM models"
    )
    op.execute("INSERT INTO model_aliases (alias, version_id, updated_at) "
               "SELECT 'deployed', id, created_at FROM models WHERE state = 'deployed'")
    if op.get_bind().dialect.name == "postgresql":
        _retarget_in_place()
    else:
        _rebuild_sqlite()
    op.drop_table("schema_version")


def _retarget_in_place() -> None:
    """PostgreSQL: rename the columns, move their foreign keys, drop the per-version columns of models."""
    for table, _, indexed in RETARGETED:
        op.drop_constraint(f"{table}_model_id_fkey", table, type_="foreignkey")
        op.alter_column(table, "model_id", new_column_name="model_version_id")
        op.create_foreign_key(f"{table}_model_version_id_fkey", table, "model_versions", ["model_version_id"],
                              ["id"], ondelete="CASCADE")  # fmt: skip
        if indexed:
            op.execute(f"ALTER INDEX ix_{table}_model_id RENAME TO ix_{table}_model_version_id")
    for column in (*VERSION_COLUMNS, "state"):
        op.drop_column("models", column)
    _sync_sequence("model_versions")


def _sync_sequence(table: str) -> None:
    """Rows were inserted with explicit ids: move the id sequence past them."""
    op.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}")


def _rebuild_sqlite() -> None:
    """SQLite: each changed table is created anew, filled from the old one, and put in its place."""
    _rebuild("models", (
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
    ), "id, name, method, created_at", [])
    fk = sa.ForeignKey("model_versions.id", ondelete="CASCADE")
    _rebuild("eval_runs", (
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_version_id", sa.Integer, fk, nullable=False),
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("shift_batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("code_version", sa.String(128), nullable=False),
        sa.Column("job_run_id", sa.Integer, sa.ForeignKey("job_runs.id"), nullable=False),
        sa.Column("status", _choice("run_status", "running", "succeeded", "failed"), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("eval_seconds", sa.Float, nullable=True),
        sa.Column("images_per_second", sa.Float, nullable=True),
        sa.Column("device", sa.String(64), nullable=True),
        sa.UniqueConstraint("model_version_id", "batch_id", "code_version", name="uq_eval_run"),
    ), "id, model_id, batch_id, code_version, job_run_id, status, error, started_at, finished_at, eval_seconds, "
       "images_per_second, device", ["model_version_id", "batch_id", "job_run_id"])  # fmt: skip
    _rebuild("model_events", (
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence_json", sa.Text, nullable=False),
        sa.Column("at", UTC, nullable=False),
    ), "id, model_id, from_state, to_state, reason, evidence_json, at", ["model_version_id"])
    _rebuild("alerts", (
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_run_id", sa.Integer, sa.ForeignKey("job_runs.id"), nullable=True),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
                  nullable=True),
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("shift_batches.id", ondelete="CASCADE"), nullable=True),
        sa.Column("kind", _choice("alert_kind", "regression", "promotion", "rollback", "failure"), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details_json", sa.Text, nullable=False),
        sa.Column("at", UTC, nullable=False),
    ), "id, job_run_id, model_id, batch_id, kind, message, details_json, at", ["job_run_id"])


def _rebuild(name: str, items: tuple, select_columns: str, indexed: list[str]) -> None:
    """Create ``<name>_new`` from ``items``, copy ``name``'s rows into it (``select_columns`` in
    the new column order), drop ``name``, rename the new table to ``name`` and index ``indexed``."""
    new = op.create_table(f"{name}_new", *items)
    target = ", ".join(c.name for c in new.columns)
    op.execute(f"INSERT INTO {new.name} ({target}) SELECT {select_columns} FROM {name}")
    op.drop_table(name)
    op.rename_table(new.name, name)
    for column in indexed:
        op.create_index(f"ix_{name}_{column}", name, [column])


def downgrade() -> None:
    """Not supported: the version-1 schema cannot hold more than one version per model."""
    raise RuntimeError("downgrading below 0002 would lose model versions; restore a backup of the store instead")
