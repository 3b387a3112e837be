"""Shift explorer: accuracy per corruption and severity, and LPT minus full fine-tuning."""

import streamlit as st

from app.db.views import default_pair
from dashboards import charts, common, queries

url, flt = common.page_setup("Shift explorer")
cells = queries.shift_cells(url, flt)
shifted = cells[cells["corruption"] != "none"]
if shifted.empty:
    common.no_match()

st.subheader("Accuracy per corruption and severity")
st.altair_chart(charts.shift_heatmap(shifted), key="se_heatmap")

st.subheader("Severity curves")
st.caption("Mean over the selected corruptions of the per-cell accuracy; severity 0 is clean.")
st.altair_chart(charts.severity_curves(queries.severity_curves(url, flt)), key="se_curves")

st.subheader("Difference between two models")
overview = queries.overview(url, flt)
names = list(overview["model"])
pair = default_pair(overview) or (names[0], names[-1])
left, right = st.columns(2)
model_a = left.selectbox("Model A", names, index=names.index(pair[0]), key="se_model_a")
model_b = right.selectbox("Model B (reference)", names, index=names.index(pair[1]), key="se_model_b")
diff = queries.model_difference(url, flt, model_a, model_b)
if diff.empty:
    st.info(f"{model_a} and {model_b} share no evaluated shift condition under these filters.")
else:
    st.caption(f"{model_a} minus {model_b}: points are differences of pooled accuracy, bars their "
               "95% Wald intervals (independent binomials; conservative for paired images).")
    st.altair_chart(charts.difference_with_ci(diff), key="se_diff")
    st.dataframe(diff, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.4f")
        for c in ("acc_a", "acc_b", "diff", "ci_low", "ci_high")
    })
