"""The store as it was before Alembic (schema version 1, lpt-robustness 0.1 up to commit 48b6d29).

A store written by that code (it has a ``schema_version`` table, no ``alembic_version``) is
stamped at this revision by ``app.db.migrate.upgrade`` and then upgraded; a new store runs it.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def _choice(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16, create_constraint=True)


def upgrade() -> None:
    """Create the version-1 tables."""
    op.create_table("schema_version", sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("created_at", UTC, nullable=False))
    op.create_table(
        "shift_batches",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("kind", _choice("batch_kind", "clean", "generated", "published", "real"), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("corruption", sa.String(64), nullable=False),
        sa.Column("severity", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("dvc_hash", sa.String(64), nullable=True),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("validation_status", _choice("validation_status", "passed", "failed"), nullable=False),
        sa.Column("validation_json", sa.Text, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("registered_at", UTC, nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("backbone", sa.String(128), nullable=False),
        sa.Column("backbone_fingerprint", sa.String(64), nullable=False),
        sa.Column("artifact_path", sa.String(1024), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("trainable_params", sa.BigInteger, nullable=False),
        sa.Column("stored_params", sa.BigInteger, nullable=False),
        sa.Column("data_version", sa.String(128), nullable=False),
        sa.Column("state", _choice("model_state", "candidate", "deployed", "retired", "baseline"), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("class_counts_json", sa.Text, nullable=False),
    )
    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence_json", sa.Text, nullable=False),
        sa.Column("at", UTC, nullable=False),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trigger", _choice("job_trigger", "cron", "manual", "pipeline"), nullable=False),
        sa.Column("status", _choice("job_status", "running", "succeeded", "failed", "skipped"), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("pairs_evaluated", sa.Integer, nullable=False),
        sa.Column("pairs_failed", sa.Integer, nullable=False),
        sa.Column("code_version", sa.String(128), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("report_path", sa.String(1024), nullable=True),
    )
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("shift_batches.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("code_version", sa.String(128), nullable=False),
        sa.Column("job_run_id", sa.Integer, sa.ForeignKey("job_runs.id"), nullable=False, index=True),
        sa.Column("status", _choice("run_status", "running", "succeeded", "failed"), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("eval_seconds", sa.Float, nullable=True),
        sa.Column("images_per_second", sa.Float, nullable=True),
        sa.Column("device", sa.String(64), nullable=True),
        sa.UniqueConstraint("model_id", "batch_id", "code_version", name="uq_eval_run"),
    )
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("eval_runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("grp", sa.String(32), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("ci_low", sa.Float, nullable=True),
        sa.Column("ci_high", sa.Float, nullable=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.UniqueConstraint("run_id", "name", "grp", name="uq_metric"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_run_id", sa.Integer, sa.ForeignKey("job_runs.id"), nullable=True, index=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=True),
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("shift_batches.id", ondelete="CASCADE"), nullable=True),
        sa.Column("kind", _choice("alert_kind", "regression", "promotion", "rollback", "failure"), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details_json", sa.Text, nullable=False),
        sa.Column("at", UTC, nullable=False),
    )


def downgrade() -> None:
    """Drop every version-1 table."""
    for table in ("alerts", "metrics", "eval_runs", "job_runs", "model_events", "models", "shift_batches",
                  "schema_version"):
        op.drop_table(table)
