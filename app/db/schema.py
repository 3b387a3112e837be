"""The service's SQL schema: typed SQLAlchemy 2.x models (see docs/ARCHITECTURE.md, section "app").

Natural keys carry UNIQUE constraints with no NULL-able columns in them (NULLs defeat UNIQUE on
SQLite and PostgreSQL alike), so every writer can upsert and reruns are idempotent. Times are
stored as UTC and come back timezone-aware on both backends (:class:`UTCDateTime`).
Models follow the registry convention users know from MLflow: a registered model has numbered,
immutable versions (one artifact sha256 each) and an alias ``deployed`` that moves between them.
Every schema change is an Alembic revision in ``app/db/migrations/versions/`` (``lpt db upgrade``;
the service upgrades on start), and ``tests/app/test_migrations.py`` checks that the revisions
build exactly these models.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

BATCH_KINDS = ("clean", "generated", "published", "real")
VALIDATION_STATUSES = ("passed", "failed")
VERSION_STAGES = ("candidate", "retired", "baseline")
#: what views and reports call a version's state: its stage, or "deployed" when the alias points at it
MODEL_STATES = ("candidate", "deployed", "retired", "baseline")
DEPLOYED = "deployed"
JOB_TRIGGERS = ("cron", "manual", "pipeline")
JOB_STATUSES = ("running", "succeeded", "failed", "skipped")
RUN_STATUSES = ("running", "succeeded", "failed")
ALERT_KINDS = ("regression", "promotion", "rollback", "failure", "shift", "estimated_drop")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime that accepts only aware datetimes, stores UTC and returns aware UTC datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} refused: store timezone-aware UTC times")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite drops tzinfo; we only ever wrote UTC
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _choice(values: tuple[str, ...], name: str) -> Enum:
    """A portable string enum (VARCHAR + CHECK), no native PG type."""
    return Enum(*values, name=name, native_enum=False, length=16, create_constraint=True)


class Base(DeclarativeBase):
    """Declarative base of every service table."""


class ShiftBatch(Base):
    """A shift set (clean test split, generated/published corruption, or real batch)."""

    __tablename__ = "shift_batches"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(_choice(BATCH_KINDS, "batch_kind"))
    source: Mapped[str] = mapped_column(String(256))
    dataset: Mapped[str] = mapped_column(String(128))
    corruption: Mapped[str] = mapped_column(String(64))
    severity: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    dvc_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    path: Mapped[str] = mapped_column(String(1024))
    validation_status: Mapped[str] = mapped_column(_choice(VALIDATION_STATUSES, "validation_status"))
    validation_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    labeled: Mapped[bool] = mapped_column(Boolean, default=True)  # false: production images without labels
    n_labeled: Mapped[int] = mapped_column(Integer, default=0)  # images with a label (the size when labeled)
    labels_hash: Mapped[str] = mapped_column(String(64), default="")  # the label set that came later, "" if none


class Model(Base):
    """A registered model: a name and a method; its trained artifacts are its versions."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    method: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelVersion(Base):
    """One immutable artifact (by sha256) of a registered model, numbered 1, 2, ... per model.

    ``stage`` is its lifecycle (candidate, baseline, retired); whether it is deployed is the
    ``deployed`` alias (:class:`ModelAlias`), which promotion and rollback move between versions.
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_model_version"),
        UniqueConstraint("model_id", "artifact_sha256", name="uq_model_artifact"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    artifact_path: Mapped[str] = mapped_column(String(1024))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    backbone: Mapped[str] = mapped_column(String(128))
    backbone_fingerprint: Mapped[str] = mapped_column(String(64))
    trainable_params: Mapped[int] = mapped_column(BigInteger)
    stored_params: Mapped[int] = mapped_column(BigInteger)
    data_version: Mapped[str] = mapped_column(String(128), default="")
    class_counts_json: Mapped[str] = mapped_column(Text, default="[]")
    stage: Mapped[str] = mapped_column(_choice(VERSION_STAGES, "version_stage"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    model: Mapped[Model] = relationship(lazy="joined")

    @property
    def label(self) -> str:
        """``name@version``, how commands and reports name a version."""
        return f"{self.model.name}@{self.version}"


class ModelAlias(Base):
    """A name that points at one model version; ``deployed`` is the version the service serves."""

    __tablename__ = "model_aliases"
    alias: Mapped[str] = mapped_column(String(32), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelEvent(Base):
    """One state change of a model version (registered, deployed, retired, ...), with why and on what evidence."""

    __tablename__ = "model_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str] = mapped_column(String(16))  # "none" when the version is first registered
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    evidence_json: Mapped[str] = mapped_column(Text, default="{}")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobRun(Base):
    """One run of the nightly job (cron or manual) or one pipeline ingest."""

    __tablename__ = "job_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trigger: Mapped[str] = mapped_column(_choice(JOB_TRIGGERS, "job_trigger"))
    status: Mapped[str] = mapped_column(_choice(JOB_STATUSES, "job_status"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    pairs_evaluated: Mapped[int] = mapped_column(Integer, default=0)
    pairs_failed: Mapped[int] = mapped_column(Integer, default=0)
    code_version: Mapped[str] = mapped_column(String(128), default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    report_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)


class EvalRun(Base):
    """The evaluation of one model version on one shift batch by one code version."""

    __tablename__ = "eval_runs"
    __table_args__ = (
        UniqueConstraint("model_version_id", "batch_id", "code_version", "labels_hash", name="uq_eval_run"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("shift_batches.id", ondelete="CASCADE"), index=True)
    code_version: Mapped[str] = mapped_column(String(128))
    labels_hash: Mapped[str] = mapped_column(String(64), default="")  # the batch's late label set, "" if none
    job_run_id: Mapped[int] = mapped_column(ForeignKey("job_runs.id"), index=True)
    status: Mapped[str] = mapped_column(_choice(RUN_STATUSES, "run_status"))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    eval_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    images_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Metric(Base):
    """One metric value of an eval run (top1/macro_f1/nll/ece/error per overall/shot group/class)."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "name", "grp", name="uq_metric"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    grp: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    ci_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    n: Mapped[int] = mapped_column(Integer)


