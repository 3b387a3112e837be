"""Long tail: per-class accuracy against training frequency, and shot groups under each shift."""

import streamlit as st

from app import charts
from dashboards import common, queries

url, flt = common.page_setup("Long tail")
colours = queries.colours(url)

st.subheader("Per-class accuracy against training frequency")
st.caption("One panel per model; circles clean, triangles shifted, a grey line joins a class's two.")
per_class = queries.per_class(url, flt)
if per_class.empty:
    st.info("No per-class results (or no training counts for the models) under these filters.")
else:
    st.altair_chart(charts.class_accuracy_vs_frequency(per_class, colours), key="lt_classes", theme=None)

st.subheader("Many / medium / few under each shift")
st.caption("Shot groups by training count: many > 100, medium 20..100, few < 20.")
groups = queries.shot_groups(url, flt)
if groups.empty:
    st.info("No shot-group results under these filters.")
else:
    st.altair_chart(charts.shot_groups_by_shift(groups, colours), key="lt_groups", theme=None)
    wide = groups.assign(condition=groups["condition"].replace(charts.UNKNOWN)).pivot_table(
        index=["model", "condition"], columns="grp", values="value")
    wide = wide.reindex(columns=["many", "medium", "few"]).reset_index()
    shown, config = common.as_percent(wide, ["many", "medium", "few"])
    st.dataframe(shown, hide_index=True, column_config=config)
