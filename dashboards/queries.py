"""Cached, read-only data access for the dashboard pages.

One Engine per database URL (``st.cache_resource``) and one cached DataFrame per (URL, filter)
(``st.cache_data(ttl=60)``); the work itself is done by :mod:`app.db.views`. The URL comes from
the service's setting ``LPT_DB_URL`` so the dashboard reads the store the service writes.
The dashboard only reads: SQLite is opened read-only (``file:PATH?mode=ro&uri=true``), so a file
that does not exist yet is reported as an empty store and is never created here; PostgreSQL
sessions are read-only (and should use a read-only role, docs/DASHBOARD.md).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from app import charts
from app.db import views
from app.db import views_monitoring as mviews
from app.db.session import missing_sqlite_file, read_only_engine
from app.db.views import ResultFilter
from app.settings import load_settings

TTL_S = 60


def db_url() -> str:
    """The store's URL, from the service settings (``LPT_DB_URL``)."""
    return load_settings().db_url


def reports_dir() -> Path:
    """Where the nightly job writes its reports (``LPT_REPORTS_DIR``)."""
    return Path(load_settings().reports_dir)


@st.cache_resource(show_spinner=False)
def engine(url: str) -> Engine:
    """The shared read-only Engine for ``url`` (one per process)."""
    return read_only_engine(url)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def store_counts(url: str) -> dict[str, int]:
    """Rows per service table (all 0 when the SQLite file or the tables do not exist)."""
    if missing_sqlite_file(url):
        return dict.fromkeys(views.TABLES, 0)
    return views.store_counts(engine(url))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def filter_options(url: str) -> dict[str, list]:
    """Values the sidebar filters offer."""
    return views.filter_options(engine(url))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def overview(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Per-model clean/shifted accuracy, gap and parameter counts."""
    return views.model_overview(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def shift_cells(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Pooled accuracy per model, corruption and severity."""
    return views.shift_cells(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def severity_curves(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Mean accuracy per model and severity."""
    return views.severity_curves(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def model_difference(url: str, flt: ResultFilter, model_a: str, model_b: str) -> pd.DataFrame:
    """Accuracy difference of two models per corruption and severity with 95% intervals."""
    return views.model_difference(engine(url), flt, model_a, model_b)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def per_class(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Per-class accuracy (clean/shifted) with training counts."""
    return views.per_class_accuracy(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def shot_groups(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Many/medium/few accuracy per model and condition."""
    return views.shot_group_accuracy(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def trend(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Per-batch accuracy with its night, per model; batches without labels as estimated (``kind``)."""
    return mviews.trend_with_estimates(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def model_events(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Model state changes."""
    return views.model_events(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alerts(url: str, flt: ResultFilter, kinds: tuple[str, ...] = ()) -> pd.DataFrame:
    """Alerts, optionally of some kinds."""
    return views.alerts(engine(url), flt, kinds)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def shift_batches(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Registered shift batches with provenance and validation."""
    return views.shift_batches(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def eval_runs(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Evaluation runs with status and errors."""
    return views.eval_runs(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def job_runs(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Job runs with their report paths."""
    return views.job_runs(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def models(url: str) -> pd.DataFrame:
    """Every registered model with its role, deployed first."""
    return views.models(engine(url))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def colours(url: str) -> dict[str, str]:
    """model -> colour over every registered model, so each page colours a model alike."""
    return charts.model_colours(views.models(engine(url)))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def comparison(url: str, flt: ResultFilter, model_a: str, model_b: str) -> pd.DataFrame:
    """Two models per measure on their common batches, with intervals and batch counts."""
    return views.paired_comparison(engine(url), flt, model_a, model_b)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def latest_batches(url: str, flt: ResultFilter, models_: tuple[str, ...], limit: int = 6) -> pd.DataFrame:
    """Top-1 of some models on the latest shifted batches of the first one (estimated where the
    batch has no labels)."""
    return mviews.latest_batches(engine(url), flt, models_, limit)


# --- label-free monitoring (app.db.views_monitoring) ----------------------------------------------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def estimates(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Every estimate of the latest run per (model, batch), with the measurement once labels exist."""
    return mviews.estimates(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def estimated_top1(url: str, flt: ResultFilter) -> pd.DataFrame:
    """The headline estimate of the runs that measured nothing (batches without labels)."""
    return mviews.estimated_top1(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def detections(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Every shift test (and class-prior estimate) of the latest run per (model, batch)."""
    return mviews.detections(engine(url), flt).drop(columns="details")  # details: see class_priors


@st.cache_data(ttl=TTL_S, show_spinner=False)
def prior_vs_training(url: str, flt: ResultFilter, model: str, batch_id: str) -> pd.DataFrame:
    """A batch's class prior estimated from the model's predictions against its training prior."""
    return mviews.prior_vs_training(engine(url), flt, model, batch_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def estimate_vs_measured(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Overall estimates beside the measured top-1, on the batches with labels."""
    return mviews.estimate_vs_measured(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def estimator_errors(url: str, flt: ResultFilter) -> pd.DataFrame:
    """Mean absolute error per model, estimator and night."""
    return mviews.estimator_errors(engine(url), flt)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def label_status(url: str) -> pd.DataFrame:
    """Per batch: labelled or not, images with a label, late label set."""
    return mviews.label_status(engine(url))
