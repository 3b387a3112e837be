"""Overview: deployed prompt sets against full fine-tuning, at a glance."""

import streamlit as st

from app.db.views import default_pair
from dashboards import common, queries

url, flt = common.page_setup("Overview")
table = queries.overview(url, flt)
if table.empty:
    common.no_match()

st.caption("Clean accuracy pools every clean batch; mean shifted accuracy is the mean over "
           "(corruption, severity) cells; gap = clean - shifted.")
for row in table.itertuples():
    st.subheader(f"{row.model} · {row.method} · {row.state}")
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("Clean accuracy", common.pct(row.clean_acc))
    c2.metric("Mean shifted accuracy", common.pct(row.shifted_acc))
    c3.metric("Robustness gap", common.pct(row.gap))
    c4.metric("Trainable parameters", f"{int(row.trainable_params):,}")
    c5.metric("Stored parameters", f"{int(row.stored_params):,}")

pair = default_pair(table)
if pair:
    a, b = (table.set_index("model").loc[m] for m in pair)
    st.subheader(f"{pair[0]} against {pair[1]}")
    c1, c2, c3 = st.columns(3)
    c1.metric("Shifted accuracy difference", common.points(a.shifted_acc - b.shifted_acc))
    c2.metric("Gap difference", common.points(a.gap - b.gap))
    c3.metric("Stored parameter ratio", f"{a.stored_params / b.stored_params:.2%}")

st.subheader("All models")
shown, config = common.as_percent(table, ["clean_acc", "shifted_acc", "gap"])
st.dataframe(shown, hide_index=True, column_config=config)
left, right = st.columns(2)
with left:
    st.subheader("Latest alerts")
    latest = queries.alerts(url, flt).head(10)
    if latest.empty:
        st.caption("No alerts.")
    else:
        st.dataframe(latest, hide_index=True)
with right:
    st.subheader("Latest promotions and rollbacks")
    events = queries.model_events(url, flt).head(10)
    if events.empty:
        st.caption("No state changes.")
    else:
        st.dataframe(events, hide_index=True)
