"""Overview: does the deployed prompt set still hold up, and how does it compare with full fine-tuning?"""

import streamlit as st

from dashboards import common, headline, queries

url, flt = common.page_setup("Overview")
table = queries.overview(url, flt)
if table.empty:
    common.no_match()

model_a, model_b = headline.pick_pair(table, "ov")
headline.show(url, flt, table, model_a, model_b)

st.subheader("All models")
st.caption("Clean accuracy pools every clean batch; mean shifted accuracy is the mean over (corruption, severity) "
           "cells; gap = clean - shifted. Role *honesty baseline*: a prompt method kept as a reference "
           "(e.g. on a random-init backbone), never deployed.")
shown, config = common.as_percent(table.rename(columns=common.MODEL_COLUMNS), ["clean", "shifted (mean)", "gap"])
config |= {c: st.column_config.NumberColumn(format="localized") for c in ("trainable params", "stored params")}
st.dataframe(shown, hide_index=True, column_config=config, key="ov_models")
left, right = st.columns(2)
with left:
    st.subheader("Latest alerts")
    latest = queries.alerts(url, flt).head(10)
    if latest.empty:
        st.caption("No alerts.")
    else:
        st.dataframe(latest, hide_index=True, key="ov_alerts")
with right:
    st.subheader("Latest promotions and rollbacks")
    events = queries.model_events(url, flt).head(10)
    if events.empty:
        st.caption("No state changes.")
    else:
        st.dataframe(events, hide_index=True, key="ov_events")
