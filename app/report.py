"""The nightly report of one job run: HTML (one self-contained file: inline CSS and SVG charts, no
scripts), Markdown and JSON.

Summary first: the deployed model; each batch the job evaluated with the deployed model's top-1
and its change since the model's previous comparable batch (same dataset, corruption and
severity, from another job run) with a Wald interval and a pooled two-proportion z-test; the
deployed model against full fine-tuning on the same batches (difference with a 95% interval); the
job's alerts and gate decisions. Then one row per model and batch (overall, many, medium, few,
gap, change), per-class accuracy of the deployed model against its training counts, and the cost
per method. A regression is flagged only when the z-test rejects "no change" at ``alert_alpha``.
Charts are :mod:`app.charts` builders (the dashboard's own), rendered offline to SVG; every
number is read through :mod:`app.db.views` and :mod:`app.db.views_monitoring`.

Batches without labels (MONITORING_SPEC.md) get "estimated" rows (``kind``, ``estimator``): the
label-free top-1 of ATC (Garg et al., ICLR 2022) with DoC (Guillory et al., ICCV 2021) beside it,
predicted-group estimates, the shift tests with raw and Benjamini-Hochberg adjusted p-values and
the class prior estimated by BBSE (Lipton et al., ICML 2018). No change is tested for an estimate:
without labels there is no sampling distribution of the accuracy to test against.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
from sqlalchemy.engine import Engine

from app import charts
from app import charts_monitoring as mcharts
from app import report_render as render
from app.db import views
from app.db import views_monitoring as mviews
from app.db.schema import utcnow
from app.settings import Settings
from app.stats import is_significant_drop, two_proportion_change

GROUPS = ("overall", "many", "medium", "few")
# Demo-seeded rows (dashboards.seed_demo) are resampled, not measured: the report never uses them.
MEASURED = views.ResultFilter(include_demo=False)
SCHEMA = "lpt-report/2"
TEST = "pooled two-proportion z-test against the same model's previous evaluation on a batch of the same kind"


@dataclass
class Report:
    """Where the report went, its rows, and the significant regressions it found."""

    paths: dict[str, Path]
    rows: list[dict[str, Any]]
    regressions: list[dict[str, Any]] = field(default_factory=list)
    alert_lines: list[str] = field(default_factory=list)


def write_report(engine: Engine, settings: Settings, job_run_id: int) -> Report:
    """Build the report of ``job_run_id`` and write ``<date>_job<id>.{html,md,json}`` under reports_dir."""
    doc, figures = build_report(engine, settings, job_run_id)
    svgs = {name: charts.to_svg(chart) for name, chart in figures.items()}
    stem = f"{utcnow():%Y-%m-%d}_job{job_run_id}"
    out = Path(settings.reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "html": out / f"{stem}.html"}
    paths["json"].write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    paths["md"].write_text(render.markdown(doc), encoding="utf-8")
    paths["html"].write_text(render.html_page(doc, svgs), encoding="utf-8")
    return Report(paths, doc["rows"], doc["regressions"], doc["alerts"])


def build_report(engine: Engine, settings: Settings, job_run_id: int) -> tuple[dict[str, Any], dict[str, alt.TopLevelMixin]]:
    """The report document (JSON-ready) and its charts, for job run ``job_run_id``."""
    jobs = views.job_runs(engine, views.ResultFilter())
    job = jobs[jobs["job_run_id"] == job_run_id]
    if job.empty:
        raise KeyError(f"unknown job run {job_run_id}")
    models = views.models(engine)
    runs = views.run_metrics(engine, groups=GROUPS)
    runs = runs[~runs["is_demo"]]
    rows, regressions = compare_rows(runs, job_run_id, settings.alert_alpha, dict(zip(models["model"], models["id"])),
                                     dict(zip(models["model"], models["role"])))
    pair = views.headline_pair(models)
    subject = pair[0] if pair else _first_prompt_model(models)
    monitoring = monitoring_summary(engine, job_run_id, subject, rows, dict(zip(models["model"], models["role"])))
    rows = _sorted_rows(rows + monitoring.pop("estimated_rows"), list(models["model"]))
    tonight = tuple(dict.fromkeys(r["batch"] for r in rows if r["corruption"] != "none" and r["kind"] == "measured"))
    job_alerts = _job_alerts(engine, job_run_id)
    doc: dict[str, Any] = {
        "schema": SCHEMA, "job": _records(job)[0], "generated_at": utcnow().isoformat(),
        "alpha": settings.alert_alpha, "test": TEST,
        "subject": _model_info(models, subject), "reference": _model_info(models, pair[1] if pair else None),
        "batches": [r for r in rows if r["model"] == subject and r["kind"] == "measured"],
        "versus": _versus(engine, pair, tonight),
        "job_alerts": job_alerts, "gate": gate_summary(job_alerts, subject, models, settings),
        "rows": rows, "regressions": regressions, "monitoring": monitoring,
        "per_class": _per_class(engine, subject, tonight), "costs": cost_table(runs),
    }
    doc["alerts"] = [f"[{a['kind']}] {a['message']}" for a in job_alerts] + [r["message"] for r in regressions]
    return doc, _figures(engine, doc, models)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready dicts (NaN -> None, numpy scalars -> Python)."""
    return json.loads(df.to_json(orient="records", date_format="iso"))


