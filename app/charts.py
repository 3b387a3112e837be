"""Chart builders shared by the nightly report and the dashboard.

A pandas DataFrame (the shape :mod:`app.db.views` returns) -> an Altair (Vega-Lite) chart; the
dashboard hands it to ``st.altair_chart``, the report renders it offline to inline SVG with
:func:`to_svg` (``vl-convert-python``, which bundles Vega). No Streamlit and no database here.

One palette everywhere: the Okabe-Ito colour-blind-safe colours, one per method (LPT vermillion,
full fine-tuning blue, VPT bluish green, linear orange); a further model of a method that already
has its colour (e.g. an honesty baseline) takes the next spare Okabe-Ito colour, so colours come
from :func:`model_colours` over the store's models and stay the same on every page. Every chart has
a title and labelled axes; faceted charts label the axes of every panel.

Measured vs estimated: a frame may carry a ``kind`` column ("measured"/"estimated"); estimated
points are drawn hollow and estimated lines dashed, with a legend saying so and a subtitle naming
the estimator (``estimator_label``). The label-free monitoring charts are in
:mod:`app.charts_monitoring`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import altair as alt
import pandas as pd

OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7"}
METHOD_COLOURS = {"lpt": OKABE_ITO["vermillion"], "full_ft": OKABE_ITO["blue"],
                  "vpt": OKABE_ITO["bluish_green"], "linear": OKABE_ITO["orange"]}
# Yellow is left out: it is unreadable on white.
SPARE_COLOURS = (OKABE_ITO["reddish_purple"], OKABE_ITO["sky_blue"], OKABE_ITO["black"], "#8C8C8C")
METHOD_LABELS = {"lpt": "LPT", "vpt": "VPT", "full_ft": "full fine-tuning", "linear": "linear probe"}
GROUP_ORDER = ["many", "medium", "few"]
CONDITION_SHAPES = {"clean": "circle", "shifted": "triangle-up"}
# Severity 0 (clean) black, 1..5 ColorBrewer oranges 4..9: light enough to order, dark enough to see.
SEVERITY_COLOURS = {0: "#000000", 1: "#FDAE6B", 2: "#FD8D3C", 3: "#F16913", 4: "#D94801", 5: "#8C2D04"}
MEASURE_SHORT = {"clean": "clean", "shifted": "shifted", "many": "many", "medium": "medium", "few": "few"}
#: production batches of unknown shift (corruption "unknown") are named so on the charts
UNKNOWN = {"unknown": "production (unknown)"}
_ACC = alt.Scale(domain=[0.0, 1.0])
_PCT = alt.Axis(format="%")


def _require(df: pd.DataFrame, columns: set[str], chart: str) -> None:
    missing = columns - set(df.columns)
    if missing:
        raise ValueError(f"{chart}: data lacks columns {sorted(missing)}; got {sorted(df.columns)}")


def method_label(method: str) -> str:
    """A method's display name ("full fine-tuning" for full_ft); unknown methods as they are."""
    return METHOD_LABELS.get(method, method)


def model_colours(models: pd.DataFrame) -> dict[str, str]:
    """model -> colour: the first model of each method (in row order) gets the method's colour.

    ``models`` has columns model and method, ordered by importance (deployed first); the others
    get the spare Okabe-Ito colours in turn.
    """
    _require(models, {"model", "method"}, "model_colours")
    out: dict[str, str] = {}
    taken: set[str] = set()
    spare = 0
    for model, method in zip(models["model"], models["method"]):
        if model in out:
            continue
        if method in METHOD_COLOURS and method not in taken:
            out[model] = METHOD_COLOURS[method]
            taken.add(method)
        else:
            out[model] = SPARE_COLOURS[spare % len(SPARE_COLOURS)]
            spare += 1
    return out


def _colours_for(df: pd.DataFrame, colours: Mapping[str, str] | None) -> dict[str, str]:
    """``colours`` restricted to the models in ``df``, completed for models it does not know."""
    if colours is None:
        frame = df[["model", "method"]] if "method" in df else df[["model"]].assign(method="")
        return model_colours(frame.drop_duplicates("model"))
    present = set(df["model"])
    known = {m: c for m, c in colours.items() if m in present}  # the palette's order: deployed first
    unknown = [m for m in dict.fromkeys(df["model"]) if m not in colours]
    for i, m in enumerate(unknown):
        known[m] = SPARE_COLOURS[(len(colours) + i) % len(SPARE_COLOURS)]
    return known


