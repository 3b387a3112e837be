"""Read-only analytic queries over the service store, returned as pandas DataFrames.

The dashboard (``dashboards/``) and the reports read through these functions; nothing here
writes. Every function takes an Engine and a :class:`ResultFilter`; a store whose tables are
missing or empty yields empty frames with the documented columns, never an exception.

Conventions: accuracy is metric ``top1``; for each (model, shift batch) only the latest
succeeded evaluation run counts; a batch with corruption ``"none"`` is clean; rows seeded by
``dashboards.seed_demo`` carry ``source == "demo-seed"`` and are flagged ``is_demo``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pandas as pd
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql import Select

from app.db.schema import Alert, EvalRun, JobRun, Metric, Model, ModelEvent, ShiftBatch

DEMO_SOURCE = "demo-seed"
TABLES = ("shift_batches", "models", "model_events", "job_runs", "eval_runs", "metrics", "alerts")
STATE_PRIORITY = {"deployed": 0, "baseline": 1, "candidate": 2, "retired": 3}
Z95 = 1.959963984540054

RESULT_COLUMNS = [
    "run_id", "model", "method", "state", "batch_id", "batch_kind", "dataset", "corruption",
    "severity", "is_demo", "started_at", "metric", "grp", "value", "ci_low", "ci_high", "n",
]


@dataclass(frozen=True)
class ResultFilter:
    """Which results a view covers; empty tuples and ``None`` mean "no restriction"."""

    dataset: str | None = None
    methods: tuple[str, ...] = ()
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    start: date | None = None
    end: date | None = None  # inclusive
    include_demo: bool = True

    def __post_init__(self) -> None:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"filter start {self.start} is after end {self.end}")


def store_counts(engine: Engine) -> dict[str, int]:
    """Rows per service table; a table that does not exist counts as 0."""
    present = set(inspect(engine).get_table_names())
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for table in TABLES:
            counts[table] = (
                int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one())
                if table in present else 0
            )
    return counts


def has_results(engine: Engine) -> bool:
    """Whether the store holds at least one metric of a succeeded evaluation run."""
    return store_counts(engine)["metrics"] > 0


def _frame(engine: Engine, stmt: Select, columns: list[str]) -> pd.DataFrame:
    """Run ``stmt``; an absent schema gives an empty frame with ``columns``."""
    if not set(TABLES) <= set(inspect(engine).get_table_names()):
        return pd.DataFrame(columns=columns)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def _in_dates(times: pd.Series, flt: ResultFilter) -> pd.Series:
    """Boolean mask of ``times`` (aware) within the filter's inclusive date range."""
    mask = pd.Series(True, index=times.index)
    if flt.start:
        mask &= times >= datetime.combine(flt.start, time(), tzinfo=timezone.utc)
    if flt.end:
        mask &= times < datetime.combine(flt.end + timedelta(days=1), time(), tzinfo=timezone.utc)
    return mask


def filter_options(engine: Engine) -> dict[str, list]:
    """Values the filters can take: datasets, methods, corruptions, severities, first/last night."""
    batches = _frame(engine, select(ShiftBatch.dataset, ShiftBatch.corruption, ShiftBatch.severity),
                     ["dataset", "corruption", "severity"])
    methods = _frame(engine, select(Model.method), ["method"])
    runs = _frame(engine, select(func.min(EvalRun.started_at), func.max(EvalRun.started_at)),
                  ["first", "last"])
    first_last = [] if runs.empty or runs["first"].isna().all() else list(_utc(runs.iloc[0]).dt.date)
    return {
        "datasets": sorted(batches["dataset"].unique()),
        "methods": sorted(methods["method"].unique()),
        "corruptions": sorted(c for c in batches["corruption"].unique() if c != "none"),
        "severities": sorted(int(s) for s in batches["severity"].unique() if s > 0),
        "dates": first_last,
    }


