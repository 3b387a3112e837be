"""The Streamlit dashboard of lpt-robustness (LPT: Dong et al., ICLR 2023, under domain shift).

Read-only: pages call :mod:`dashboards.queries` (cached reads through ``app.db.views``) and draw
with :mod:`app.charts` (shared with the nightly report). Run ``streamlit run dashboards/app.py``.
"""
