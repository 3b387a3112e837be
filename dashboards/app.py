"""Dashboard entry point: navigation only (``streamlit run dashboards/app.py``)."""

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "pages"

st.set_page_config(page_title="LPT robustness", page_icon=":material/monitoring:", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page(PAGES / "shift_explorer.py", title="Shift explorer", icon=":material/grid_on:"),
        st.Page(PAGES / "long_tail.py", title="Long tail", icon=":material/bar_chart:"),
        st.Page(PAGES / "timeline.py", title="Timeline", icon=":material/timeline:"),
        st.Page(PAGES / "data_runs.py", title="Data and runs", icon=":material/database:"),
    ]
)
navigation.run()