class Estimate(Base):
    """A label-free accuracy estimate of an eval run (``estimator`` on ``grp``: overall or
    predicted:<group>), with the measured value and the error once labels exist. Never a metric."""

    __tablename__ = "estimates"
    __table_args__ = (UniqueConstraint("run_id", "estimator", "grp", name="uq_estimate"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    estimator: Mapped[str] = mapped_column(String(32))
    grp: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    measured: Mapped[float | None] = mapped_column(Float, nullable=True)
    abs_error: Mapped[float | None] = mapped_column(Float, nullable=True)


class Detection(Base):
    """One shift test of an eval run (bbsd, prompt_selection, key_cosine, label_shift) with its
    p-value and, after the night's Benjamini-Hochberg step, the adjusted p-value and verdict."""

    __tablename__ = "detections"
    __table_args__ = (UniqueConstraint("run_id", "detector", name="uq_detection"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    detector: Mapped[str] = mapped_column(String(32))
    statistic: Mapped[float] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float, nullable=True)  # label_shift has none
    p_adjusted: Mapped[float | None] = mapped_column(Float, nullable=True)
    rejected: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    details_json: Mapped[str] = mapped_column(Text, default="{}")


class Alert(Base):
    """Something a person should look at: a significant regression, a promotion, a rollback, a failure,
    a detected shift, an estimated drop."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id"), nullable=True, index=True)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=True
    )
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("shift_batches.id", ondelete="CASCADE"), nullable=True
    )
    kind: Mapped[str] = mapped_column(_choice(ALERT_KINDS, "alert_kind"))
    message: Mapped[str] = mapped_column(Text)
    details_json: Mapped[str] = mapped_column(Text, default="{}")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
