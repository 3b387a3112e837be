"""Data and runs: shift batches with provenance and validation, evaluation and job runs, reports."""

import json
import re
from pathlib import Path

import streamlit as st

from dashboards import common, queries

url, flt = common.page_setup("Data and runs")

st.subheader("Shift batches")
batches = queries.shift_batches(url, flt)
batches = batches.merge(queries.label_status(url), on="batch_id", how="left")
at = list(batches.columns).index("size") + 1  # the label columns beside the size
batches = batches[[*batches.columns[:at], "labeled", "n_labeled", *[c for c in batches.columns[at:]
                                                                     if c not in ("labeled", "n_labeled")]]]
failed_validation = int((batches["validation_status"] == "failed").sum())
c1, c2, c3, c4 = st.columns(4)
c1.metric("Batches", len(batches))
c2.metric("Failed validation", failed_validation)
c3.metric("Without a DVC hash", int(batches["dvc_hash"].isna().sum()))
c4.metric("Without labels", int((~batches["labeled"].fillna(True).astype(bool)).sum()),
          help="Production batches that came without labels (late labels may cover a sample: n_labeled).")
st.dataframe(batches.drop(columns=["validation_json"]), hide_index=True)
if not batches.empty:
    picked = st.selectbox("Validation result of batch", list(batches["batch_id"]), key="dr_batch")
    raw = batches.set_index("batch_id").loc[picked, "validation_json"]
    with st.expander(f"Validation of {picked}", expanded=False):
        try:
            st.json(json.loads(raw or "{}"), expanded=1)
        except json.JSONDecodeError:
            st.code(raw)

st.subheader("Evaluation runs")
runs = queries.eval_runs(url, flt)
c1, c2, c3 = st.columns(3)
c1.metric("Runs", len(runs))
c2.metric("Failed", int((runs["status"] == "failed").sum()))
c3.metric("Running", int((runs["status"] == "running").sum()))
failed = runs[runs["status"] == "failed"]
if not failed.empty:
    st.error(f"{len(failed)} evaluation run(s) failed; newest error: {failed.iloc[0]['error']}")
st.dataframe(runs, hide_index=True)

st.subheader("Job runs and nightly reports")
jobs = queries.job_runs(url, flt)
st.dataframe(jobs, hide_index=True)
reports = [p for p in jobs["report_path"].dropna().unique() if p]
if not reports:
    st.caption(f"No job run has written a report yet (reports go to `{queries.reports_dir()}`).")
else:
    chosen = st.selectbox("Nightly report", reports, key="dr_report")
    path = Path(chosen)
    if not path.is_file():
        st.warning(f"Report file `{path}` is not on this machine (cwd `{Path.cwd()}`).")
    else:
        # The HTML report has the charts; its Markdown twin (same stem) reads inline here.
        st.download_button(f"Download {path.name}", path.read_bytes(), file_name=path.name, key="dr_download")
        twin = path.with_suffix(".md")
        shown = twin if twin.is_file() else path
        text = shown.read_text(encoding="utf-8", errors="replace")
        with st.expander(f"Preview of {shown.name}", expanded=False):
            if shown.suffix == ".md":
                st.markdown(re.sub(r"^(#{1,3}) ", lambda m: "#" * (len(m.group(1)) + 3) + " ", text, flags=re.M))
            else:
                st.code(text[:20000], language="json" if shown.suffix == ".json" else None)
