"""Chart builders of label-free monitoring (MONITORING_SPEC.md), shared by the nightly report and
the dashboard like :mod:`app.charts` (same palette, titles, labelled axes on every panel).

- :func:`class_prior_vs_training`: a batch's class prior estimated by BBSE (Lipton et al., ICML
  2018) from a model's predictions, hollow (an estimate), against the training prior;
- :func:`estimate_vs_measured`: label-free estimates (ATC, Garg et al., ICLR 2022; DoC and average
  confidence, Guillory et al., ICCV 2021) against the measured top-1 once labels exist;
- :func:`estimator_error_trend`: each estimator's mean absolute error per night.

Estimators take the Okabe-Ito colours the methods leave free, so a chart coloured by estimator is
never read as one coloured by model.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from app.charts import _PCT, OKABE_ITO, _require

ESTIMATOR_COLOURS = {"ATC (max confidence)": OKABE_ITO["reddish_purple"], "ATC (negative entropy)": OKABE_ITO["sky_blue"],
                     "DoC": OKABE_ITO["black"], "average confidence": "#8C8C8C"}
# The sizes are the plot's: a legend or title below/above adds to them (Streamlit's default "fit"
# would squeeze the plot to make room for a wide legend).
_PAD = alt.AutoSizeParams(type="pad", contains="padding")
PRIOR_SERIES = {"training prior": "#8C8C8C", "batch prior (estimated, BBSE)": OKABE_ITO["vermillion"]}


def _prior_long(priors: pd.DataFrame) -> pd.DataFrame:
    """One row per (batch, class, series) with a class label naming its shot group and training images."""
    cls = ("class " + priors["class_id"].astype(str) + " · " + priors["shot_group"] + " ("
           + priors["train_count"].astype(str) + ")")
    base = priors.assign(class_label=cls)
    train, batch = list(PRIOR_SERIES)
    return pd.concat([base.assign(series=train, share=base["training_share"]),
                      base.assign(series=batch, share=base["batch_share"])], ignore_index=True)


def class_prior_vs_training(priors: pd.DataFrame, title: str = "Class prior of the batch (estimated) against "
                            "the training prior") -> alt.TopLevelMixin:
    """Per class: the training prior (grey) and the batch's class prior estimated by BBSE from the
    model's predictions (hollow: an estimate), a black tick at the reference (target) prior where
    known; one panel per batch (columns batch, class_id, shot_group, train_count, training_share,
    batch_share, optional reference_share)."""
    _require(priors, {"batch", "class_id", "shot_group", "train_count", "training_share", "batch_share"},
             "class_prior_vs_training")
    long = _prior_long(priors.assign(reference_share=priors.get("reference_share", float("nan"))))
    order = list(dict.fromkeys(long.sort_values("class_id")["class_label"]))
    x = alt.X("class_label:N", title="class · shot group (training images)", sort=order,
              axis=alt.Axis(labelAngle=0, labelExpr="split(datum.label, ' · ')", labelLimit=160))
    bars = alt.Chart().mark_bar(strokeWidth=2).encode(
        x=x, xOffset=alt.XOffset("series:N", sort=list(PRIOR_SERIES)),
        y=alt.Y("share:Q", title="share of the images", axis=_PCT),
        stroke=alt.Stroke("series:N", title=None, legend=alt.Legend(orient="bottom"),
                          scale=alt.Scale(domain=list(PRIOR_SERIES), range=list(PRIOR_SERIES.values()))),
        fill=alt.Fill("series:N", title=None, legend=alt.Legend(orient="bottom"),
                      scale=alt.Scale(domain=list(PRIOR_SERIES), range=[PRIOR_SERIES["training prior"], "white"])),
        tooltip=["batch", "class_id", "shot_group", "train_count", "series", alt.Tooltip("share:Q", format=".1%")])
    ticks = alt.Chart().transform_filter("isValid(datum.reference_share)").mark_tick(
        color="black", thickness=2, size=34).encode(
        x=x, y="reference_share:Q", tooltip=[alt.Tooltip("reference_share:Q", title="reference prior", format=".1%")])
    subtitle = "hollow bars: estimated from the model's predictions (BBSE); black tick: the reference (target) prior"
    layered = alt.layer(bars, ticks, data=long).properties(width=alt.Step(30), height=200)
    if priors["batch"].nunique() > 1:
        layered = layered.facet(facet=alt.Facet("batch:N", title=None, sort=list(dict.fromkeys(priors["batch"])),
                                                header=alt.Header(labelFontSize=13, labelFontWeight="bold")),
                                columns=2).resolve_axis(x="independent", y="independent")
    return layered.properties(title=alt.TitleParams(title, subtitle=subtitle), autosize=_PAD)


def _estimator_colour(legend: bool = True) -> alt.Color:
    return alt.Color("estimator_label:N", title="estimator", sort=list(ESTIMATOR_COLOURS),
                     legend=alt.Legend(orient="bottom") if legend else None,
                     scale=alt.Scale(domain=list(ESTIMATOR_COLOURS), range=list(ESTIMATOR_COLOURS.values())))


def estimate_vs_measured(rows: pd.DataFrame, title: str = "Estimated against measured top-1 (labelled batches)"
                         ) -> alt.TopLevelMixin:
    """Each estimate (hollow: label-free) against the measured top-1 of the same images, colour and
    shape per estimator, with the diagonal where the two agree; one panel per model (columns
    model, estimator_label, batch, value, measured)."""
    _require(rows, {"model", "estimator_label", "batch", "value", "measured"}, "estimate_vs_measured")
    lo = max(0.0, min(rows["value"].min(), rows["measured"].min()) - 0.05)
    hi = min(1.0, max(rows["value"].max(), rows["measured"].max()) + 0.05)
    scale, axis = alt.Scale(domain=[lo, hi], zero=False, nice=False), alt.Axis(format="%", tickCount=6)
    points = alt.Chart().mark_point(size=80, filled=False, strokeWidth=2).encode(
        x=alt.X("measured:Q", title="measured top-1 (labelled images)", scale=scale, axis=axis),
        y=alt.Y("value:Q", title="estimated top-1 (label-free)", scale=scale, axis=axis),
        color=_estimator_colour(),
        shape=alt.Shape("estimator_label:N", title="estimator", sort=list(ESTIMATOR_COLOURS),
                        legend=alt.Legend(orient="bottom"), scale=alt.Scale(domain=list(ESTIMATOR_COLOURS))),
        tooltip=["model", "batch", "estimator_label", alt.Tooltip("value:Q", title="estimated", format=".1%"),
                 alt.Tooltip("measured:Q", format=".1%")])
    diagonal = alt.Chart().mark_rule(color="#8C8C8C", strokeDash=[4, 4]).encode(
        x=alt.X(datum=lo, type="quantitative", scale=scale), y=alt.Y(datum=lo, type="quantitative", scale=scale),
        x2=alt.X2(datum=hi), y2=alt.Y2(datum=hi))
    chart = alt.layer(diagonal, points, data=rows).properties(width=260, height=260)
    if rows["model"].nunique() > 1:
        chart = chart.facet(facet=alt.Facet("model:N", title=None, header=alt.Header(labelFontSize=13,
                            labelFontWeight="bold")), columns=3).resolve_axis(x="independent", y="independent")
    return chart.properties(title=alt.TitleParams(
        title, subtitle="dashed: estimate = measurement; above it the estimator is optimistic"), autosize=_PAD)


def estimator_error_trend(errors: pd.DataFrame, title: str = "Error of each estimator, night by night") -> alt.TopLevelMixin:
    """Mean absolute error of each estimator (against the measured top-1 of that night's labelled
    batches) per night, one panel per model (columns model, estimator_label, night, mae)."""
    _require(errors, {"model", "estimator_label", "night", "mae"}, "estimator_error_trend")
    pp = errors.assign(mae_pp=100 * errors["mae"].astype(float))
    return (
        alt.Chart(pp).mark_line(point=True, strokeWidth=2).encode(
            x=alt.X("night:T", title="night (UTC)", scale=alt.Scale(padding=16),
                    axis=alt.Axis(format="%Y-%m-%d", tickCount="day", labelAngle=0)),
            y=alt.Y("mae_pp:Q", title="mean absolute error (pp)", scale=alt.Scale(zero=True)),
            color=_estimator_colour(),
            tooltip=["model", "estimator_label", alt.Tooltip("night:T"), alt.Tooltip("mae_pp:Q", format=".1f")])
        .properties(width=240, height=180)
        .facet(facet=alt.Facet("model:N", title=None, header=alt.Header(labelFontSize=13, labelFontWeight="bold")),
               columns=3)
        .resolve_axis(x="independent", y="independent")
        .properties(title=title)
    )
