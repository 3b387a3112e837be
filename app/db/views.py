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
from sqlalchemy import String, case, cast, func, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select, Subquery

from app.db.schema import (
    DEPLOYED,
    Alert,
    EvalRun,
    JobRun,
    Metric,
    Model,
    ModelAlias,
    ModelEvent,
    ModelVersion,
    ShiftBatch,
)

DEMO_SOURCE = "demo-seed"
TABLES = ("shift_batches", "models", "model_versions", "model_aliases", "model_events", "job_runs", "eval_runs",
          "metrics", "alerts")
COUNTED_TABLES = (*TABLES, "estimates", "detections")  # lpt db counts and the dashboard's store summary
STATE_PRIORITY = {"deployed": 0, "baseline": 1, "candidate": 2, "retired": 3}
PROMPT_METHODS = ("lpt", "vpt")
HONESTY = "honesty baseline"
# Deployed first; honesty baselines (a prompt method in state "baseline", e.g. on a random-init
# backbone) last, so no default ever picks one.
ROLE_ORDER = {"deployed": 0, "candidate": 1, "baseline": 2, "retired": 3, HONESTY: 4}
SHOT_GROUPS = ("many", "medium", "few")
Z95 = 1.959963984540054

RESULT_COLUMNS = [
    "run_id", "model", "method", "state", "batch_id", "batch_kind", "dataset", "corruption",
    "severity", "is_demo", "started_at", "metric", "grp", "value", "ci_low", "ci_high", "n",
]


def _model_versions() -> Subquery:
    """One row per model version with what the views show: ``name`` is its label (the model's name,
    or ``name@N`` once the model has several versions, so every version is its own series), and
    ``state`` its stage, or "deployed" when the ``deployed`` alias points at it."""
    siblings = aliased(ModelVersion)
    n_versions = select(func.count(siblings.id)).where(siblings.model_id == ModelVersion.model_id).scalar_subquery()
    deployed = select(ModelAlias.version_id).where(ModelAlias.alias == DEPLOYED).scalar_subquery()
    label = case((n_versions > 1, Model.name + "@" + cast(ModelVersion.version, String)), else_=Model.name)
    state = case((ModelVersion.id == deployed, DEPLOYED), else_=ModelVersion.stage)
    return (
        select(ModelVersion.id, label.label("name"), Model.name.label("model_name"), ModelVersion.version,
               Model.method, state.label("state"), ModelVersion.backbone, ModelVersion.trainable_params,
               ModelVersion.stored_params, ModelVersion.data_version, ModelVersion.artifact_sha256,
               ModelVersion.created_at, ModelVersion.class_counts_json)
        .join(Model, Model.id == ModelVersion.model_id)
        .subquery("mv")
    )


MV = _model_versions()


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
        for table in COUNTED_TABLES:
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
    methods = _frame(engine, select(MV.c.method), ["method"])
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
        select(EvalRun.id, MV.c.name, MV.c.method, MV.c.state, ShiftBatch.id, ShiftBatch.kind,
               ShiftBatch.dataset, ShiftBatch.corruption, ShiftBatch.severity,
               ShiftBatch.source == DEMO_SOURCE, EvalRun.started_at, Metric.name, Metric.grp,
               Metric.value, Metric.ci_low, Metric.ci_high, Metric.n)
        .join(EvalRun, Metric.run_id == EvalRun.id)
        .join(MV, EvalRun.model_version_id == MV.c.id)
        .join(ShiftBatch, EvalRun.batch_id == ShiftBatch.id)
        .where(EvalRun.status == "succeeded", Metric.name == metric)
    )
    stmt = stmt.where(Metric.grp.like("class:%")) if per_class else stmt.where(Metric.grp.in_(groups))
    if flt.dataset:
        stmt = stmt.where(ShiftBatch.dataset == flt.dataset)
    if flt.methods:
        stmt = stmt.where(MV.c.method.in_(flt.methods))
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
    """Every registered model with its method, state, role and parameter counts, deployed first."""
    cols = ["id", "model", "method", "state", "backbone", "trainable_params", "stored_params",
            "data_version", "artifact_sha256", "created_at"]
    stmt = select(MV.c.id, MV.c.name, MV.c.method, MV.c.state, MV.c.backbone,
                  MV.c.trainable_params, MV.c.stored_params, MV.c.data_version,
                  MV.c.artifact_sha256, MV.c.created_at).order_by(MV.c.name)
    df = _frame(engine, stmt, cols)
    df["created_at"] = _utc(df["created_at"])
    df["role"] = [model_role(m, st) for m, st in zip(df["method"], df["state"])]
    return _by_role(df).reset_index(drop=True)


