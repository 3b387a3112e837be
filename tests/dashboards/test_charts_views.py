"""Pure chart builders (app.charts, shared with the report), the views' edge cases (absent tables,
bad filters), the headline comparison and the dashboard's read-only engine."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dash_store import add_model, seed_store
from sqlalchemy.exc import OperationalError

from app import charts
from app import charts_monitoring as mcharts
from app.db import session, views
from app.db.session import make_engine

CELLS = pd.DataFrame({"model": ["a", "a", "b"], "corruption": ["fog", "fog", "fog"],
                      "severity": [1, 2, 1], "value": [0.6, 0.4, 0.5]})


def test_heatmap_spec_encodes_cells_per_model() -> None:
    spec = charts.shift_heatmap(CELLS).to_dict()
    assert spec["facet"]["field"] == "model" and spec["columns"] == 2  # wrapped facets
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
    assert views.store_counts(engine) == dict.fromkeys(views.COUNTED_TABLES, 0)
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
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    seed_store(engine)
    night1 = views.results(engine, views.ResultFilter(start=date(2026, 11, 20), end=date(2026, 11, 20)))
    assert set(night1["batch_id"]) == {"clean-test", "gaussian_noise-s3"}
    # the failed run of lpt_main on fog-s1 (another code version) does not hide the succeeded one
    every = views.results(engine, views.ResultFilter())
    assert every[(every["model"] == "lpt_main") & (every["batch_id"] == "fog-s1")]["value"].tolist() == [0.6]


MODELS = pd.DataFrame({"model": ["lpt_main", "ft_base", "lpt_random", "vpt_a", "lin"],
                       "method": ["lpt", "full_ft", "lpt", "vpt", "linear"],
                       "state": ["deployed", "baseline", "baseline", "candidate", "baseline"]})


def test_one_palette_per_method_lpt_in_vermillion() -> None:
    colours = charts.model_colours(MODELS)
    assert colours["lpt_main"] == charts.OKABE_ITO["vermillion"] and colours["ft_base"] == charts.OKABE_ITO["blue"]
    assert colours["lpt_random"] == charts.SPARE_COLOURS[0]  # a second LPT model: the next spare colour
    assert len(set(colours.values())) == len(colours)
    curves = pd.DataFrame({"model": ["ft_base", "lpt_main"], "severity": [1, 1], "value": [0.5, 0.6]})
    scale = charts.severity_curves(curves, colours).to_dict()["encoding"]["color"]["scale"]
    assert scale == {"domain": ["lpt_main", "ft_base"], "range": ["#D55E00", "#0072B2"]}  # deployed first


def _titles(spec: dict) -> list:
    """Every axis title and chart title in a Vega-Lite spec."""
    found = []
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key == "title" and value:
                found.append(value)
            found += _titles(value)
    elif isinstance(spec, list):
        for value in spec:
            found += _titles(value)
    return found


def test_every_chart_has_a_title_and_faceted_axes_are_per_panel(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    seed_store(engine)
    flt = views.ResultFilter()
    colours = charts.model_colours(views.models(engine))
    built = [
        charts.headline_comparison(views.paired_comparison(engine, flt, "lpt_main", "ft_base"), "lpt_main", "ft_base"),
        charts.batch_top1(views.latest_batches(engine, flt, ("lpt_main", "ft_base")), colours),
        charts.shift_heatmap(views.shift_cells(engine, flt), colours),
        charts.severity_curves(views.severity_curves(engine, flt), colours),
        charts.difference_with_ci(views.model_difference(engine, flt, "lpt_main", "ft_base")),
        charts.class_accuracy_vs_frequency(views.per_class_accuracy(engine, flt), colours),
        charts.shot_groups_by_shift(views.shot_group_accuracy(engine, flt), colours),
        charts.nightly_trend(views.nightly_trend(engine, flt), None, colours),
    ]
    for chart in built:
        spec = chart.to_dict()
        assert spec.get("title"), spec.get("$schema")
        assert len(_titles(spec)) >= 3, _titles(spec)  # the chart's and both axes'
        if "facet" in spec:
            assert spec["resolve"]["axis"] == {"x": "independent", "y": "independent"}


def test_estimates_are_drawn_hollow_and_dashed() -> None:
    trend = pd.DataFrame({"model": ["a", "a"], "batch_id": ["x", "y"], "value": [0.5, 0.6],
                          "kind": ["measured", "estimated"],
                          "night": pd.to_datetime(["2026-11-20", "2026-11-21"], utc=True)})
    points, line, means = charts.nightly_trend(trend).to_dict()["layer"]
    for layer in (points, means):  # each batch and the nightly mean: hollow where estimated
        assert layer["encoding"]["fill"]["condition"] == {"test": "datum.kind === 'estimated'", "value": "white"}
    assert line["encoding"]["strokeDash"]["field"] == "kind"
    measured = charts.nightly_trend(trend[trend["kind"] == "measured"]).to_dict()["layer"][1]
    assert "strokeDash" not in measured["encoding"]


def test_headline_pair_prefers_deployed_and_skips_honesty_baselines() -> None:
    ranked = views._by_role(MODELS)
    assert list(ranked["model"])[-1] == "lpt_random" and ranked["role"].iloc[-1] == views.HONESTY
    assert views.headline_pair(ranked) == ("lpt_main", "ft_base")
    undeployed = views._by_role(MODELS.assign(state=MODELS["state"].replace("deployed", "candidate")))
    assert views.headline_pair(undeployed) == ("lpt_main", "ft_base")
    only_random = views._by_role(MODELS[MODELS["model"].isin(["lpt_random", "ft_base"])])
    assert views.headline_pair(only_random) is None
    assert views.default_pair(only_random) is None


def test_paired_comparison_uses_common_batches(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    seed_store(engine)
    add_model(engine, "lpt_new", "lpt", "candidate", 0.7)
    cmp = views.paired_comparison(engine, views.ResultFilter(), "lpt_main", "ft_base").set_index("measure")
    assert cmp.loc["shifted", ["value_a", "value_b", "diff"]].tolist() == pytest.approx([0.6, 0.5, 0.1])
    assert cmp.loc["shifted", "n_batches"] == 3 and cmp.loc["clean", "n_batches"] == 1
    # three cells of 1000 images: se = sqrt(sum p(1-p)/n) / 3 per model
    se = np.sqrt((0.7 * 0.3 + 0.5 * 0.5 + 0.6 * 0.4) / 1000 / 9 + (0.6 * 0.4 + 0.4 * 0.6 + 0.5 * 0.5) / 1000 / 9)
    assert cmp.loc["shifted", "ci_high"] - 0.1 == pytest.approx(views.Z95 * se)
    assert cmp.loc["gap", "diff"] == pytest.approx(-0.15)
    night = views.paired_comparison(engine, views.ResultFilter(), "lpt_main", "ft_base", shifted_batches=("fog-s1",))
    assert night.set_index("measure").loc["shifted", "n_batches"] == 1


def test_dashboard_engine_is_read_only(tmp_path: Path) -> None:
    absent = tmp_path / "absent.db"
    engine = session.read_only_engine(f"sqlite:///{absent}")
    with pytest.raises(OperationalError):
        with engine.connect():
            pass
    assert not absent.exists()  # never created
    store = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    seed_store(store)
    store.dispose()
    ro = session.read_only_engine(f"sqlite:///{tmp_path / 'store.db'}")
    assert views.store_counts(ro)["models"] == 2
    with pytest.raises(OperationalError, match="readonly"), ro.begin() as conn:
        conn.exec_driver_sql("DELETE FROM alerts")
    assert session.sqlite_file(f"sqlite:///file:{tmp_path / 'store.db'}?mode=ro&uri=true") == tmp_path / "store.db"


def test_monitoring_views_on_a_store_without_tables(tmp_path: Path) -> None:
    from app.db import views_monitoring as mviews

    engine = make_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    flt = views.ResultFilter()
    frames = {"estimates": (mviews.estimates(engine, flt), mviews.ESTIMATE_COLUMNS),
              "detections": (mviews.detections(engine, flt), mviews.DETECTION_COLUMNS),
              "priors": (mviews.class_priors(engine, flt), mviews.PRIOR_COLUMNS),
              "vs": (mviews.estimate_vs_measured(engine, flt), mviews.COMPARE_COLUMNS),
              "errors": (mviews.estimator_errors(engine, flt), mviews.ERROR_COLUMNS)}
    for name, (frame, columns) in frames.items():
        assert frame.empty and list(frame.columns) == columns, name
    assert mviews.estimated_top1(engine, flt).empty and "kind" in mviews.estimated_top1(engine, flt).columns
    assert mviews.latest_batches(engine, flt, ("a",)).empty and mviews.trend_with_estimates(engine, flt).empty
    assert mviews.prior_vs_training(engine, flt, "a", "b").empty and mviews.label_status(engine).empty


def test_monitoring_views_on_a_store_without_monitoring(tmp_path: Path) -> None:
    """A store with results but no estimates: the measured frames pass through with kind measured."""
    from app.db import views_monitoring as mviews

    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    seed_store(engine)
    flt = views.ResultFilter()
    assert mviews.estimates(engine, flt).empty and mviews.estimated_top1(engine, flt).empty
    trend = mviews.trend_with_estimates(engine, flt)
    assert len(trend) == len(views.nightly_trend(engine, flt)) and set(trend["kind"]) == {"measured"}
    latest = mviews.latest_batches(engine, flt, ("lpt_main", "ft_base"))
    assert latest[["batch", "value"]].equals(views.latest_batches(engine, flt, ("lpt_main", "ft_base"))[["batch", "value"]])


def test_monitoring_chart_specs() -> None:
    priors = pd.DataFrame({"batch": ["b"] * 2, "class_id": [0, 1], "shot_group": ["many", "few"], "train_count": [500, 5],
                           "training_share": [0.99, 0.01], "batch_share": [0.6, 0.4], "reference_share": [0.5, 0.5]})
    spec = mcharts.class_prior_vs_training(priors).to_dict()  # one batch: one panel
    bars = spec["layer"][0]["encoding"]
    assert bars["fill"]["scale"]["range"][1] == "white"  # the estimated prior is hollow
    assert bars["y"]["title"] == "share of the images" and bars["x"]["title"].startswith("class")
    two = mcharts.class_prior_vs_training(pd.concat([priors, priors.assign(batch="c")])).to_dict()
    assert two["facet"]["field"] == "batch" and two["facet"]["sort"] == ["b", "c"]  # panels in the given order
    rows = pd.DataFrame({"model": ["a"], "estimator_label": ["ATC (max confidence)"], "batch": ["x"],
                         "value": [0.6], "measured": [0.5]})
    diagonal, points = mcharts.estimate_vs_measured(rows).to_dict()["layer"]
    assert points["mark"]["filled"] is False and diagonal["mark"]["strokeDash"] == [4, 4]
    assert points["encoding"]["color"]["field"] == "estimator_label"  # the estimators' palette
    with pytest.raises(ValueError, match="estimator_error_trend: data lacks columns"):
        mcharts.estimator_error_trend(rows)
