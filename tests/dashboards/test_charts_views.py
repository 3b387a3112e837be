"""Pure chart builders and the views' edge cases (absent tables, bad filters)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from app.db import views
from app.db.session import make_engine
from dashboards import charts

CELLS = pd.DataFrame({"model": ["a", "a", "b"], "corruption": ["fog", "fog", "fog"],
                      "severity": [1, 2, 1], "value": [0.6, 0.4, 0.5]})


def test_heatmap_spec_encodes_cells_per_model() -> None:
    spec = charts.shift_heatmap(CELLS).to_dict()
    assert spec["facet"]["field"] == "model" and spec["columns"] == 3  # wrapped facets
    assert {"model", "corruption", "severity", "value"} <= set(pd.DataFrame(spec["datasets"][next(iter(spec["datasets"]))]).columns)


def test_charts_refuse_frames_without_their_columns() -> None:
    with pytest.raises(ValueError, match=r"shift_heatmap: data lacks columns \['severity'\]"):
        charts.shift_heatmap(CELLS.drop(columns="severity"))
    with pytest.raises(ValueError, match="difference_with_ci"):
        charts.difference_with_ci(CELLS)


def test_trend_chart_draws_event_rules_only_when_given() -> None:
    trend = pd.DataFrame({"model": ["a", "a"], "batch_id": ["x", "y"], "value": [0.5, 0.6],
                          "night": pd.to_datetime(["2026-11-20", "2026-11-21"], utc=True)})
    assert len(charts.nightly_trend(trend).to_dict()["layer"]) == 2
    events = pd.DataFrame({"at": pd.to_datetime(["2026-11-20"], utc=True), "label": ["a: candidate -> deployed"]})
    assert len(charts.nightly_trend(trend, events).to_dict()["layer"]) == 3


def test_views_on_a_store_without_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    flt = views.ResultFilter()
    assert views.store_counts(engine) == dict.fromkeys(views.TABLES, 0)
    assert not views.has_results(engine)
    assert views.filter_options(engine)["datasets"] == []
    for frame in (views.model_overview(engine, flt), views.shift_cells(engine, flt),
                  views.per_class_accuracy(engine, flt), views.nightly_trend(engine, flt),
                  views.shift_batches(engine, flt), views.eval_runs(engine, flt), views.job_runs(engine, flt)):
        assert frame.empty
    assert "clean_acc" in views.model_overview(engine, flt).columns


def test_filter_refuses_reversed_dates() -> None:
    with pytest.raises(ValueError, match="start 2026-11-22 is after end 2026-11-20"):
        views.ResultFilter(start=date(2026, 11, 22), end=date(2026, 11, 20))


def test_date_filter_and_latest_run(tmp_path: Path) -> None:
    from dash_store import seed_store

    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    seed_store(engine)
    night1 = views.results(engine, views.ResultFilter(start=date(2026, 11, 20), end=date(2026, 11, 20)))
    assert set(night1["batch_id"]) == {"clean-test", "gaussian_noise-s3"}
    # the failed run of lpt_main on fog-s1 (another code version) does not hide the succeeded one
    every = views.results(engine, views.ResultFilter())
    assert every[(every["model"] == "lpt_main") & (every["batch_id"] == "fog-s1")]["value"].tolist() == [0.6]