def colour_encoding(df: pd.DataFrame, colours: Mapping[str, str] | None, title: str = "model",
                    legend: str = "right") -> alt.Color:
    """The model colour channel with the fixed palette (legend lists only the models present)."""
    mapping = _colours_for(df, colours)
    return alt.Color("model:N", title=title, sort=list(mapping), legend=alt.Legend(orient=cast(Any, legend), symbolOpacity=1),
                     scale=alt.Scale(domain=list(mapping), range=list(mapping.values())))


def _estimated(df: pd.DataFrame) -> bool:
    return "kind" in df.columns and bool((df["kind"] == "estimated").any())


def _point_fill(df: pd.DataFrame, colour: alt.Color) -> alt.Color | dict:
    """Filled points for measurements, hollow (white) ones for estimates."""
    if not _estimated(df):
        return colour
    return alt.condition("datum.kind === 'estimated'", alt.value("white"), colour)


def _line_dash(df: pd.DataFrame) -> dict:
    """Solid lines for measurements, dashed ones (with a legend) for estimates."""
    if not _estimated(df):
        return {}
    legend = alt.Legend(symbolType="stroke", symbolStrokeWidth=2.5, symbolSize=300,
                        labelExpr="datum.label === 'estimated' ? 'estimated (no labels)' : 'measured (labels)'")
    return {"strokeDash": alt.StrokeDash("kind:N", title="top-1", sort=["measured", "estimated"], legend=legend,
                                         scale=alt.Scale(domain=["measured", "estimated"], range=[[1, 0], [5, 3]]))}


def estimate_note(df: pd.DataFrame) -> str | None:
    """The subtitle of a chart holding estimates: what hollow / dashed means and which estimator."""
    if not _estimated(df):
        return None
    names = df.loc[df["kind"] == "estimated"].get("estimator_label", pd.Series(dtype=str)).dropna().unique()
    by = f" by {', '.join(names)}" if len(names) else ""
    return f"hollow points, dashed lines: top-1 estimated{by} on batches without labels (not measured)"


def _titled(title: str, df: pd.DataFrame) -> alt.TitleParams | str:
    note = estimate_note(df)
    return alt.TitleParams(title, subtitle=note) if note else title


def comparison_long(comparison: pd.DataFrame, model_a: str, model_b: str) -> pd.DataFrame:
    """The accuracy rows of :func:`app.db.views.paired_comparison` (not the gap), one per model."""
    _require(comparison, {"measure", "label", "value_a", "ci_low_a", "ci_high_a", "value_b", "ci_low_b",
                          "ci_high_b"}, "headline_comparison")
    acc = comparison[comparison["measure"] != "gap"]
    parts = []
    for model, side in ((model_a, "a"), (model_b, "b")):
        part = acc[["measure"]].assign(label=acc["measure"].map(MEASURE_SHORT).fillna(acc["label"]), model=model, value=acc[f"value_{side}"],
                                                 ci_low=acc[f"ci_low_{side}"], ci_high=acc[f"ci_high_{side}"])
        parts.append(part.assign(kind=acc["kind"]) if "kind" in acc else part)
    return pd.concat(parts, ignore_index=True).dropna(subset=["value"])


