"""Read-only views of label-free monitoring (MONITORING_SPEC.md), returned as pandas DataFrames.

Production batches arrive without labels; for every (model version, batch) the nightly job
stores accuracy ESTIMATES (ATC, Garg et al., ICLR 2022; DoC and average confidence, Guillory et
al., ICCV 2021) and shift DETECTIONS (BBSD and BBSE, Lipton et al., ICML 2018; LPT's prompt
selection and query-key cosine, ours). These functions read them for the report and the
dashboard, with the conventions of :mod:`app.db.views`: per (model, batch) only the latest
succeeded run counts, the same :class:`~app.db.views.ResultFilter` applies, and a store without
the tables (or without rows) gives empty frames with the documented columns, never an exception.

An estimate is never a measurement: frames carry ``kind = "estimated"`` and the ``estimator``,
and a shot group of an estimate is the group of the PREDICTED class ("predicted-group").
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql import Select

from app.db import views
from app.db.schema import Detection, Estimate, EvalRun, Metric, ShiftBatch
from app.db.views import MV, ResultFilter
from lpt_core.metrics import shot_groups

MONITOR_TABLES = ("estimates", "detections")
#: the estimator the headline figures use (the others are shown beside it)
HEADLINE_ESTIMATOR = "atc_max_conf"
ESTIMATORS = {"atc_max_conf": "ATC (max confidence)", "atc_neg_entropy": "ATC (negative entropy)",
              "doc": "DoC", "avg_conf": "average confidence"}
ESTIMATOR_SHORT = {"atc_max_conf": "ATC", "atc_neg_entropy": "ATC-entropy", "doc": "DoC", "avg_conf": "avg. conf."}
DETECTORS = {"bbsd": "BBSD (KS on softmax)", "prompt_selection": "prompt selection (chi-square)",
             "key_cosine": "query-key cosine", "label_shift": "class prior (BBSE)"}
PREDICTED = "predicted:"

RUN_COLUMNS = ["run_id", "job_run_id", "model", "method", "state", "batch_id", "batch_kind", "dataset",
               "corruption", "severity", "size", "labeled", "n_labeled", "run_labels_hash", "is_demo",
               "started_at", "finished_at"]
ESTIMATE_COLUMNS = [*RUN_COLUMNS, "estimator", "estimator_label", "grp", "group_label", "value", "n", "measured",
                    "abs_error"]
DETECTION_COLUMNS = [*RUN_COLUMNS, "detector", "detector_label", "statistic", "p_value", "p_adjusted", "rejected",
                     "verdict", "details"]
PRIOR_COLUMNS = ["run_id", "model", "batch_id", "labeled", "started_at", "class_id", "train_count", "shot_group",
                 "training_share", "reference_share", "batch_share", "change"]
COMPARE_COLUMNS = ["model", "method", "batch_id", "batch", "estimator", "estimator_label", "grp", "value",
                   "measured", "abs_error", "n", "started_at", "night"]
ERROR_COLUMNS = ["model", "estimator", "estimator_label", "night", "mae", "n_batches"]


def group_label(grp: str) -> str:
    """"overall", or "predicted-group few" for ``predicted:few`` (the group of the predicted class)."""
    return f"predicted-group {grp.removeprefix(PREDICTED)}" if grp.startswith(PREDICTED) else grp


def _frame(engine: Engine, stmt: Select, columns: list[str]) -> pd.DataFrame:
    """Run ``stmt``; a store without the monitoring tables gives an empty frame with ``columns``."""
    if not {*views.TABLES, *MONITOR_TABLES} <= set(inspect(engine).get_table_names()):
        return pd.DataFrame(columns=columns)
    with engine.connect() as conn:
        return pd.DataFrame([tuple(r) for r in conn.execute(stmt).all()], columns=columns)


def _filtered(stmt: Select, flt: ResultFilter) -> Select:
    """``stmt`` restricted like :func:`app.db.views.results` (clean batches stay in)."""
    if flt.dataset:
        stmt = stmt.where(ShiftBatch.dataset == flt.dataset)
    if flt.methods:
        stmt = stmt.where(MV.c.method.in_(flt.methods))
    if flt.corruptions:
        stmt = stmt.where(ShiftBatch.corruption.in_((*flt.corruptions, "none")))
    if flt.severities:
        stmt = stmt.where(ShiftBatch.severity.in_((*flt.severities, 0)))
    if not flt.include_demo:
        stmt = stmt.where(ShiftBatch.source != views.DEMO_SOURCE)
    return stmt


def latest_runs(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """The latest succeeded run per (model, batch) with model and batch (``labeled``: labels came
    with the images; ``n_labeled``: images with a label, late ones included), oldest first."""
    stmt = (select(EvalRun.id, EvalRun.job_run_id, MV.c.name, MV.c.method, MV.c.state, ShiftBatch.id,
                   ShiftBatch.kind, ShiftBatch.dataset, ShiftBatch.corruption, ShiftBatch.severity, ShiftBatch.size,
                   ShiftBatch.labeled, ShiftBatch.n_labeled, EvalRun.labels_hash,
                   ShiftBatch.source == views.DEMO_SOURCE, EvalRun.started_at, EvalRun.finished_at)
            .join(MV, EvalRun.model_version_id == MV.c.id).join(ShiftBatch, EvalRun.batch_id == ShiftBatch.id)
            .where(EvalRun.status == "succeeded"))  # fmt: skip
    df = _frame(engine, _filtered(stmt, flt), RUN_COLUMNS)
    df["started_at"], df["finished_at"] = views._utc(df["started_at"]), views._utc(df["finished_at"])
    df["labeled"], df["is_demo"] = df["labeled"].astype(bool), df["is_demo"].astype(bool)
    df = df[views._in_dates(df["started_at"], flt)].sort_values(["started_at", "run_id"])
    latest = df.groupby(["model", "batch_id"])["run_id"].last()
    return df[df["run_id"].isin(latest)].reset_index(drop=True)


def label_status(engine: Engine) -> pd.DataFrame:
    """Per registered batch: whether labels came with it, how many images have one (late labels
    included) and the hash of its late label set ("" when none)."""
    stmt = select(ShiftBatch.id, ShiftBatch.labeled, ShiftBatch.n_labeled, ShiftBatch.labels_hash)
    df = _frame(engine, stmt, ["batch_id", "labeled", "n_labeled", "labels_hash"])
    return df.assign(labeled=df["labeled"].astype(bool))


def estimates(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Every estimate of the latest runs (columns :data:`ESTIMATE_COLUMNS`): estimator, group
    ("overall" or "predicted:<group>"), value, images, and once labels exist the measured top-1 of
    the same images and the absolute error."""
    stmt = select(Estimate.run_id, Estimate.estimator, Estimate.grp, Estimate.value, Estimate.n, Estimate.measured,
                  Estimate.abs_error)
    rows = _frame(engine, stmt, ["run_id", "estimator", "grp", "value", "n", "measured", "abs_error"])
    df = latest_runs(engine, flt).merge(rows, on="run_id", how="inner")
    df = df.assign(estimator_label=df["estimator"].map(ESTIMATORS).fillna(df["estimator"]),
                   group_label=df["grp"].map(group_label))
    for col in ("value", "measured", "abs_error"):
        df[col] = df[col].astype(float)
    return df[ESTIMATE_COLUMNS]


