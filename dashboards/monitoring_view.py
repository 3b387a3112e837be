"""The label-free monitoring page's pieces: the model and batch pickers and the tables, as display
frames (the page stays a thin script).

Estimates are never shown as measurements: columns say "(est.)" and name the estimator, and the
many/medium/few of an estimate are predicted-group estimates (the group of the PREDICTED class).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import charts
from app.db.views_monitoring import (
    DETECTORS,
    ESTIMATOR_SHORT,
    ESTIMATORS,
    HEADLINE_ESTIMATOR,
    batch_labels,
)

GROUP_COLUMNS = {"predicted:many": "pred. many est.", "predicted:medium": "pred. medium est.",
                 "predicted:few": "pred. few est."}
#: short estimator names for narrow table columns
COLUMN_NAMES = {"atc_max_conf": "ATC est.", "atc_neg_entropy": "ATC-ent. est.", "doc": "DoC est.",
                "avg_conf": "avg. conf. est."}
DETECTOR_SHORT = {"bbsd": "BBSD", "prompt_selection": "prompt selection", "key_cosine": "key cosine"}


def pick_model(models: pd.DataFrame, estimates: pd.DataFrame) -> str:
    """The model picker (key ``mo_model``) over the models with estimates, deployed first."""
    names = [m for m in models["model"] if m in set(estimates["model"])]
    roles = models.set_index("model")["role"]
    label = {m: f"{m} · {charts.method_label(models.set_index('model').loc[m, 'method'])} · {roles[m]}" for m in names}
    return st.selectbox("Model", names, index=0, key="mo_model", format_func=lambda m: label.get(m, str(m)))


def unlabeled_table(estimates: pd.DataFrame, unlabeled_runs: set[int]) -> pd.DataFrame:
    """One row per batch without labels of one model: its label (condition, night, id tail),
    images, every estimator's top-1 and the predicted-group estimates of the headline estimator,
    newest first."""
    est = estimates[estimates["run_id"].isin(unlabeled_runs)]
    if est.empty:
        return pd.DataFrame()
    overall = est[est["grp"] == "overall"].pivot_table(index="run_id", columns="estimator", values="value")
    overall = overall.reindex(columns=list(ESTIMATORS)).rename(columns=COLUMN_NAMES)
    head = est[est["estimator"] == HEADLINE_ESTIMATOR]
    groups = head[head["grp"] != "overall"].pivot_table(index="run_id", columns="grp", values="value")
    groups = groups.reindex(columns=list(GROUP_COLUMNS)).rename(columns=GROUP_COLUMNS)
    info = est.drop_duplicates("run_id").set_index("run_id")
    info = pd.DataFrame({"batch": batch_labels(info), "images": info["size"], "_at": info["started_at"]})
    out = info.join(overall).join(groups).sort_values("_at", ascending=False).drop(columns="_at")
    return out.reset_index(drop=True)


def percent_config(frame: pd.DataFrame) -> dict:
    """Column config showing the estimate columns as percentages, each with its estimator's full name."""
    names = {v: ESTIMATORS[k] for k, v in COLUMN_NAMES.items()}
    return {c: st.column_config.NumberColumn(format="%.1f%%", help=f"estimated top-1: {names.get(c, c)}")
            for c in frame.columns if c.endswith(" est.")}


