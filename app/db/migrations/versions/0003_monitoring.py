"""Label-free monitoring: unlabeled batches and labels that arrive later, estimates, detections.

Every row is kept. Existing batches are labelled (``labeled`` true, ``n_labeled`` = size, no late
label set); existing eval runs measured no late label set (``labels_hash`` ""), which joins the
eval-run key so that labels arriving for a batch make its pairs pending again. Alerts gain the
kinds ``shift`` and ``estimated_drop``. PostgreSQL alters in place; SQLite rebuilds the two
tables whose constraints change (foreign-key enforcement is off during migrations).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
ALERT_KINDS = ("regression", "promotion", "rollback", "failure", "shift", "estimated_drop")


def _choice(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16, create_constraint=True)


def upgrade() -> None:
    """Add the batch label columns, the eval runs' label set, the new alert kinds and two tables."""
    with op.batch_alter_table("shift_batches") as batch:
        batch.add_column(sa.Column("labeled", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("n_labeled", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("labels_hash", sa.String(64), nullable=False, server_default=""))
    op.execute("UPDATE shift_batches SET n_labeled = size")
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("eval_runs", sa.Column("labels_hash", sa.String(64), nullable=False, server_default=""))
        op.drop_constraint("uq_eval_run", "eval_runs", type_="unique")
        op.create_unique_constraint("uq_eval_run", "eval_runs", ["model_version_id", "batch_id", "code_version",
                                                                 "labels_hash"])  # fmt: skip
        op.drop_constraint("alert_kind", "alerts", type_="check")
        op.create_check_constraint("alert_kind", "alerts", sa.column("kind").in_(ALERT_KINDS))
    else:
        _rebuild_sqlite()
    _create_tables()


def _rebuild_sqlite() -> None:
    _rebuild("eval_runs", (
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("shift_batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("code_version", sa.String(128), nullable=False),
        sa.Column("labels_hash", sa.String(64), nullable=False, server_default=""),
        sa.Column("job_run_id", sa.Integer, sa.ForeignKey("job_runs.id"), nullable=False),
        sa.Column("status", _choice("run_status", "running", "succeeded", "failed"), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("eval_seconds", sa.Float, nullable=True),
        sa.Column("images_per_second", sa.Float, nullable=True),
        sa.Column("device", sa.String(64), nullable=True),
        sa.UniqueConstraint("model_version_id", "batch_id", "code_version", "labels_hash", name="uq_eval_run"),
    ), "id, model_version_id, batch_id, code_version, '', job_run_id, status, error, started_at, finished_at, "
       "eval_seconds, images_per_second, device", ["model_version_id", "batch_id", "job_run_id"])  # fmt: skip
    _rebuild("alerts", (
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_run_id", sa.Integer, sa.ForeignKey("job_runs.id"), nullable=True),
        sa.Column("model_version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
                  nullable=True),
        sa.Column("batch_id", sa.String(128), sa.ForeignKey("shift_batches.id", ondelete="CASCADE"), nullable=True),
        sa.Column("kind", _choice("alert_kind", *ALERT_KINDS), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details_json", sa.Text, nullable=False),
        sa.Column("at", UTC, nullable=False),
    ), "id, job_run_id, model_version_id, batch_id, kind, message, details_json, at", ["job_run_id"])


def _rebuild(name: str, items: tuple, select_columns: str, indexed: list[str]) -> None:
    """``<name>_new`` from ``items``, filled from ``name``, put in its place and indexed (as in 0002)."""
    new = op.create_table(f"{name}_new", *items)
    target = ", ".join(c.name for c in new.columns)
    op.execute(f"INSERT INTO {new.name} ({target}) SELECT {select_columns} FROM {name}")
    op.drop_table(name)
    op.rename_table(new.name, name)
    for column in indexed:
        op.create_index(f"ix_{name}_{column}", name, [column])


def _create_tables() -> None:
    run = sa.ForeignKey("eval_runs.id", ondelete="CASCADE")
    op.create_table(
        "estimates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, run, nullable=False, index=True),
        sa.Column("estimator", sa.String(32), nullable=False),
        sa.Column("grp", sa.String(32), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("measured", sa.Float, nullable=True),
        sa.Column("abs_error", sa.Float, nullable=True),
        sa.UniqueConstraint("run_id", "estimator", "grp", name="uq_estimate"),
    )
    op.create_table(
        "detections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("eval_runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("detector", sa.String(32), nullable=False),
        sa.Column("statistic", sa.Float, nullable=False),
        sa.Column("p_value", sa.Float, nullable=True),
        sa.Column("p_adjusted", sa.Float, nullable=True),
        sa.Column("rejected", sa.Boolean, nullable=True),
        sa.Column("details_json", sa.Text, nullable=False),
        sa.UniqueConstraint("run_id", "detector", name="uq_detection"),
    )


def downgrade() -> None:
    """Not supported: unlabeled batches and estimates have no place in revision 0002."""
    raise RuntimeError("downgrading below 0003 would lose estimates and unlabeled batches; restore a backup instead")
