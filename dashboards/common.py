"""Pieces every dashboard page shares: the empty-store guide, the sidebar filters kept in the
URL's query parameters, and the demo-data banner.

Filters live in three places kept in step: the widgets (stable keys ``f_*``), the session
(``_filters``, so they survive page switches) and ``st.query_params`` (so a view can be shared).
A fresh session (opening a shared URL) starts from the query parameters.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
import streamlit as st

from app.db.views import ResultFilter
from dashboards import queries

FILL_COMMANDS = """\
dvc repro            # prepare data, train, evaluate: writes models/, data/shifts/eval, results/
lpt ingest --models models --shifts data/shifts/eval --results results   # load them into the store
python -m dashboards.seed_demo --nights 7   # optional: demo nights derived from those results
"""
_STATE = "_filters"
MODEL_COLUMNS = {"clean_acc": "clean", "shifted_acc": "shifted (mean)", "trainable_params": "trainable params",
                 "stored_params": "stored params", "n_batches": "batches", "demo_batches": "demo batches"}
ALL = "(all)"


def require_results(url: str) -> None:
    """Stop the page with instructions when the store holds no evaluation results."""
    counts = queries.store_counts(url)
    if counts.get("metrics", 0) > 0:
        return
    st.info(f"The store at `{url}` holds no evaluation results yet.", icon=":material/inbox:")
    st.markdown("Fill it from the project root, then reload this page:")
    st.code(FILL_COMMANDS, language="bash")
    st.caption("Set `LPT_DB_URL` to read another store. Tables and rows found: "
               + ", ".join(f"{k} {v}" for k, v in counts.items()))
    st.stop()


def _split(raw: str | None) -> list[str]:
    return [v for v in (raw or "").split(",") if v]


def _valid(label: str, values: list, allowed: list) -> list:
    """``values`` within ``allowed``; a warning names any value the store does not have."""
    bad = [v for v in values if v not in allowed]
    if bad:
        st.sidebar.warning(f"Ignored {label} {bad} from the URL: the store has {allowed}.")
    return [v for v in values if v in allowed]


def _date(raw: str | None, label: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        st.sidebar.warning(f"Ignored {label}={raw!r} from the URL: expected YYYY-MM-DD.")
        return None


def _from_query_params(options: dict[str, list]) -> dict:
    """Initial filter values from the URL, checked against what the store holds."""
    qp = st.query_params
    severities = [int(s) for s in _split(qp.get("severity")) if s.isdigit()]
    dataset = _valid("dataset", _split(qp.get("dataset")), options["datasets"])
    return {
        "dataset": dataset[0] if dataset else None,
        "methods": _valid("method", _split(qp.get("method")), options["methods"]),
        "corruptions": _valid("corruption", _split(qp.get("corruption")), options["corruptions"]),
        "severities": _valid("severity", severities, options["severities"]),
        "start": _date(qp.get("from"), "from"),
        "end": _date(qp.get("to"), "to"),
        "include_demo": qp.get("demo", "1") != "0",
    }


def _dataset_widget(options: dict[str, list], saved: dict) -> str | None:
    choices = [ALL, *options["datasets"]]
    index = choices.index(saved["dataset"]) if saved["dataset"] in choices else 0
    if saved["dataset"] is None and len(options["datasets"]) == 1:
        index = 1  # a single dataset is the natural default
    picked = st.sidebar.selectbox("Dataset / profile", choices, index=index, key="f_dataset")
    return None if picked == ALL else picked


def _date_widget(options: dict[str, list], saved: dict) -> tuple[date | None, date | None]:
    if not options["dates"]:
        return None, None
    lo, hi = options["dates"]
    start = min(max(saved["start"] or lo, lo), hi)
    end = max(min(saved["end"] or hi, hi), start)
    chosen = st.sidebar.date_input("Evaluated between", (start, end), min_value=lo, max_value=hi,
                                   key="f_dates")
    picked: tuple[Any, ...] = tuple(chosen) if isinstance(chosen, (tuple, list)) else (chosen,)
    start, end = (picked + (hi,))[:2] if picked else (lo, hi)
    # Only a range narrower than the store's is a restriction worth putting in the URL.
    return (start if start > lo else None), (end if end < hi else None)


def sidebar_filters(url: str) -> ResultFilter:
    """Render the sidebar filters and return them; they are mirrored into the URL."""
    options = queries.filter_options(url)
    if _STATE not in st.session_state:
        st.session_state[_STATE] = _from_query_params(options)
    saved = st.session_state[_STATE]
    st.sidebar.header("Filters")
    dataset = _dataset_widget(options, saved)
    methods = st.sidebar.multiselect("Methods", options["methods"], default=saved["methods"],
                                     key="f_methods", placeholder="all methods")
    corruptions = st.sidebar.multiselect("Corruptions", options["corruptions"],
                                         default=saved["corruptions"], key="f_corruptions",
                                         placeholder="all corruptions")
    severities = st.sidebar.multiselect("Severities", options["severities"],
                                        default=saved["severities"], key="f_severities",
                                        placeholder="all severities")
    start, end = _date_widget(options, saved)
    demo = st.sidebar.toggle("Include demo-seeded data", value=saved["include_demo"], key="f_demo")
    flt = ResultFilter(dataset=dataset, methods=tuple(methods), corruptions=tuple(corruptions),
                       severities=tuple(int(s) for s in severities), start=start, end=end,
                       include_demo=demo)
    st.session_state[_STATE] = {"dataset": dataset, "methods": list(methods),
                                "corruptions": list(corruptions), "severities": list(severities),
                                "start": start, "end": end, "include_demo": demo}
    _write_query_params(flt)
    return flt


def demo_banner(includes_demo: bool) -> None:
    """Say plainly when the figures on a page include demo-seeded (resampled) results."""
    if includes_demo:
        st.warning("Includes **demo-seeded** nights: real results re-registered over past dates "
                   "with binomial resampling (source `demo-seed`). They are not measurements; "
                   "switch *Include demo-seeded data* off to see only real runs.",
                   icon=":material/science:")


def page_setup(title: str) -> tuple[str, ResultFilter]:
    """Title, empty-store guard, sidebar filters and demo banner; returns (db URL, filters)."""
    st.title(title)
    url = queries.db_url()
    require_results(url)
    flt = sidebar_filters(url)
    summary = queries.overview(url, flt)
    demo_banner(bool(summary["demo_batches"].sum()) if not summary.empty else False)
    return url, flt


def no_match() -> None:
    """Stop the page when the filters leave nothing to show."""
    st.info("No results match the filters in the sidebar.", icon=":material/filter_alt_off:")
    st.stop()


def pct(value: float | None) -> str:
    """An accuracy in [0, 1] as a percentage with one decimal ("n/a" when missing)."""
    return "n/a" if value is None or pd.isna(value) else f"{100 * value:.1f}%"


def _write_query_params(flt: ResultFilter) -> None:
    params = {
        "dataset": flt.dataset or "",
        "method": ",".join(flt.methods),
        "corruption": ",".join(flt.corruptions),
        "severity": ",".join(str(s) for s in flt.severities),
        "from": flt.start.isoformat() if flt.start else "",
        "to": flt.end.isoformat() if flt.end else "",
        "demo": "1" if flt.include_demo else "0",
    }
    wanted = {k: v for k, v in params.items() if v}
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)


def points(value: float | None) -> str:
    """A difference of accuracies in percentage points, signed ("n/a" when missing)."""
    return "n/a" if value is None or pd.isna(value) else f"{100 * value:+.1f} pp"


def as_percent(frame: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, dict]:
    """``frame`` with accuracy ``columns`` scaled to percent, and a column config showing "81.3%"."""
    present = [c for c in columns if c in frame.columns]
    scaled = frame.assign(**{c: 100 * frame[c].astype(float) for c in present})
    return scaled, {c: st.column_config.NumberColumn(format="%.1f%%") for c in present}