def results(engine: Engine, flt: ResultFilter, *, metric: str = "top1",
            groups: tuple[str, ...] = ("overall",), per_class: bool = False) -> pd.DataFrame:
    """Metric rows of the latest succeeded run per (model, batch), joined with model and batch.

    ``groups`` selects grp values; ``per_class=True`` selects the ``class:<i>`` rows instead.
    The corruption/severity filters keep clean batches so clean-vs-shifted views stay whole.
    """
    stmt = (
        select(EvalRun.id, Model.name, Model.method, Model.state, ShiftBatch.id, ShiftBatch.kind,
               ShiftBatch.dataset, ShiftBatch.corruption, ShiftBatch.severity,
               ShiftBatch.source == DEMO_SOURCE, EvalRun.started_at, Metric.name, Metric.grp,
               Metric.value, Metric.ci_low, Metric.ci_high, Metric.n)
        .join(EvalRun, Metric.run_id == EvalRun.id)
        .join(Model, EvalRun.model_id == Model.id)
        .join(ShiftBatch, EvalRun.batch_id == ShiftBatch.id)
        .where(EvalRun.status == "succeeded", Metric.name == metric)
    )
    stmt = stmt.where(Metric.grp.like("class:%")) if per_class else stmt.where(Metric.grp.in_(groups))
    if flt.dataset:
        stmt = stmt.where(ShiftBatch.dataset == flt.dataset)
    if flt.methods:
        stmt = stmt.where(Model.method.in_(flt.methods))
    if flt.corruptions:
        stmt = stmt.where(ShiftBatch.corruption.in_((*flt.corruptions, "none")))
    if flt.severities:
        stmt = stmt.where(ShiftBatch.severity.in_((*flt.severities, 0)))
    if not flt.include_demo:
        stmt = stmt.where(ShiftBatch.source != DEMO_SOURCE)
    df = _frame(engine, stmt, RESULT_COLUMNS)
    df["started_at"] = _utc(df["started_at"])
    df["is_demo"] = df["is_demo"].astype(bool)
    df = df[_in_dates(df["started_at"], flt)]
    latest = df.sort_values(["started_at", "run_id"]).groupby(["model", "batch_id"])["run_id"].last()
    return df[df["run_id"].isin(latest)].reset_index(drop=True)


