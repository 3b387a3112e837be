"""Dashboard entry point: navigation only (``streamlit run dashboards/app.py``)."""

import sys
from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "pages"
ROOT = Path(__file__).resolve().parents[1]

# `streamlit run dashboards/app.py` puts dashboards/ first on sys.path, where this very file
# would shadow the service package `app`: import from the project root instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() not in (ROOT, PAGES.parent)]

st.set_page_config(page_title="LPT robustness", page_icon=":material/monitoring:", layout="wide",
                   initial_sidebar_state="expanded")
navigation = st.navigation(
    [
        st.Page(PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page(PAGES / "shift_explorer.py", title="Shift explorer", icon=":material/grid_on:"),
        st.Page(PAGES / "long_tail.py", title="Long tail", icon=":material/bar_chart:"),
        st.Page(PAGES / "timeline.py", title="Timeline", icon=":material/timeline:"),
        st.Page(PAGES / "monitoring.py", title="Label-free monitoring", icon=":material/visibility:"),
        st.Page(PAGES / "data_runs.py", title="Data and runs", icon=":material/database:"),
    ]
)
navigation.run()