def _first_prompt_model(models: pd.DataFrame) -> str | None:
    cand = models[models["method"].isin(views.PROMPT_METHODS)]
    return None if cand.empty else str(cand.iloc[0]["model"])


def _model_info(models: pd.DataFrame, name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    row = models[models["model"] == name].iloc[0]
    return {"model": name, "method": row["method"], "method_label": charts.method_label(row["method"]),
            "state": row["state"], "role": row["role"], "trainable_params": int(row["trainable_params"]),
            "stored_params": int(row["stored_params"])}


def _previous(runs: pd.DataFrame, run: pd.Series, job_run_id: int) -> pd.DataFrame:
    """The metric rows of ``run``'s model's latest earlier run on a batch of the same kind."""
    same = runs[(runs["model"] == run["model"]) & (runs["dataset"] == run["dataset"])
                & (runs["corruption"] == run["corruption"]) & (runs["severity"] == run["severity"])
                & (runs["job_run_id"] != job_run_id) & (runs["finished_at"] <= run["finished_at"])]
    if same.empty:
        return same
    return same[same["run_id"] == same.iloc[-1]["run_id"]]


def _row(g: pd.DataFrame, clean: dict[str, float], roles: dict[str, str]) -> dict[str, Any]:
    """One model-and-batch row of the compact table (before the change columns)."""
    first, by = g.iloc[0], g.set_index("grp")
    overall = by.loc["overall"] if "overall" in by.index else None
    value = None if overall is None else float(overall["value"])
    shifted = first["corruption"] != "none"
    return {
        "model": first["model"], "method": first["method"], "state": first["state"],
        "role": roles.get(first["model"], first["state"]), "batch": first["batch_id"],
        "batch_kind": first["batch_kind"], "dataset": first["dataset"], "corruption": first["corruption"],
        "severity": int(first["severity"]), "condition": render.condition(first["corruption"], first["severity"]),
        "kind": "measured", "estimator": None, "n": None if overall is None else int(overall["n"]),
        "top1": value, "ci_low": _num(None if overall is None else overall["ci_low"]),
        "ci_high": _num(None if overall is None else overall["ci_high"]),
        **{grp: _num(by.loc[grp, "value"]) if grp in by.index else None for grp in GROUPS[1:]},
        "gap": clean[first["model"]] - value if shifted and value is not None and first["model"] in clean else None,
        "evaluated_at": first["finished_at"].isoformat() if pd.notna(first["finished_at"]) else None,
    }


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def compare_rows(runs: pd.DataFrame, job_run_id: int, alpha: float, model_ids: dict[str, int],
                 roles: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One row per (model, batch) the job evaluated, with the change since the model's previous
    comparable batch; plus the significant regressions (per group: overall, many, medium, few)."""
    overall = runs[runs["grp"] == "overall"]
    clean = overall[overall["corruption"] == "none"].groupby("model")["value"].last().to_dict()
    tonight = runs[runs["job_run_id"] == job_run_id]
    rows, regressions = [], []
    for _, g in tonight.groupby("run_id", sort=False):
        row = _row(g, clean, roles or {})
        prev = _previous(runs, g.iloc[0], job_run_id).set_index("grp")
        current = g.set_index("grp")
        for grp in (grp for grp in GROUPS if grp in current.index and grp in prev.index):
            cur, old = current.loc[grp], prev.loc[grp]
            if cur["n"] < 1 or old["n"] < 1:
                continue
            change = two_proportion_change(float(old["value"]), int(old["n"]), float(cur["value"]), int(cur["n"]), alpha)
            if grp == "overall":
                row.update(prev_batch=old["batch_id"], change=change.delta, change_ci=[change.ci_low, change.ci_high],
                           p_value=change.p_value, regression=is_significant_drop(change, alpha))
            if is_significant_drop(change, alpha):
                row.setdefault("regression_groups", []).append(grp)
                regressions.append({**row, "group": grp, "version_id": model_ids.get(row["model"]), "batch_id": row["batch"],
                                    "change": change.delta, "p_value": change.p_value,
                                    "message": f"{row['model']} on {row['batch']} ({grp}): top-1 {change.delta:+.4f} vs "
                                               f"{old['batch_id']} (p = {change.p_value:.2g})"})
        rows.append(row)
    order = {m: i for i, m in enumerate(roles or {})}
    rows.sort(key=lambda r: (order.get(r["model"], len(order)), r["batch"]))
    return rows, regressions


def _sorted_rows(rows: list[dict[str, Any]], model_order: list[str]) -> list[dict[str, Any]]:
    """Rows by model (deployed first), measured before estimated, then batch."""
    order = {m: i for i, m in enumerate(model_order)}
    return sorted(rows, key=lambda r: (order.get(r["model"], len(order)), r["kind"] != "measured", r["batch"]))


NO_TEST = "no test of a change: without labels the estimate has no sampling distribution to test against"


def monitoring_summary(engine: Engine, job_run_id: int, subject: str | None, rows: list[dict[str, Any]],
                       roles: dict[str, str]) -> dict[str, Any]:
    """The job's label-free monitoring: one estimated row per (model, batch without labels), each
    run's shift tests and class-prior changes, and the estimators' errors where labels exist."""
    runs = mviews.latest_runs(engine, MEASURED)
    mine = runs[runs["job_run_id"] == job_run_id].set_index("run_id", drop=False)
    est = mviews.estimates(engine, MEASURED)
    est = est[est["run_id"].isin(mine.index)]
    det = mviews.detections(engine, MEASURED)
    priors = mviews.class_priors(engine, MEASURED)
    priors = priors[priors["run_id"].isin(mine.index)]
    tests = {rid: _shift_record(g, priors[priors["run_id"] == rid]) for rid, g in det[det["run_id"].isin(mine.index)]
             .groupby("run_id")}  # fmt: skip
    unlabeled = mviews.estimated_top1(engine, MEASURED)
    estimated = [_estimated_row(est[est["run_id"] == rid], mine.loc[rid], roles, tests.get(rid))
                 for rid in unlabeled.loc[unlabeled["run_id"].isin(mine.index), "run_id"]]  # fmt: skip
    labels = {(r["model"], r["batch_id"]): r for _, r in mine.iterrows()}
    for row in rows:  # measured rows of batches whose labels came later, for a sample
        run = labels.get((row["model"], row["batch"]))
        if run is not None and not run["labeled"]:
            row["labels_note"] = f"{int(run['n_labeled'])} of {int(run['size'])} images labelled later"
        row["shift"] = tests.get(int(run["run_id"])) if run is not None else None
    labelled = est[est["measured"].notna() & (est["grp"] == "overall")]
    no_labels = {r["batch"] for r in estimated if r["model"] == subject}
    shown = priors[priors["model"] == subject].assign(unlabeled=lambda d: d["batch_id"].isin(no_labels))
    return {
        "estimator": mviews.HEADLINE_ESTIMATOR, "estimator_label": mviews.ESTIMATORS[mviews.HEADLINE_ESTIMATOR],
        "estimator_short": mviews.ESTIMATOR_SHORT, "estimated_rows": estimated,
        "unlabeled": [r for r in estimated if r["model"] == subject],
        "errors": _errors(labelled, list(roles)),
        "priors": _records(shown.sort_values(["unlabeled", "batch_id", "class_id"], ascending=[False, True, True])
                           .drop(columns=["started_at", "unlabeled"])),
    }


def _estimated_row(est: pd.DataFrame, run: pd.Series, roles: dict[str, str],
                   shift: dict[str, Any] | None) -> dict[str, Any]:
    """One compact-table row of a (model, batch without labels): the headline estimate as top-1 and
    its predicted-group estimates in the many/medium/few columns."""
    head = est[est["estimator"] == mviews.HEADLINE_ESTIMATOR].set_index("grp")
    overall = est[est["grp"] == "overall"].set_index("estimator")["value"]
    return {
        "run_id": int(run["run_id"]), "model": run["model"], "method": run["method"], "state": run["state"],
        "role": roles.get(run["model"], run["state"]), "batch": run["batch_id"], "batch_kind": run["batch_kind"],
        "dataset": run["dataset"], "corruption": run["corruption"], "severity": int(run["severity"]),
        "condition": render.condition(run["corruption"], run["severity"]), "kind": "estimated",
        "estimator": mviews.HEADLINE_ESTIMATOR, "estimator_label": mviews.ESTIMATORS[mviews.HEADLINE_ESTIMATOR],
        "estimator_short": mviews.ESTIMATOR_SHORT[mviews.HEADLINE_ESTIMATOR], "n": int(head.loc["overall", "n"]),
        "top1": float(head.loc["overall", "value"]), "ci_low": None, "ci_high": None,
        **{g: _num(head.loc[f"{mviews.PREDICTED}{g}", "value"]) if f"{mviews.PREDICTED}{g}" in head.index else None
           for g in GROUPS[1:]},
        "gap": None, "estimates": {k: float(v) for k, v in overall.items()}, "n_labeled": int(run["n_labeled"]),
        "no_test": NO_TEST, "shift": shift,
        "evaluated_at": run["finished_at"].isoformat() if pd.notna(run["finished_at"]) else None,
    }


def _shift_record(det: pd.DataFrame, priors: pd.DataFrame, grow: int = 3, shrink: int = 2) -> dict[str, Any]:
    """One run's shift tests (raw and BH-adjusted p, verdict), the verdict over them, and the
    classes whose estimated share grew most (``grow``) and shrank most (``shrink``) from the
    reference prior: growth first, so that a tail class taking over is never cut off."""
    tested = det[det["detector"] != "label_shift"]
    tests = _records(tested[["detector", "detector_label", "statistic", "p_value", "p_adjusted", "rejected", "verdict"]])
    verdicts = set(tested["verdict"])
    verdict = ("shift detected" if "shift detected" in verdicts else "not yet adjusted" if "not yet adjusted" in verdicts
               else "no shift detected" if verdicts else "no shift test")
    shift = det[det["detector"] == "label_shift"]
    changes = priors.dropna(subset=["change"]).sort_values("change", ascending=False, kind="stable")
    changes = pd.concat([changes[changes["change"] > 0].head(grow), changes[changes["change"] < 0].tail(shrink)[::-1]])
    return {"tests": tests, "verdict": verdict,
            "total_variation": None if shift.empty else float(shift.iloc[0]["statistic"]),
            "prior_changes": _records(changes[["class_id", "shot_group", "train_count", "reference_share",
                                               "batch_share", "change"]])}  # fmt: skip


def _errors(labelled: pd.DataFrame, model_order: list[str]) -> list[dict[str, Any]]:
    """Per model and estimator: mean absolute error against the measured top-1 on these runs."""
    if labelled.empty:
        return []
    agg = labelled.groupby(["model", "estimator", "estimator_label"], as_index=False).agg(
        mae=("abs_error", "mean"), n_batches=("batch_id", "nunique"))
    models, estimators = ({k: i for i, k in enumerate(keys)} for keys in (model_order, mviews.ESTIMATORS))
    agg = agg.assign(_m=agg["model"].map(models), _e=agg["estimator"].map(estimators))
    return _records(agg.sort_values(["_m", "_e"]).drop(columns=["_m", "_e"]))


def _versus(engine: Engine, pair: tuple[str, str] | None, tonight: tuple[str, ...]) -> dict[str, Any] | None:
    """Subject against reference per measure: on this job's shifted batches, and on every batch."""
    if pair is None:
        return None
    return {"model": pair[0], "reference": pair[1],
            "tonight": _records(views.paired_comparison(engine, MEASURED, *pair, shifted_batches=tonight)),
            "all": _records(views.paired_comparison(engine, MEASURED, *pair))}


def _job_alerts(engine: Engine, job_run_id: int) -> list[dict[str, Any]]:
    alerts = views.alerts(engine, views.ResultFilter())
    mine = alerts[alerts["job_run_id"] == job_run_id].iloc[::-1]  # oldest first
    return _records(mine[["at", "kind", "model", "batch_id", "message"]])


def gate_summary(job_alerts: list[dict[str, Any]], subject: str | None, models: pd.DataFrame,
                 settings: Settings) -> dict[str, Any]:
    """What the deployment gate did in this job: its promotions/rollbacks, or why nothing moved."""
    changes = [a["message"] for a in job_alerts if a["kind"] in ("promotion", "rollback")]
    deployed = models.loc[models["state"] == "deployed", "model"].tolist()
    rule = (f"a candidate (LPT or VPT) replaces the deployed model when, over the last {settings.gate_recent_batches} "
            f"shifted batches both have, its mean top-1 is higher by more than {settings.gate_min_gain:g} with "
            f"p < {settings.alert_alpha:g} (pooled z-test), losing at most {settings.gate_max_clean_drop:g} clean top-1")
    if changes:
        decision = "; ".join(changes)
    elif deployed:
        decision = f"no change: {deployed[0]} stays deployed (no candidate met the rule)"
    else:
        decision = "nothing is deployed, so the gate did nothing: deploy with `lpt models promote NAME --reason ...`"
    return {"deployed": deployed[0] if deployed else None, "changes": changes, "decision": decision, "rule": rule,
            "subject_is_deployed": bool(deployed) and deployed[0] == subject}


def _per_class(engine: Engine, subject: str | None, tonight: tuple[str, ...]) -> list[dict[str, Any]]:
    """The subject's per-class top-1 (clean, and on this job's shifted batches) with training counts."""
    if subject is None:
        return []
    per_class = views.per_class_accuracy(engine, MEASURED, shifted_batches=tonight or None)
    return _records(per_class[per_class["model"] == subject].sort_values(["class_id", "condition"]))


def cost_table(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Per method: parameter counts and mean evaluation time over its runs."""
    overall = runs[runs["grp"] == "overall"]
    if overall.empty:
        return []
    agg = overall.groupby("method").agg(trainable_params=("trainable_params", "max"),
                                        stored_params=("stored_params", "max"), runs=("run_id", "nunique"),
                                        mean_eval_seconds=("eval_seconds", "mean"),
                                        mean_images_per_second=("images_per_second", "mean"))
    return _records(agg.fillna(0.0).reset_index())


def _figures(engine: Engine, doc: dict[str, Any], models: pd.DataFrame) -> dict[str, alt.TopLevelMixin]:
    """The report's charts (only those with data), built by the dashboard's chart functions."""
    colours = charts.model_colours(models)
    figures: dict[str, alt.TopLevelMixin] = {}
    versus = doc["versus"]
    if versus and versus["all"]:
        a, b = versus["model"], versus["reference"]
        n = next(r["n_batches"] for r in versus["all"] if r["measure"] == "shifted")
        figures["versus"] = charts.headline_comparison(
            pd.DataFrame(versus["all"]), a, b, colours, title=f"{a} vs {b} on the {n} shifted batches both have")
    tonight = pd.DataFrame([r for r in doc["rows"] if r["top1"] is not None])
    if not tonight.empty:
        notes = tonight["labels_note"] if "labels_note" in tonight else pd.Series(None, index=tonight.index)
        est = (tonight["kind"] == "estimated").map({True: " · estimated", False: ""}).where(notes.isna(), " · late labels")
        cond = tonight["condition"].where(tonight["corruption"] != "unknown", "production")
        tonight = tonight.assign(batch=cond + " (" + tonight["batch"].str[-8:] + ")" + est,
                                 value=tonight["top1"])
        figures["batches"] = charts.batch_top1(tonight, colours, title="Top-1 of every model on this job's batches")
    shown = [versus["model"], versus["reference"]] if versus else [doc["subject"]["model"]] if doc["subject"] else []
    trend = views.nightly_trend(engine, MEASURED)
    trend = trend[trend["model"].isin(shown)]
    if trend["night"].nunique() > 1:
        figures["trend"] = charts.nightly_trend(trend, None, colours, title="Top-1 on shifted batches, night by night")
    figures.update(_monitoring_figures(engine, doc))
    if doc["per_class"]:
        figures["classes"] = charts.class_accuracy_vs_frequency(
            pd.DataFrame(doc["per_class"]), colours, title=f"Per-class top-1 of {doc['subject']['model']} "
                                                           "against its training images")
    return figures


def _monitoring_figures(engine: Engine, doc: dict[str, Any]) -> dict[str, alt.TopLevelMixin]:
    """The class prior of the subject's batches (those without labels first, at most four) against
    its training prior; its estimates against their measurements, and its estimators' error by night."""
    figures: dict[str, alt.TopLevelMixin] = {}
    priors = pd.DataFrame(doc["monitoring"]["priors"])
    if not priors.empty:
        keep = list(dict.fromkeys(priors["batch_id"]))[:4]
        rows = {r["batch"]: r for r in doc["rows"] if doc["subject"] and r["model"] == doc["subject"]["model"]}
        label = {b: f"{rows[b]['condition']} ({b[-8:]})" + (", no labels" if rows[b]["kind"] == "estimated" else
                 f", {rows[b]['labels_note']}" if rows[b].get("labels_note") else "") for b in keep if b in rows}
        shown = priors[priors["batch_id"].isin(label)]
        figures["priors"] = mcharts.class_prior_vs_training(
            shown.assign(batch=shown["batch_id"].map(label)),
            title=f"Class prior of {doc['subject']['model']}'s batches (estimated) against its training prior")
    subject = doc["subject"]["model"] if doc["subject"] else None
    checks = mviews.estimate_vs_measured(engine, MEASURED)
    checks = checks[checks["model"] == subject]
    if not checks.empty:
        figures["estimates"] = mcharts.estimate_vs_measured(
            checks, title=f"Estimated against measured top-1 of {subject} on the {checks['batch_id'].nunique()} "
                          "labelled batch(es) with estimates")
        errors = mviews.estimator_errors(engine, MEASURED)
        errors = errors[errors["model"] == subject]
        if errors["night"].nunique() > 1:
            figures["errors"] = mcharts.estimator_error_trend(errors, title=f"Error of {subject}'s estimators, "
                                                                           "night by night")
    return figures