def headline_comparison(comparison: pd.DataFrame, model_a: str, model_b: str,
                        colours: Mapping[str, str] | None = None, title: str | None = None) -> alt.Chart:
    """Two models' top-1 per measure (clean, shifted, shot groups under shift), 95% intervals.

    ``comparison`` is the frame of :func:`app.db.views.paired_comparison`.
    """
    long = comparison_long(comparison, model_a, model_b)
    order = list(dict.fromkeys(long["label"]))
    colour = colour_encoding(long, colours, legend="bottom")
    base = alt.Chart(long).encode(
        x=alt.X("label:N", title="measure (many/medium/few: shot groups, shifted)", sort=order,
                axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("model:N", sort=[model_a, model_b]),
    )
    bars = base.mark_bar().encode(
        y=alt.Y("value:Q", title="top-1 accuracy", scale=_ACC, axis=_PCT), color=colour,
        tooltip=["model", "label", alt.Tooltip("value:Q", format=".1%"),
                 alt.Tooltip("ci_low:Q", format=".1%"), alt.Tooltip("ci_high:Q", format=".1%")],
    )
    errors = base.mark_rule(color="black", strokeWidth=1.5).encode(y="ci_low:Q", y2="ci_high:Q")
    title = title or f"{model_a} vs {model_b}: top-1 with 95% intervals"
    return (bars + errors).properties(width=340, height=240, title=title)


def batch_top1(rows: pd.DataFrame, colours: Mapping[str, str] | None = None,
               title: str = "Top-1 on each batch (95% intervals)") -> alt.Chart:
    """Top-1 per batch and model as points with interval bars, one row per batch.

    ``rows`` has columns batch (a display label), model, value, ci_low, ci_high (optional kind).
    """
    _require(rows, {"batch", "model", "value", "ci_low", "ci_high"}, "batch_top1")
    colour = colour_encoding(rows, colours)
    models = list(_colours_for(rows, colours))
    base = alt.Chart(rows).encode(
        y=alt.Y("batch:N", title="shift batch", sort=None, axis=alt.Axis(labelLimit=260, titlePadding=30)),  # room: the page font is wider than Vega measures
        yOffset=alt.YOffset("model:N", sort=models), color=colour,
    )
    interval = base.mark_rule(strokeWidth=2).encode(
        x=alt.X("ci_low:Q", title="top-1 accuracy", scale=_ACC, axis=_PCT), x2="ci_high:Q")
    points = base.mark_point(size=70, filled=False, strokeWidth=2, opacity=1).encode(
        x="value:Q", fill=_point_fill(rows, colour),
        tooltip=["model", "batch", alt.Tooltip("value:Q", format=".1%"),
                 alt.Tooltip("ci_low:Q", format=".1%"), alt.Tooltip("ci_high:Q", format=".1%")],
    )
    return (interval + points).properties(width=520, height=alt.Step(16), title=_titled(title, rows))


def shift_heatmap(cells: pd.DataFrame, colours: Mapping[str, str] | None = None,
                  title: str = "Top-1 per corruption and severity") -> alt.Chart:
    """Corruption x severity heatmap of accuracy, one panel per model (axes on every panel).

    ``cells`` has columns model, corruption, severity, value (accuracy in [0, 1]); panels follow
    the order of ``colours`` (deployed first).
    """
    _require(cells, {"model", "corruption", "severity", "value"}, "shift_heatmap")
    cells = cells.assign(level=cells["severity"].astype(int).astype(str).replace("0", "mixed"),
                         corruption=cells["corruption"].replace(UNKNOWN))
    levels = ["mixed", *(str(s) for s in range(1, 6))]
    base = alt.Chart(cells).encode(
        x=alt.X("level:O", title="severity (mixed: a mixture batch)", sort=levels, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("corruption:N", title="corruption"),
    )
    rect = base.mark_rect().encode(
        color=alt.Color("value:Q", title="top-1", scale=alt.Scale(scheme="viridis", domain=[0, 1]),
                        legend=alt.Legend(format="%")),
        tooltip=["model", "corruption", "severity", alt.Tooltip("value:Q", format=".1%")],
    )
    text = base.mark_text(fontSize=12).encode(
        text=alt.Text("value:Q", format=".0%"),
        color=alt.condition(alt.datum.value > 0.5, alt.value("black"), alt.value("white")),
    )
    return (
        (rect + text).properties(width=alt.Step(52), height=alt.Step(28))
        .facet(facet=alt.Facet("model:N", title=None, sort=list(_colours_for(cells, colours)),
                               header=alt.Header(labelFontSize=13, labelFontWeight="bold")),
               columns=2)  # wrapped: more panels side by side overflow the page
        .resolve_axis(x="independent", y="independent")
        .properties(title=title)
    )


def severity_curves(curves: pd.DataFrame, colours: Mapping[str, str] | None = None,
                    title: str = "Mean top-1 by severity (0 = clean)") -> alt.Chart:
    """Accuracy against severity (0 = clean), one line per model; ``curves``: model, severity, value."""
    _require(curves, {"model", "severity", "value"}, "severity_curves")
    colour = colour_encoding(curves, colours)
    return (
        alt.Chart(curves)
        .mark_line(point=True, strokeWidth=2.5)
        .encode(
            x=alt.X("severity:O", title="severity (0 = clean)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("value:Q", title="mean top-1 accuracy", scale=_ACC, axis=_PCT),
            color=colour, **_line_dash(curves),
            tooltip=["model", "severity", alt.Tooltip("value:Q", format=".1%")],
        )
        .properties(width=520, height=280, title=title)
    )


def difference_with_ci(diff: pd.DataFrame, title: str = "Difference of top-1 with 95% intervals") -> alt.Chart:
    """Per (corruption, severity) difference of two models' accuracy (points) with its interval.

    ``diff`` has columns corruption, severity, diff, ci_low, ci_high (fractions; drawn in points).
    """
    _require(diff, {"corruption", "severity", "diff", "ci_low", "ci_high"}, "difference_with_ci")
    pp = diff.assign(pp=100 * diff["diff"], pp_low=100 * diff["ci_low"], pp_high=100 * diff["ci_high"],
                     corruption=diff["corruption"].replace({"none": "clean", **UNKNOWN}))
    base = alt.Chart(pp).encode(
        y=alt.Y("corruption:N", title="corruption"),
        yOffset=alt.YOffset("severity:O"),
        color=alt.Color("severity:O", title="severity (0: clean or mixed)", scale=alt.Scale(domain=list(SEVERITY_COLOURS),
                                                                         range=list(SEVERITY_COLOURS.values()))),
    )
    bars = base.mark_rule(strokeWidth=2).encode(
        x=alt.X("pp_low:Q", title="difference in top-1 (percentage points)"), x2="pp_high:Q")
    points = base.mark_point(filled=True, size=60).encode(
        x="pp:Q",
        tooltip=["corruption", "severity", alt.Tooltip("pp:Q", title="difference (pp)", format="+.1f"),
                 alt.Tooltip("pp_low:Q", title="95% low", format="+.1f"),
                 alt.Tooltip("pp_high:Q", title="95% high", format="+.1f")],
    )
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4], color="black").encode(x="x:Q")
    return (bars + points + zero).properties(width=520, height=alt.Step(14), title=title)


def class_accuracy_vs_frequency(per_class: pd.DataFrame, colours: Mapping[str, str] | None = None,
                                title: str = "Per-class top-1 against training images") -> alt.Chart:
    """Per-class accuracy against training count (log axis), one panel per model.

    ``per_class`` has columns model, class_id, train_count, condition ("clean"/"shifted"), value.
    Colour is the model's, the shape tells clean (circle) from shifted (triangle), and a thin line
    joins a class's clean and shifted accuracy.
    """
    _require(per_class, {"model", "class_id", "train_count", "condition", "value"}, "class_accuracy")
    colour = colour_encoding(per_class, colours, legend="bottom")
    x = alt.X("train_count:Q", title="training images of the class (log scale)", scale=alt.Scale(type="log"),
              axis=alt.Axis(tickCount=4, grid=False))
    y = alt.Y("value:Q", title="per-class top-1", scale=_ACC, axis=_PCT)
    link = alt.Chart().mark_line(color="#8C8C8C", strokeWidth=1).encode(x=x, y=y, detail="class_id:N")
    points = alt.Chart().mark_point(size=80, filled=True, opacity=0.9).encode(
        x=x, y=y, color=colour,
        shape=alt.Shape("condition:N", title="condition", sort=list(CONDITION_SHAPES),
                        scale=alt.Scale(domain=list(CONDITION_SHAPES), range=list(CONDITION_SHAPES.values()))),
        tooltip=["model", "class_id", "train_count", "condition", alt.Tooltip("value:Q", format=".1%")],
    )
    return (
        alt.layer(link, points, data=per_class).properties(width=210, height=200)
        .facet(facet=alt.Facet("model:N", title=None, sort=list(_colours_for(per_class, colours)),
                               header=alt.Header(labelFontSize=13, labelFontWeight="bold")), columns=3)
        .resolve_axis(x="independent", y="independent")
        .properties(title=title)
    )


def shot_groups_by_shift(groups: pd.DataFrame, colours: Mapping[str, str] | None = None,
                         title: str = "Many / medium / few top-1 under each condition") -> alt.Chart:
    """Shot-group accuracy per model, one panel per condition (clean or a corruption).

    ``groups`` has columns model, condition, grp (many/medium/few), value.
    """
    _require(groups, {"model", "condition", "grp", "value"}, "shot_groups_by_shift")
    groups = groups.assign(condition=groups["condition"].replace(UNKNOWN))
    colour = colour_encoding(groups, colours, legend="bottom")
    models = list(_colours_for(groups, colours))
    conditions = ["clean"] + sorted(c for c in groups["condition"].unique() if c != "clean")
    return (
        alt.Chart(groups)
        .mark_bar()
        .encode(
            x=alt.X("grp:N", title="shot group", sort=GROUP_ORDER, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("model:N", sort=models),
            y=alt.Y("value:Q", title="top-1 accuracy", scale=_ACC, axis=_PCT),
            color=colour,
            tooltip=["model", "condition", "grp", alt.Tooltip("value:Q", format=".1%")],
        )
        .properties(width=200, height=170)
        .facet(facet=alt.Facet("condition:N", title=None, sort=conditions,
                               header=alt.Header(labelFontSize=13, labelFontWeight="bold")), columns=3)
        .resolve_axis(x="independent", y="independent")
        .properties(title=title)
    )


def nightly_trend(trend: pd.DataFrame, events: pd.DataFrame | None = None,
                  colours: Mapping[str, str] | None = None,
                  title: str = "Top-1 on shifted batches, night by night") -> alt.TopLevelMixin:
    """Accuracy per night and model (points per batch, line through the nightly mean).

    ``trend`` has columns model, batch_id, night (datetime), value (optional kind); ``events``
    (optional) has columns at (datetime), label and is drawn as vertical rules.
    """
    _require(trend, {"model", "batch_id", "night", "value"}, "nightly_trend")
    keys = ["model", "night"] + (["kind"] if "kind" in trend.columns else [])
    nightly = trend.groupby(keys, as_index=False)["value"].mean()
    colour = colour_encoding(trend, colours)
    x = alt.X("night:T", title="night (UTC)", scale=alt.Scale(padding=24),
              axis=alt.Axis(format="%Y-%m-%d", tickCount="day", labelAngle=0))
    y = alt.Y("value:Q", title="top-1 accuracy", scale=alt.Scale(zero=False, padding=12), axis=_PCT)
    # With estimates the nightly means get their own (hollow where estimated) points, not the line's filled ones.
    line = alt.Chart(nightly).mark_line(point=not _estimated(nightly), strokeWidth=2.5).encode(
        x=x, y=y, color=colour, **_line_dash(nightly))
    means = alt.Chart(nightly).mark_point(size=40, filled=False, strokeWidth=2, opacity=1).encode(
        x=x, y=y, color=colour, fill=_point_fill(nightly, colour))
    points = alt.Chart(trend).mark_point(size=45, opacity=0.6, filled=False).encode(
        x=x, y=y, color=colour, fill=_point_fill(trend, colour),
        tooltip=["model", "batch_id", alt.Tooltip("night:T"), alt.Tooltip("value:Q", format=".1%")]
        + (["kind"] if "kind" in trend.columns else []),
    )
    layers = [points, line] + ([means] if _estimated(nightly) else [])
    if events is not None and not events.empty:
        _require(events, {"at", "label"}, "nightly_trend events")
        layers.append(alt.Chart(events).mark_rule(strokeDash=[3, 3], color="gray")
                      .encode(x="at:T", tooltip=["label", alt.Tooltip("at:T")]))
    return alt.layer(*layers).properties(width=640, height=280, title=_titled(title, trend))


def to_svg(chart: alt.TopLevelMixin) -> str:
    """The chart rendered offline to one ``<svg>`` element (no scripts, no external resources)."""
    import vl_convert  # imported here: only the report renders, the dashboard draws in the browser

    svg = vl_convert.vegalite_to_svg(chart.to_dict())
    return svg[svg.index("<svg"):]