def model_overview(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Per model: clean accuracy, mean shifted accuracy, robustness gap and parameter counts.

    Clean accuracy pools every clean batch; mean shifted accuracy is the unweighted mean over
    (corruption, severity) cells of the pooled cell accuracy (the RobustBench convention).
    """
    cols = ["model", "method", "state", "role", "clean_acc", "shifted_acc", "gap", "trainable_params",
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
    return _by_role(out)[cols].reset_index(drop=True)


def shift_cells(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Pooled accuracy per (model, method, corruption, severity); clean appears as ("none", 0)."""
    df = results(engine, flt)
    return _pooled(df, ["model", "method", "corruption", "severity"])


def severity_curves(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Per model and severity (0 = clean) the mean over corruptions of the cell accuracy; a
    mixture batch (severity 0 but shifted) has no severity and is left out."""
    cells = shift_cells(engine, flt)
    cells = cells[(cells["corruption"] == "none") | (cells["severity"] > 0)]
    if cells.empty:
        return pd.DataFrame(columns=["model", "severity", "value"])
    return cells.groupby(["model", "severity"], as_index=False)["value"].mean()


def default_pair(overview: pd.DataFrame, method_a: str = "lpt", method_b: str = "full_ft") -> tuple[str, str] | None:
    """The models to compare by default: the first of each method by role (deployed first), never
    an honesty baseline; None when a method has no such model."""
    picks = []
    for method in (method_a, method_b):
        cand = overview[(overview["method"] == method) & (overview["role"] != HONESTY)]
        if cand.empty:
            return None
        picks.append(cand.iloc[0]["model"])  # overview is sorted by role
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
    df = _frame(engine, select(MV.c.name, MV.c.class_counts_json), ["model", "counts"])
    rows = [(m, i, int(c)) for m, raw in zip(df["model"], df["counts"])
            for i, c in enumerate(json.loads(raw or "[]"))]
    return pd.DataFrame(rows, columns=["model", "class_id", "train_count"])


def per_class_accuracy(engine: Engine, flt: ResultFilter,
                       shifted_batches: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per model and class: pooled accuracy on clean and on shifted batches with the training count.

    ``shifted_batches`` (optional) keeps only those shifted batches (clean ones always count).
    """
    cols = ["model", "class_id", "condition", "value", "n", "train_count"]
    df = results(engine, flt, per_class=True)
    if shifted_batches is not None:
        df = df[(df["corruption"] == "none") | df["batch_id"].isin(shifted_batches)]
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
    stmt = (select(ModelEvent.at, MV.c.name, ModelEvent.from_state, ModelEvent.to_state, ModelEvent.reason)
            .join(MV, ModelEvent.model_version_id == MV.c.id))
    df = _frame(engine, stmt, cols)
    df["at"] = _utc(df["at"])
    return df[_in_dates(df["at"], flt)].sort_values("at", ascending=False).reset_index(drop=True)


def alerts(engine: Engine, flt: ResultFilter, kinds: tuple[str, ...] = ()) -> pd.DataFrame:
    """Alerts (optionally of ``kinds``) in the date range, newest first."""
    cols = ["at", "kind", "model", "batch_id", "message", "job_run_id"]
    stmt = (select(Alert.at, Alert.kind, MV.c.name, Alert.batch_id, Alert.message, Alert.job_run_id)
            .join(MV, Alert.model_version_id == MV.c.id, isouter=True))
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
    stmt = (select(EvalRun.id, MV.c.name, MV.c.method, EvalRun.batch_id, EvalRun.status, EvalRun.error,
                   EvalRun.code_version, EvalRun.job_run_id, EvalRun.started_at, EvalRun.finished_at,
                   EvalRun.eval_seconds, EvalRun.images_per_second, EvalRun.device)
            .join(MV, EvalRun.model_version_id == MV.c.id))
    if flt.methods:
        stmt = stmt.where(MV.c.method.in_(flt.methods))
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


# --------------------------------------------------------------------------- added for issue 14:
# model roles, the headline comparison, per-run metrics for the report.


def model_role(method: str, state: str) -> str:
    """The state, except that a prompt method in state "baseline" is an honesty baseline."""
    return HONESTY if state == "baseline" and method in PROMPT_METHODS else state


def _by_role(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (columns model, method, state) with a role column, ordered by role then name."""
    df = df.assign(role=[model_role(m, s) for m, s in zip(df["method"], df["state"])])
    order = df["role"].map(ROLE_ORDER).fillna(len(ROLE_ORDER))
    return df.assign(_o=order).sort_values(["_o", "model"]).drop(columns="_o")


def headline_pair(overview: pd.DataFrame, reference: str = "full_ft") -> tuple[str, str] | None:
    """(subject, reference): the deployed model (else the first LPT/VPT candidate) against the
    first ``reference``-method model; never an honesty baseline. None when either is missing."""
    ranked = overview[overview["role"] != HONESTY]
    subject = ranked[ranked["role"] == "deployed"]
    if subject.empty:
        subject = ranked[ranked["method"].isin(PROMPT_METHODS)]
    ref = ranked[(ranked["method"] == reference) & (~ranked["model"].isin(subject["model"].head(1)))]
    if subject.empty or ref.empty:
        return None
    return subject.iloc[0]["model"], ref.iloc[0]["model"]


def _mean_of_cells(df: pd.DataFrame, cells: list[str]) -> tuple[float, float, int]:
    """(value, variance, batches): the mean over ``cells`` of pooled accuracy, with the binomial
    variance of that mean; (nan, nan, 0) when ``df`` is empty."""
    if df.empty:
        return float("nan"), float("nan"), 0
    pooled = _pooled(df.assign(_all=0), cells or ["_all"])
    p, n, k = pooled["value"].astype(float), pooled["n"].astype(float), len(pooled)
    return float(p.mean()), float((p * (1 - p) / n).sum() / k**2), int(df["batch_id"].nunique())


MEASURES = {"clean": "clean", "shifted": "shifted (mean)", "gap": "gap (clean - shifted)",
            "many": "many-shot, shifted", "medium": "medium-shot, shifted", "few": "few-shot, shifted"}


def _measures(df: pd.DataFrame) -> dict[str, tuple[float, float, int]]:
    """One model's (value, variance, batches) per measure of :data:`MEASURES`."""
    clean = df[df["corruption"] == "none"]
    shifted = df[df["corruption"] != "none"]
    cell = ["corruption", "severity"]
    out = {"clean": _mean_of_cells(clean[clean["grp"] == "overall"], []),
           "shifted": _mean_of_cells(shifted[shifted["grp"] == "overall"], cell)}
    (c, cv, cb), (s, sv, sb) = out["clean"], out["shifted"]
    out["gap"] = (c - s, cv + sv, cb + sb)
    for grp in SHOT_GROUPS:
        out[grp] = _mean_of_cells(shifted[shifted["grp"] == grp], cell)
    return out


def paired_comparison(engine: Engine, flt: ResultFilter, model_a: str, model_b: str,
                      shifted_batches: tuple[str, ...] | None = None) -> pd.DataFrame:
    """``model_a`` against ``model_b`` per measure (clean, shifted, gap, shot groups under shift)
    on the batches both were evaluated on, with 95% Wald intervals and the batches behind each.

    Shifted figures are means over (corruption, severity) cells of pooled accuracy; intervals
    treat batches and the two models as independent binomials (conservative for shared images).
    ``shifted_batches`` (optional) keeps only those shifted batches; every clean batch counts.
    ``kind`` is "measured" (label-free estimates will add "estimated" rows).
    """
    cols = ["measure", "label", "kind", "value_a", "ci_low_a", "ci_high_a", "value_b", "ci_low_b",
            "ci_high_b", "diff", "ci_low", "ci_high", "n_batches"]
    df = results(engine, flt, groups=("overall", *SHOT_GROUPS))
    df = df[df["model"].isin((model_a, model_b))]
    if shifted_batches is not None:
        df = df[(df["corruption"] == "none") | df["batch_id"].isin(shifted_batches)]
    common = set(df.loc[df["model"] == model_a, "batch_id"]) & set(df.loc[df["model"] == model_b, "batch_id"])
    df = df[df["batch_id"].isin(common)]
    if df.empty:
        return pd.DataFrame(columns=cols)
    a, b = _measures(df[df["model"] == model_a]), _measures(df[df["model"] == model_b])
    rows = []
    for key, label in MEASURES.items():
        (va, wa, n), (vb, wb, _) = a[key], b[key]
        ha, hb, hd = (Z95 * np.sqrt(w) for w in (wa, wb, wa + wb))
        rows.append([key, label, "measured", va, va - ha, va + ha, vb, vb - hb, vb + hb,
                     va - vb, va - vb - hd, va - vb + hd, n])
    return pd.DataFrame(rows, columns=cols)


RUN_COLUMNS = ["run_id", "job_run_id", "model", "method", "state", "batch_id", "batch_kind", "dataset",
               "corruption", "severity", "is_demo", "started_at", "finished_at", "grp", "value",
               "ci_low", "ci_high", "n", "eval_seconds", "images_per_second", "trainable_params",
               "stored_params"]


def run_metrics(engine: Engine, *, metric: str = "top1",
                groups: tuple[str, ...] = ("overall", *SHOT_GROUPS)) -> pd.DataFrame:
    """``metric`` of every succeeded evaluation run (every code version), oldest run first, with
    its job run, timing and the model's parameter counts: the history the report compares with."""
    stmt = (
        select(EvalRun.id, EvalRun.job_run_id, MV.c.name, MV.c.method, MV.c.state, ShiftBatch.id,
               ShiftBatch.kind, ShiftBatch.dataset, ShiftBatch.corruption, ShiftBatch.severity,
               ShiftBatch.source == DEMO_SOURCE, EvalRun.started_at, EvalRun.finished_at, Metric.grp,
               Metric.value, Metric.ci_low, Metric.ci_high, Metric.n, EvalRun.eval_seconds,
               EvalRun.images_per_second, MV.c.trainable_params, MV.c.stored_params)
        .join(EvalRun, Metric.run_id == EvalRun.id)
        .join(MV, EvalRun.model_version_id == MV.c.id)
        .join(ShiftBatch, EvalRun.batch_id == ShiftBatch.id)
        .where(EvalRun.status == "succeeded", Metric.name == metric, Metric.grp.in_(groups))
    )
    df = _frame(engine, stmt, RUN_COLUMNS)
    df["started_at"], df["finished_at"] = _utc(df["started_at"]), _utc(df["finished_at"])
    df["is_demo"] = df["is_demo"].astype(bool)
    return df.sort_values(["finished_at", "run_id"], kind="stable").reset_index(drop=True)


def latest_batches(engine: Engine, flt: ResultFilter, models: tuple[str, ...], limit: int = 6) -> pd.DataFrame:
    """Overall top-1 of ``models`` on the ``limit`` most recently evaluated shifted batches of the
    first of them, oldest first, with a short display label per batch (:func:`batch_label`)."""
    cols = ["batch", "batch_id", "model", "method", "value", "ci_low", "ci_high", "n", "started_at"]
    df = results(engine, flt)
    df = df[(df["corruption"] != "none") & df["model"].isin(models)]
    if df.empty or not models:
        return pd.DataFrame(columns=cols)
    first = df[df["model"] == models[0]].sort_values("started_at")
    keep = list(dict.fromkeys(first["batch_id"]))[-limit:]
    df = df[df["batch_id"].isin(keep)].copy()
    labels = first.drop_duplicates("batch_id").set_index("batch_id")
    df["batch"] = df["batch_id"].map(batch_label(labels.reset_index()).set_axis(labels.index))
    df["_o"] = df["batch_id"].map({b: i for i, b in enumerate(keep)})
    return df.sort_values(["_o", "model"])[cols].reset_index(drop=True)


def batch_label(df: pd.DataFrame) -> pd.Series:
    """A short label per batch, "fog s3 · 11-30" (condition, night), with the id's tail appended
    where two batches would share it; from a frame with batch_id, corruption, severity, started_at."""
    cond = np.where(df["corruption"] == "none", "clean",
                    np.where(df["severity"] > 0, df["corruption"].astype(str) + " s" + df["severity"].astype(str),
                             df["corruption"].astype(str)))
    night = pd.to_datetime(df["started_at"], utc=True).dt.strftime("%m-%d")
    label = pd.Series(cond, index=df.index) + " · " + night
    clash = label.groupby(label).transform("size") > 1
    return label.where(~clash, label + " · " + df["batch_id"].astype(str).str[-8:])
