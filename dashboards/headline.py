"""The overview's answer: the deployed model against full fine-tuning, per measure, with
intervals and the number of batches behind each (and the model pickers that choose the pair).

Defaults come from :func:`app.db.views.headline_pair`: the deployed model (else the first LPT/VPT
candidate) against the first full fine-tuning model; an honesty baseline (a prompt method in
state "baseline", e.g. on a random-init backbone) is offered last and only when picked.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import charts
from app.db.views import HONESTY, ResultFilter, default_pair, headline_pair
from dashboards import common, queries

LOWER_IS_BETTER = {"gap"}


def _label(table: pd.DataFrame, model: str) -> str:
    row = table.set_index("model").loc[model]
    return f"{model} · {charts.method_label(row['method'])} · {row['role']}"


def pick_pair(table: pd.DataFrame, key: str) -> tuple[str, str]:
    """Two model pickers (keys ``<key>_model_a`` / ``<key>_model_b``), defaulting to the headline pair."""
    names = list(table["model"])  # ordered by role: deployed first, honesty baselines last
    fallback = [n for n in names if table.set_index("model").loc[n, "role"] != HONESTY] or names
    pair = headline_pair(table) or default_pair(table) or (fallback[0], fallback[min(1, len(fallback) - 1)])
    left, right = st.columns(2)
    a = left.selectbox("Model", names, index=names.index(pair[0]), key=f"{key}_model_a",
                       format_func=lambda m: _label(table, m))
    b = right.selectbox("Compared with", names, index=names.index(pair[1]), key=f"{key}_model_b",
                        format_func=lambda m: _label(table, m))
    return a, b


def _title(table: pd.DataFrame, a: str, b: str) -> str:
    rows = table.set_index("model")
    return (f"{a} ({charts.method_label(rows.loc[a, 'method'])}, {rows.loc[a, 'role']}) against "
            f"{b} ({charts.method_label(rows.loc[b, 'method'])})")


TILES = {"shifted": "shifted top-1", "clean": "clean top-1", "gap": "robustness gap"}


def _tile(column: st.delta_generator.DeltaGenerator, row: pd.Series, a: str, b: str) -> None:
    """One headline figure of model ``a``, with its difference to ``b`` and the interval."""
    value = common.pct(row["value_a"]) if row["measure"] != "gap" else f"{100 * row['value_a']:.1f} pp"
    delta = None
    if pd.notna(row["diff"]):
        delta = f"{common.points(row['diff'])} vs {b} [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}]"
    n = int(row["n_batches"])
    column.metric(f"{a}, {TILES[row['measure']]} ({n} batch{'' if n == 1 else 'es'})", value, delta=delta,
                  delta_color="inverse" if row["measure"] in LOWER_IS_BETTER else "normal",
                  help=f"{b}: {common.pct(row['value_b'])}. Difference with its 95% interval, over the "
                       f"{int(row['n_batches'])} batch(es) both models were evaluated on.")


def measure_table(cmp: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """The comparison as display strings: measure, both models, difference (a - b), 95% CI, batches."""
    def fmt(v: float, measure: str) -> str:
        return f"{100 * v:.1f} pp" if measure == "gap" else common.pct(v)

    return pd.DataFrame({
        "measure": cmp["label"],
        a: [fmt(v, m) for v, m in zip(cmp["value_a"], cmp["measure"])],
        b: [fmt(v, m) for v, m in zip(cmp["value_b"], cmp["measure"])],
        "difference": [common.points(v) for v in cmp["diff"]],
        "95% CI": [f"[{100 * lo:+.1f}, {100 * hi:+.1f}]" if pd.notna(lo) else "n/a"
                         for lo, hi in zip(cmp["ci_low"], cmp["ci_high"])],
        "batches": cmp["n_batches"].astype(int),
    })


def show_single(table: pd.DataFrame, model: str) -> None:
    """One model's clean and shifted accuracy and gap (when there is nothing to compare it with)."""
    row = table.set_index("model").loc[model]
    st.subheader(f"{model} ({charts.method_label(row['method'])}, {row['role']})")
    st.info("Only one model matches the filters: pick a second one above, or widen the *Methods* filter, "
            "to compare it with full fine-tuning.")
    c1, c2, c3 = st.columns(3)
    c1.metric("Clean accuracy", common.pct(row["clean_acc"]))
    c2.metric("Mean shifted accuracy", common.pct(row["shifted_acc"]))
    c3.metric("Robustness gap", common.pct(row["gap"]))


def show(url: str, flt: ResultFilter, table: pd.DataFrame, a: str, b: str) -> None:
    """The headline: title naming both models, one metric per measure, the chart, the latest batches."""
    if a == b:
        show_single(table, a)
        return
    st.subheader(_title(table, a, b))
    if "deployed" not in set(table["role"]):
        st.warning("Nothing is deployed yet, so this compares the first candidate. Deploy one with "
                   "`lpt models promote NAME --reason \"...\"`.", icon=":material/rocket_launch:")
    cmp = queries.comparison(url, flt, a, b)
    if cmp.empty or cmp["n_batches"].max() == 0:
        st.info(f"{a} and {b} share no evaluated batch under these filters.")
        return
    by = cmp.set_index("measure")
    st.caption(f"Over the batches both models were evaluated on ({int(by.loc['shifted', 'n_batches'])} shifted, "
               f"{int(by.loc['clean', 'n_batches'])} clean). Differences in percentage points with 95% intervals "
               "(independent binomials: conservative for shared images); shot groups are under shift; "
               "gap = clean - shifted, lower is better.")
    for column, measure in zip(st.columns(len(TILES)), TILES):
        _tile(column, pd.Series({**by.loc[measure], "measure": measure}), a, b)
    colours = queries.colours(url)
    left, right = st.columns([11, 9])
    left.dataframe(measure_table(cmp, a, b), hide_index=True, key="ov_measures")
    right.altair_chart(charts.headline_comparison(cmp, a, b, colours), key="ov_headline", theme=None)
    latest = queries.latest_batches(url, flt, (a, b))
    if not latest.empty:
        st.altair_chart(charts.batch_top1(latest, colours, title=f"Latest shifted batches of {a} (95% intervals)"),
                        key="ov_latest", theme=None)
