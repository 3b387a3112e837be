"""Pure chart builders: a pandas DataFrame (the shape ``app.db.views`` returns) -> an Altair chart.

No Streamlit and no database here, so every chart can be built and inspected in a unit test
(``chart.to_dict()`` is the Vega-Lite spec). Streamlit bundles Vega, so these render offline.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

_ACC = alt.Scale(domain=[0.0, 1.0])


def _require(df: pd.DataFrame, columns: set[str], chart: str) -> None:
    missing = columns - set(df.columns)
    if missing:
        raise ValueError(f"{chart}: data lacks columns {sorted(missing)}; got {sorted(df.columns)}")


def shift_heatmap(cells: pd.DataFrame) -> alt.Chart:
    """Corruption x severity heatmap of accuracy, one panel per model.

    ``cells`` has columns model, corruption, severity, value (accuracy in [0, 1]).
    """
    _require(cells, {"model", "corruption", "severity", "value"}, "shift_heatmap")
    base = alt.Chart(cells).encode(
        x=alt.X("severity:O", title="severity", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("corruption:N", title=None),
    )
    rect = base.mark_rect().encode(
        color=alt.Color("value:Q", title="top-1", scale=alt.Scale(scheme="viridis", domain=[0, 1])),
        tooltip=["model", "corruption", "severity", alt.Tooltip("value:Q", format=".3f")],
    )
    text = base.mark_text(fontSize=12).encode(
        text=alt.Text("value:Q", format=".2f"),
        color=alt.condition(alt.datum.value > 0.5, alt.value("black"), alt.value("white")),
    )
    return (rect + text).properties(width=alt.Step(72), height=alt.Step(30)).facet(  # wrapped: six models side by side overflow the page
        facet=alt.Facet("model:N", title=None, header=alt.Header(labelFontSize=13)), columns=3
    )


def severity_curves(curves: pd.DataFrame) -> alt.Chart:
    """Accuracy against severity (0 = clean), one line per model.

    ``curves`` has columns model, severity, value.
    """
    _require(curves, {"model", "severity", "value"}, "severity_curves")
    return (
        alt.Chart(curves)
        .mark_line(point=True)
        .encode(
            x=alt.X("severity:O", title="severity (0 = clean)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("value:Q", title="top-1", scale=_ACC),
            color=alt.Color("model:N"),
            tooltip=["model", "severity", alt.Tooltip("value:Q", format=".3f")],
        )
    )


def difference_with_ci(diff: pd.DataFrame) -> alt.Chart:
    """Per (corruption, severity) difference of two models' accuracy with its 95% interval.

    ``diff`` has columns corruption, severity, diff, ci_low, ci_high.
    """
    _require(diff, {"corruption", "severity", "diff", "ci_low", "ci_high"}, "difference_with_ci")
    base = alt.Chart(diff).encode(
        y=alt.Y("corruption:N", title=None),
        yOffset=alt.YOffset("severity:O"),
        color=alt.Color("severity:O", scale=alt.Scale(scheme="oranges")),
    )
    bars = base.mark_rule().encode(x=alt.X("ci_low:Q", title="accuracy difference"), x2="ci_high:Q")
    points = base.mark_point(filled=True).encode(
        x="diff:Q",
        tooltip=[
            "corruption",
            "severity",
            alt.Tooltip("diff:Q", format="+.3f"),
            alt.Tooltip("ci_low:Q", format="+.3f"),
            alt.Tooltip("ci_high:Q", format="+.3f"),
        ],
    )
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
    return bars + points + zero


def class_accuracy_vs_frequency(per_class: pd.DataFrame) -> alt.Chart:
    """Per-class accuracy against training frequency (log axis), clean vs shifted, one panel per model.

    ``per_class`` has columns model, class_id, train_count, condition ("clean"/"shifted"), value.
    """
    _require(per_class, {"model", "class_id", "train_count", "condition", "value"}, "class_accuracy")
    return (
        alt.Chart(per_class)
        .mark_circle(opacity=0.8, size=70)
        .encode(
            x=alt.X("train_count:Q", title="training images of the class", scale=alt.Scale(type="log")),
            y=alt.Y("value:Q", title="per-class top-1", scale=_ACC),
            color=alt.Color("condition:N", title=None),
            tooltip=["model", "class_id", "train_count", "condition", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(width=300, height=240)
        .facet(facet=alt.Facet("model:N", title=None), columns=3)
    )


def shot_groups_by_shift(groups: pd.DataFrame) -> alt.Chart:
    """Many/medium/few accuracy under each shift condition, grouped bars, one row per model.

    ``groups`` has columns model, condition, grp (many/medium/few), value.
    """
    _require(groups, {"model", "condition", "grp", "value"}, "shot_groups_by_shift")
    order = ["many", "medium", "few"]
    return (
        alt.Chart(groups)
        .mark_bar()
        .encode(
            x=alt.X("condition:N", title=None, sort=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("grp:N", sort=order),
            y=alt.Y("value:Q", title="top-1", scale=_ACC),
            color=alt.Color("grp:N", sort=order, title="shot group"),
            tooltip=["model", "condition", "grp", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=200)
        .facet(row=alt.Row("model:N", title=None))
    )


def nightly_trend(trend: pd.DataFrame, events: pd.DataFrame | None = None) -> alt.Chart:
    """Accuracy per night and model (points per batch, line through the nightly mean).

    ``trend`` has columns model, batch_id, night (datetime), value; ``events`` (optional) has
    columns at (datetime), label and is drawn as vertical rules (promotions, rollbacks).
    """
    _require(trend, {"model", "batch_id", "night", "value"}, "nightly_trend")
    nightly = trend.groupby(["model", "night"], as_index=False)["value"].mean()
    x = alt.X("night:T", title="night (UTC)", scale=alt.Scale(padding=24),
              axis=alt.Axis(format="%Y-%m-%d", tickCount="day", labelAngle=0))
    y = alt.Y("value:Q", title="top-1", scale=alt.Scale(zero=False, padding=12))
    line = alt.Chart(nightly).mark_line(point=True).encode(x=x, y=y, color="model:N")
    points = (
        alt.Chart(trend)
        .mark_circle(opacity=0.45, size=45)
        .encode(
            x=x,
            y=y,
            color="model:N",
            tooltip=["model", "batch_id", alt.Tooltip("night:T"), alt.Tooltip("value:Q", format=".3f")],
        )
    )
    layers = [points, line]
    if events is not None and not events.empty:
        _require(events, {"at", "label"}, "nightly_trend events")
        layers.append(
            alt.Chart(events)
            .mark_rule(strokeDash=[3, 3], color="gray")
            .encode(x="at:T", tooltip=["label", alt.Tooltip("at:T")])
        )
    return alt.layer(*layers)
