"""Timeline: nightly accuracy per model and batch, promotions, rollbacks and regressions."""

import pandas as pd
import streamlit as st

from app import charts
from dashboards import common, queries

url, flt = common.page_setup("Timeline")
trend = queries.trend(url, flt)
events = queries.model_events(url, flt)

st.subheader("Nightly accuracy on shifted batches")
if trend.empty:
    st.info("No shifted-batch results under these filters.")
else:
    changes = events[events["from_state"] != events["to_state"]]
    marks = pd.DataFrame({
        "at": changes["at"],
        "label": changes["model"] + ": " + changes["from_state"] + " -> " + changes["to_state"],
    })
    st.altair_chart(charts.nightly_trend(trend, marks, queries.colours(url)), key="tl_trend", theme=None)
    st.caption("Points: one shifted batch each; lines: the nightly mean; dashed rules: state changes. Hollow "
               "points and dashed lines: top-1 estimated without labels (ATC), not measured.")
    series = trend["model"].where(trend["kind"] == "measured", trend["model"] + " (estimated)")
    nightly = trend.assign(series=series).groupby(["night", "series"])["value"].mean().unstack("series")
    order = list(queries.colours(url)) + [f"{m} (estimated)" for m in queries.colours(url)]  # deployed first
    nightly = nightly[[s for s in order if s in nightly.columns]]
    nightly.index = nightly.index.strftime("%Y-%m-%d")
    shown, config = common.as_percent(nightly.sort_index(ascending=False), list(nightly.columns))
    st.dataframe(shown, column_config=config)

st.subheader("Promotions and rollbacks")
if events.empty:
    st.caption("No state changes.")
else:
    st.dataframe(events, hide_index=True)

st.subheader("Regressions")
regressions = queries.alerts(url, flt, ("regression",))
if regressions.empty:
    st.caption("No regression alerts.")
else:
    st.dataframe(regressions, hide_index=True)
