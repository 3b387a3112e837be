"""Pure chart builders (app.charts, shared with the report), the views' edge cases (absent tables,
bad filters), the headline comparison and the dashboard's read-only engine."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.exc import OperationalError

from app.db import views
from app.db import session
from app.db.session import make_engine
from app import charts
from dash_store import add_model, seed_store

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
    points, line = charts.nightly_trend(trend).to_dict()["layer"]
    assert points["encoding"]["fill"]["condition"] == {"test": "datum.kind === 'estimated'", "value": "white"}
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