def verdict(detector: str, p_value: float | None, rejected: bool | None) -> str:
    """A detection in words: "shift detected", "no shift detected", "not yet adjusted" (before the
    night's Benjamini-Hochberg step) or "estimate, no test" (the class-prior estimate)."""
    if detector == "label_shift" or p_value is None or pd.isna(p_value):
        return "estimate, no test"
    if rejected is None or pd.isna(rejected):
        return "not yet adjusted"
    return "shift detected" if bool(rejected) else "no shift detected"


def detections(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Every detection of the latest runs (columns :data:`DETECTION_COLUMNS`): statistic, raw and
    Benjamini-Hochberg adjusted p-value, verdict in words and the parsed details."""
    stmt = select(Detection.run_id, Detection.detector, Detection.statistic, Detection.p_value, Detection.p_adjusted,
                  Detection.rejected, Detection.details_json)
    rows = _frame(engine, stmt, ["run_id", "detector", "statistic", "p_value", "p_adjusted", "rejected", "raw"])
    df = latest_runs(engine, flt).merge(rows, on="run_id", how="inner")
    rejected = [None if r is None or pd.isna(r) else bool(r) for r in df["rejected"]]
    df = df.assign(rejected=pd.Series(rejected, index=df.index, dtype=object),
                   detector_label=df["detector"].map(DETECTORS).fillna(df["detector"]),
                   details=[json.loads(raw or "{}") for raw in df["raw"]])
    df["verdict"] = [verdict(d, p, r) for d, p, r in zip(df["detector"], df["p_value"], df["rejected"])]
    for col in ("statistic", "p_value", "p_adjusted"):
        df[col] = df[col].astype(float)
    return df[DETECTION_COLUMNS]


def _prior_rows(run: pd.Series, counts: list[int]) -> list[tuple]:
    """One row per class of a label-shift detection: training, reference and estimated batch share."""
    prior = [float(p) for p in run["details"].get("prior") or []]
    if not prior or len(counts) != len(prior):
        return []  # a model without training counts (or of another class count) has nothing to compare
    reference = {int(c["class"]): float(c["reference_share"]) for c in run["details"].get("largest_changes") or []}
    total, groups = sum(counts), shot_groups(np.asarray(counts))
    return [(run["run_id"], run["model"], run["batch_id"], run["labeled"], run["started_at"], j, counts[j],
             str(groups[j]), counts[j] / total if total else np.nan, reference.get(j, np.nan), share,
             share - reference.get(j, np.nan)) for j, share in enumerate(prior)]  # fmt: skip


def class_priors(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """Per (model, batch) and class: the batch's class prior estimated by BBSE from the model's
    predictions, the training prior (``class_counts_json``), its shot group, and where stored the
    reference (target) prior the estimate is compared with and the change from it."""
    shifts = detections(engine, flt)
    shifts = shifts[shifts["detector"] == "label_shift"]
    counts = views._class_counts(engine).groupby("model")["train_count"].apply(list).to_dict()
    rows = [r for _, run in shifts.iterrows() for r in _prior_rows(run, counts.get(run["model"], []))]
    out = pd.DataFrame(rows, columns=PRIOR_COLUMNS)
    return out.astype({"training_share": float, "reference_share": float, "batch_share": float, "change": float})


def prior_vs_training(engine: Engine, flt: ResultFilter, model: str, batch_id: str) -> pd.DataFrame:
    """:func:`class_priors` of one (model, batch); empty when it has no label-shift estimate."""
    priors = class_priors(engine, flt)
    return priors[(priors["model"] == model) & (priors["batch_id"] == batch_id)].reset_index(drop=True)


def estimate_vs_measured(engine: Engine, flt: ResultFilter, grp: str = "overall") -> pd.DataFrame:
    """Estimates of ``grp`` whose run measured labels, beside the measured top-1 and the absolute
    error, with a batch label and the night (UTC) of the run (columns :data:`COMPARE_COLUMNS`)."""
    df = estimates(engine, flt)
    df = df[(df["grp"] == grp) & df["measured"].notna()]
    if df.empty:
        return pd.DataFrame(columns=COMPARE_COLUMNS)
    df = df.assign(batch=batch_labels(df).values, night=df["started_at"].dt.floor("D"))
    return df[COMPARE_COLUMNS].sort_values(["started_at", "model", "estimator"]).reset_index(drop=True)


def estimator_errors(engine: Engine, flt: ResultFilter, grp: str = "overall") -> pd.DataFrame:
    """Per model, estimator and night: the mean absolute error of the estimates against the measured
    top-1 over that night's labelled batches, and how many batches it covers."""
    df = estimate_vs_measured(engine, flt, grp)
    if df.empty:
        return pd.DataFrame(columns=ERROR_COLUMNS)
    out = df.groupby(["model", "estimator", "estimator_label", "night"], as_index=False).agg(
        mae=("abs_error", "mean"), n_batches=("batch_id", "nunique"))
    return out[ERROR_COLUMNS]


def batch_labels(df: pd.DataFrame) -> pd.Series:
    """One short label per row's batch (:func:`app.db.views.batch_label` over the distinct batches,
    from their first evaluation), "production" for a batch of unknown shift; indexed like ``df``."""
    first = df.sort_values("started_at").drop_duplicates("batch_id")
    named = views.batch_label(first.assign(corruption=first["corruption"].replace("unknown", "production")))
    return df["batch_id"].map(dict(zip(first["batch_id"], named)))


def estimated_top1(engine: Engine, flt: ResultFilter, estimator: str = HEADLINE_ESTIMATOR) -> pd.DataFrame:
    """Estimated overall top-1 of the latest runs that measured nothing (unlabeled batches), in
    the shape of :func:`app.db.views.results` (no interval) plus ``kind = "estimated"`` and
    ``estimator``, so the chart functions draw them hollow / dashed."""
    cols = [*views.RESULT_COLUMNS, "kind", "estimator", "estimator_label"]
    measured = select(Metric.run_id).where(Metric.name == "top1", Metric.grp == "overall")
    ids = set(_frame(engine, measured, ["run_id"])["run_id"])
    df = estimates(engine, flt)
    df = df[(df["estimator"] == estimator) & (df["grp"] == "overall") & ~df["run_id"].isin(ids)]
    return df.assign(metric="top1", ci_low=np.nan, ci_high=np.nan, kind="estimated")[cols].reset_index(drop=True)


def trend_with_estimates(engine: Engine, flt: ResultFilter) -> pd.DataFrame:
    """:func:`app.db.views.nightly_trend` (kind "measured") and the unlabeled shifted batches'
    estimated top-1 (kind "estimated", estimator :data:`HEADLINE_ESTIMATOR`), oldest first."""
    measured = views.nightly_trend(engine, flt).assign(kind="measured", estimator=None, estimator_label=None)
    est = estimated_top1(engine, flt)
    est = est[est["corruption"] != "none"]
    keep = ["model", "method", "batch_id", "corruption", "severity", "started_at", "value", "is_demo"]
    est = est[keep].assign(night=est["started_at"].dt.floor("D"), kind="estimated", estimator=HEADLINE_ESTIMATOR,
                           estimator_label=ESTIMATORS[HEADLINE_ESTIMATOR])
    parts = [p for p in (measured, est) if not p.empty]
    if not parts:
        return measured
    return pd.concat(parts, ignore_index=True).sort_values("started_at").reset_index(drop=True)


def latest_batches(engine: Engine, flt: ResultFilter, models: tuple[str, ...], limit: int = 6) -> pd.DataFrame:
    """:func:`app.db.views.latest_batches` with unlabeled batches as estimated top-1: the ``limit``
    most recently evaluated shifted batches of the first model; an estimated row's batch label
    ends in "estimated" (``estimator_label`` names the estimator, for the chart's subtitle), a
    batch measured on late labels says how many."""
    cols = ["batch", "batch_id", "model", "method", "value", "ci_low", "ci_high", "n", "started_at", "kind",
            "estimator", "estimator_label"]
    measured = views.results(engine, flt).assign(kind="measured", estimator=None, estimator_label=None)
    df = pd.concat([p for p in (measured, estimated_top1(engine, flt)) if not p.empty] or [measured],
                   ignore_index=True)
    df = df[(df["corruption"] != "none") & df["model"].isin(models)]
    if df.empty or not models:
        return pd.DataFrame(columns=cols)
    first = df[df["model"] == models[0]].sort_values("started_at")
    keep = list(dict.fromkeys(first["batch_id"]))[-limit:]
    df = df[df["batch_id"].isin(keep)].copy()
    est = df["kind"] == "estimated"
    df["batch"] = df["batch_id"].map(dict(zip(first["batch_id"], batch_labels(first))))
    df.loc[est, "batch"] += " · estimated"  # the chart's subtitle names the estimator
    status = label_status(engine).set_index("batch_id")
    late = df["batch_id"].map(status["labeled"]).eq(False) & ~est  # labels that came later, for a sample
    df.loc[late, "batch"] += " · " + df.loc[late, "n"].astype(int).astype(str) + " labelled"
    df["_o"] = df["batch_id"].map({b: i for i, b in enumerate(keep)})
    return df.sort_values(["_o", "model"])[cols].reset_index(drop=True)