def as_percent(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its estimate columns scaled to percent."""
    return frame.assign(**{c: 100 * frame[c].astype(float) for c in frame.columns if c.endswith(" est.")})


def pick_batch(runs: pd.DataFrame, unlabeled_runs: set[int]) -> str | None:
    """The batch picker (key ``mo_batch``) over one model's batches, newest first; default the
    newest batch without labels. None when the model has no batch."""
    runs = runs.sort_values("started_at", ascending=False)
    if runs.empty:
        return None
    names = dict(zip(runs["batch_id"], batch_labels(runs)))
    no_labels = set(runs.loc[runs["run_id"].isin(unlabeled_runs), "batch_id"])
    ids = list(runs["batch_id"])
    default = next((i for i, b in enumerate(ids) if b in no_labels), 0)
    return st.selectbox("Batch", ids, index=default, key="mo_batch",
                        format_func=lambda b: f"{names[b]} ({b})" + (" · no labels" if b in no_labels else ""))


def p_text(values: pd.Series) -> list[str]:
    """p-values as text with two significant digits ("2.1e-39", "0.27"; "not yet" before the BH step)."""
    return ["not yet" if pd.isna(v) else f"{v:.2g}" for v in values]


def tests_table(detections: pd.DataFrame) -> pd.DataFrame:
    """The shift tests of some runs: test, statistic, raw and BH-adjusted p-value, verdict."""
    tested = detections[detections["detector"] != "label_shift"]
    return pd.DataFrame({"test": tested["detector_label"], "statistic": [f"{v:.3g}" for v in tested["statistic"]],
                         "p-value": p_text(tested["p_value"]), "BH-adjusted p": p_text(tested["p_adjusted"]),
                         "verdict": tested["verdict"]}).reset_index(drop=True)


def _labels(run: pd.Series) -> str:
    if run["labeled"]:
        return "with the images"
    return f"{int(run['n_labeled'])} of {int(run['size'])} later" if run["n_labeled"] else "none"


def verdicts(detections: pd.DataFrame) -> pd.DataFrame:
    """Per batch of one model (newest first): its labels, which tests detected a shift, and the
    smallest BH-adjusted p-value."""
    tested = detections[detections["detector"] != "label_shift"]
    if tested.empty:
        return pd.DataFrame()
    order = {d: i for i, d in enumerate(DETECTORS)}
    names = batch_labels(tested)  # over every batch: two on one night get their ids' tails
    rows = []
    for _, g in tested.sort_values("started_at", ascending=False).groupby("run_id", sort=False):
        g = g.sort_values("detector", key=lambda c: c.map(order))
        found = [DETECTOR_SHORT.get(d, d) for d in g.loc[g["verdict"] == "shift detected", "detector"]]
        pending = (g["verdict"] == "not yet adjusted").any()
        verdict = ("shift detected: " + ", ".join(found)) if found else "not yet adjusted" if pending else "no shift detected"
        rows.append({"batch": names[g.index[0]], "labels": _labels(g.iloc[0]), "verdict": verdict,
                     "smallest BH-adjusted p": p_text(pd.Series([g["p_adjusted"].min()]))[0],
                     "batch id": g["batch_id"].iloc[0]})
    return pd.DataFrame(rows)


def prior_table(priors: pd.DataFrame) -> pd.DataFrame:
    """A batch's class prior per class (percent): training, reference and estimated batch share."""
    return pd.DataFrame({
        "class": priors["class_id"], "shot group": priors["shot_group"], "training images": priors["train_count"],
        "training prior": 100 * priors["training_share"], "reference prior": 100 * priors["reference_share"],
        "batch prior (estimated)": 100 * priors["batch_share"], "change from reference (pp)": 100 * priors["change"],
    })


def error_table(checks: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per model (in ``order``, deployed first) and estimator: mean absolute error (pp) over the
    labelled batches, and how many."""
    agg = checks.groupby(["model", "estimator"], as_index=False).agg(
        mae=("abs_error", "mean"), batches=("batch_id", "nunique"))
    agg["estimator"] = agg["estimator"].map(ESTIMATOR_SHORT).fillna(agg["estimator"])
    wide = agg.pivot_table(index=["model"], columns="estimator", values="mae").mul(100)
    wide = wide.reindex(columns=[ESTIMATOR_SHORT[e] for e in ESTIMATORS if ESTIMATOR_SHORT[e] in wide.columns])
    wide.columns = [f"{c} error (pp)" for c in wide.columns]
    wide = wide.join(agg.groupby("model")["batches"].max().rename("labelled batches"))
    return wide.reindex([m for m in order if m in wide.index] + [m for m in wide.index if m not in order]).reset_index()