def _pooled(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Accuracy pooled over batches (sum of correct / sum of n) per ``keys``."""
    if df.empty:
        return pd.DataFrame(columns=[*keys, "value", "n"])
    work = df.assign(correct=df["value"].astype(float) * df["n"])
    out = work.groupby(keys, as_index=False)[["correct", "n"]].sum()
    out["value"] = out["correct"] / out["n"].where(out["n"] > 0)
    return out.drop(columns="correct")


def models(engine: Engine) -> pd.DataFrame:
    """Every registered model with its method, state and parameter counts."""
    cols = ["id", "model", "method", "state", "backbone", "trainable_params", "stored_params",
            "data_version", "artifact_sha256", "created_at"]
    stmt = select(Model.id, Model.name, Model.method, Model.state, Model.backbone,
                  Model.trainable_params, Model.stored_params, Model.data_version,
                  Model.artifact_sha256, Model.created_at).order_by(Model.name)
    df = _frame(engine, stmt, cols)
    df["created_at"] = _utc(df["created_at"])
    return df


def model_overview(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Per model: clean accuracy, mean shifted accuracy, robustness gap and parameter counts.

    Clean accuracy pools every clean batch; mean shifted accuracy is the unweighted mean over
    (corruption, severity) cells of the pooled cell accuracy (the RobustBench convention).
    """
    cols = ["model", "method", "state", "clean_acc", "shifted_acc", "gap", "trainable_params",
            "stored_params", "n_batches", "demo_batches"]
    df = results(engine, flt)
    if df.empty:
        return pd.DataFrame(columns=cols)
    clean = _pooled(df[df["corruption"] == "none"], ["model"]).set_index("model")["value"]
    cells = _pooled(df[df["corruption"] != "none"], ["model", "corruption", "severity"])
    shifted = cells.groupby("model")["value"].mean()
    info = models(engine).set_index("model")
    out = pd.DataFrame({"clean_acc": clean, "shifted_acc": shifted})
    out["gap"] = out["clean_acc"] - out["shifted_acc"]
    out["n_batches"] = df.groupby("model")["batch_id"].nunique()
    out["demo_batches"] = df[df["is_demo"]].groupby("model")["batch_id"].nunique()
    out["demo_batches"] = out["demo_batches"].fillna(0).astype(int)
    out = out.join(info[["method", "state", "trainable_params", "stored_params"]], how="left")
    out = out.reset_index(names="model")
    out["_p"] = out["state"].map(STATE_PRIORITY)
    return out.sort_values(["_p", "model"])[cols].reset_index(drop=True)


def shift_cells(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Pooled accuracy per (model, method, corruption, severity); clean appears as ("none", 0)."""
    df = results(engine, flt)
    return _pooled(df, ["model", "method", "corruption", "severity"])


def severity_curves(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Per model and severity (0 = clean) the mean over corruptions of the cell accuracy."""
    cells = shift_cells(engine, flt)
    if cells.empty:
        return pd.DataFrame(columns=["model", "severity", "value"])
    return cells.groupby(["model", "severity"], as_index=False)["value"].mean()


def default_pair(overview: pd.DataFrame, method_a: str = "lpt", method_b: str = "full_ft") -> tuple[str, str] | None:
    """The models to compare by default: the best-state model of each method, or None if absent."""
    picks = []
    for method in (method_a, method_b):
        cand = overview[overview["method"] == method]
        if cand.empty:
            return None
        picks.append(cand.iloc[0]["model"])  # overview is sorted by state priority
    return picks[0], picks[1]


def model_difference(engine: Engine, flt: ResultFilter, model_a: str, model_b: str) -> pd.DataFrame:
    """Accuracy of ``model_a`` minus ``model_b`` per (corruption, severity) with a 95% Wald interval.

    The interval treats the two accuracies as independent binomials (conservative when both
    models saw the same images, which correlates their errors positively).
    """
    cols = ["corruption", "severity", "acc_a", "acc_b", "diff", "ci_low", "ci_high", "n_a", "n_b"]
    cells = shift_cells(engine, flt)
    a = cells[cells["model"] == model_a].set_index(["corruption", "severity"])
    b = cells[cells["model"] == model_b].set_index(["corruption", "severity"])
    both = a[["value", "n"]].join(b[["value", "n"]], lsuffix="_a", rsuffix="_b", how="inner")
    if both.empty:
        return pd.DataFrame(columns=cols)
    both = both.rename(columns={"value_a": "acc_a", "value_b": "acc_b"}).reset_index()
    se = np.sqrt(both["acc_a"] * (1 - both["acc_a"]) / both["n_a"]
                 + both["acc_b"] * (1 - both["acc_b"]) / both["n_b"])
    both["diff"] = both["acc_a"] - both["acc_b"]
    both["ci_low"], both["ci_high"] = both["diff"] - Z95 * se, both["diff"] + Z95 * se
    return both[cols].sort_values(["corruption", "severity"]).reset_index(drop=True)


def _class_counts(engine: Engine) -> pd.DataFrame:
    """Training images per class of each model, from ``models.class_counts_json``."""
    df = _frame(engine, select(Model.name, Model.class_counts_json), ["model", "counts"])
    rows = [(m, i, int(c)) for m, raw in zip(df["model"], df["counts"])
            for i, c in enumerate(json.loads(raw or "[]"))]
    return pd.DataFrame(rows, columns=["model", "class_id", "train_count"])


def per_class_accuracy(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Per model and class: pooled accuracy on clean and on shifted batches with the training count."""
    cols = ["model", "class_id", "condition", "value", "n", "train_count"]
    df = results(engine, flt, per_class=True)
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df.assign(class_id=df["grp"].str.removeprefix("class:").astype(int),
                   condition=np.where(df["corruption"] == "none", "clean", "shifted"))
    pooled = _pooled(df, ["model", "class_id", "condition"])
    out = pooled.merge(_class_counts(engine), on=["model", "class_id"], how="inner")
    return out[cols]


def shot_group_accuracy(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Pooled many/medium/few accuracy per model and condition ("clean" or the corruption name)."""
    df = results(engine, flt, groups=("many", "medium", "few"))
    df = df.assign(condition=df["corruption"].where(df["corruption"] != "none", "clean"))
    return _pooled(df, ["model", "condition", "grp"])


def nightly_trend(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Overall accuracy per model and shifted batch with the night (UTC date) it was evaluated."""
    df = results(engine, flt)
    df = df[df["corruption"] != "none"]
    out = df[["model", "method", "batch_id", "corruption", "severity", "started_at", "value", "is_demo"]]
    return out.assign(night=out["started_at"].dt.floor("D")).sort_values("started_at").reset_index(drop=True)


def model_events(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Model state changes (promotions, rollbacks, registrations) in the date range, newest first."""
    cols = ["at", "model", "from_state", "to_state", "reason"]
    stmt = (select(ModelEvent.at, Model.name, ModelEvent.from_state, ModelEvent.to_state, ModelEvent.reason)
            .join(Model, ModelEvent.model_id == Model.id))
    df = _frame(engine, stmt, cols)
    df["at"] = _utc(df["at"])
    return df[_in_dates(df["at"], flt)].sort_values("at", ascending=False).reset_index(drop=True)


def alerts(engine: Engine, flt: ResultFilter, kinds: tuple[str, ...] = ()) -> pd.DataFrame:
    """Alerts (optionally of ``kinds``) in the date range, newest first."""
    cols = ["at", "kind", "model", "batch_id", "message", "job_run_id"]
    stmt = (select(Alert.at, Alert.kind, Model.name, Alert.batch_id, Alert.message, Alert.job_run_id)
            .join(Model, Alert.model_id == Model.id, isouter=True))
    if kinds:
        stmt = stmt.where(Alert.kind.in_(kinds))
    df = _frame(engine, stmt, cols)
    df["at"] = _utc(df["at"])
    return df[_in_dates(df["at"], flt)].sort_values("at", ascending=False).reset_index(drop=True)


def shift_batches(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Registered shift batches with provenance (DVC hash, content hash) and validation outcome."""
    cols = ["batch_id", "kind", "source", "dataset", "corruption", "severity", "size", "dvc_hash",
            "content_hash", "validation_status", "validation_json", "path", "created_at"]
    stmt = select(ShiftBatch.id, ShiftBatch.kind, ShiftBatch.source, ShiftBatch.dataset,
                  ShiftBatch.corruption, ShiftBatch.severity, ShiftBatch.size, ShiftBatch.dvc_hash,
                  ShiftBatch.content_hash, ShiftBatch.validation_status, ShiftBatch.validation_json,
                  ShiftBatch.path, ShiftBatch.created_at)
    df = _frame(engine, stmt, cols)
    df["created_at"] = _utc(df["created_at"])
    keep = _in_dates(df["created_at"], flt)
    if flt.dataset:
        keep &= df["dataset"] == flt.dataset
    if not flt.include_demo:
        keep &= df["source"] != DEMO_SOURCE
    return df[keep].sort_values("created_at", ascending=False).reset_index(drop=True)


def eval_runs(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Evaluation runs (every status) with model, batch, timing and error, newest first."""
    cols = ["run_id", "model", "method", "batch_id", "status", "error", "code_version", "job_run_id",
            "started_at", "finished_at", "eval_seconds", "images_per_second", "device"]
    stmt = (select(EvalRun.id, Model.name, Model.method, EvalRun.batch_id, EvalRun.status, EvalRun.error,
                   EvalRun.code_version, EvalRun.job_run_id, EvalRun.started_at, EvalRun.finished_at,
                   EvalRun.eval_seconds, EvalRun.images_per_second, EvalRun.device)
            .join(Model, EvalRun.model_id == Model.id))
    if flt.methods:
        stmt = stmt.where(Model.method.in_(flt.methods))
    df = _frame(engine, stmt, cols)
    df["started_at"], df["finished_at"] = _utc(df["started_at"]), _utc(df["finished_at"])
    return df[_in_dates(df["started_at"], flt)].sort_values("started_at", ascending=False).reset_index(drop=True)


def job_runs(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Nightly/manual/pipeline job runs with their counts, error and report path, newest first."""
    cols = ["job_run_id", "trigger", "status", "started_at", "finished_at", "pairs_evaluated",
            "pairs_failed", "code_version", "error", "report_path"]
    stmt = select(JobRun.id, JobRun.trigger, JobRun.status, JobRun.started_at, JobRun.finished_at,
                  JobRun.pairs_evaluated, JobRun.pairs_failed, JobRun.code_version, JobRun.error,
                  JobRun.report_path)
    df = _frame(engine, stmt, cols)
    df["started_at"], df["finished_at"] = _utc(df["started_at"]), _utc(df["finished_at"])
    return df[_in_dates(df["started_at"], flt)].sort_values("started_at", ascending=False).reset_index(drop=True)
