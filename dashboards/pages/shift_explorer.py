"""Shift explorer: accuracy per corruption and severity, and one model minus another."""

import streamlit as st

from app import charts
from dashboards import common, headline, queries

url, flt = common.page_setup("Shift explorer")
cells = queries.shift_cells(url, flt)
shifted = cells[cells["corruption"] != "none"]
if shifted.empty:
    common.no_match()
colours = queries.colours(url)

st.subheader("Accuracy per corruption and severity")
st.altair_chart(charts.shift_heatmap(shifted, colours), key="se_heatmap", theme=None)

st.subheader("Severity curves")
st.caption("Mean over the selected corruptions of the per-cell accuracy; severity 0 is clean.")
st.altair_chart(charts.severity_curves(queries.severity_curves(url, flt), colours), key="se_curves", theme=None)

st.subheader("Difference between two models")
model_a, model_b = headline.pick_pair(queries.overview(url, flt), "se")
diff = queries.model_difference(url, flt, model_a, model_b)
if diff.empty:
    st.info(f"{model_a} and {model_b} share no evaluated shift condition under these filters.")
else:
    st.caption(f"{model_a} minus {model_b}: points are differences of pooled accuracy, bars their "
               "95% Wald intervals (independent binomials; conservative for paired images).")
    st.altair_chart(charts.difference_with_ci(diff, title=f"{model_a} minus {model_b}: top-1 difference, "
                                                          "95% intervals"), key="se_diff", theme=None)
    st.dataframe(diff, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.4f")
        for c in ("acc_a", "acc_b", "diff", "ci_low", "ci_high")
    })
