"""AppTest per dashboard page, on a seeded store and on an empty one."""

from __future__ import annotations

import json

import pytest
from dash_store import EXPECTED, EXPECTED_MONITORING, FAILED_ERROR, PROD, add_model
from streamlit.testing.v1 import AppTest

APP = "../../dashboards/app.py"
PAGES = ["pages/overview.py", "pages/shift_explorer.py", "pages/long_tail.py", "pages/timeline.py",
         "pages/data_runs.py", "pages/monitoring.py"]
TITLES = ["Overview", "Shift explorer", "Long tail", "Timeline", "Data and runs", "Label-free monitoring"]
TIMEOUT_S = 60


def _open(page: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if page != PAGES[0]:
        at.switch_page(page).run()
    return at


def _metrics(at: AppTest) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in at.metric:
        out.setdefault(m.label, []).append(m.value)
    return out


def _text(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "code", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page,title", zip(PAGES, TITLES))
def test_page_renders_on_seeded_store(seeded_url: str, page: str, title: str) -> None:
    at = _open(page)
    assert not at.exception, [e.message for e in at.exception]
    assert at.title[0].value == title


@pytest.mark.parametrize("page", PAGES)
def test_page_guides_on_empty_store(empty_url: str, page: str) -> None:
    at = _open(page)
    assert not at.exception, [e.message for e in at.exception]
    text = _text(at)
    assert "holds no evaluation results" in text
    for command in ("dvc repro", "lpt ingest", "seed_demo"):
        assert command in text
    assert not at.dataframe and not at.metric


def test_overview_leads_with_the_deployed_model_against_full_ft(seeded_url: str) -> None:
    at = _open(PAGES[0])
    assert at.subheader[0].value == EXPECTED["headline"]
    assert at.selectbox(key="ov_model_a").value == "lpt_main"
    assert at.selectbox(key="ov_model_b").value == "ft_base"
    tiles = {m.label: (m.value, m.delta) for m in at.metric}
    assert tiles["lpt_main, shifted top-1 (3 batches)"] == (
        EXPECTED["lpt_main"]["shifted"], f"{EXPECTED['shifted_diff']} vs ft_base [+7.5, +12.5]")
    assert tiles["lpt_main, clean top-1 (1 batch)"][0] == EXPECTED["lpt_main"]["clean"]
    assert tiles["lpt_main, robustness gap (4 batches)"] == ("20.0 pp", "-15.0 pp vs ft_base [-19.1, -10.9]")
    measures = at.dataframe[0].value.set_index("measure")
    assert measures.loc["clean", "ft_base"] == EXPECTED["ft_base"]["clean"]
    assert measures.loc["few-shot, shifted"].tolist() == ["40.0%", "30.0%", "+10.0 pp", "[+5.3, +14.7]", 3]
    assert "3 shifted, 1 clean" in _text(at)  # the number of batches behind the figures
    models = at.dataframe[1].value.set_index("model")
    assert models.loc["lpt_main", "clean"] == pytest.approx(80.0)  # shown in percent
    assert models.loc["ft_base", "shifted (mean)"] == pytest.approx(50.0)
    assert list(models["role"]) == ["deployed", "baseline"]
    assert "regression" in set(at.dataframe[2].value["kind"])
    assert list(at.dataframe[3].value["to_state"]) == ["deployed"]


def test_overview_never_defaults_to_an_honesty_baseline(seeded_url: str) -> None:
    from app.db.session import make_engine

    engine = make_engine(seeded_url)
    add_model(engine, "lpt_random", "lpt", "baseline", 0.88)  # best numbers, but a random-init reference
    add_model(engine, "lpt_new", "lpt", "candidate", 0.65)
    engine.dispose()
    at = _open(PAGES[0])
    assert at.selectbox(key="ov_model_a").value == "lpt_main"
    assert list(at.dataframe[1].value["model"])[-1] == "lpt_random"  # listed last, as honesty baseline
    at.selectbox(key="ov_model_a").select("lpt_random").run()  # still there when the user picks it
    assert at.subheader[0].value.startswith("lpt_random (LPT, honesty baseline) against ft_base")


def test_shift_explorer_difference_table(seeded_url: str) -> None:
    at = _open(PAGES[1])
    assert at.selectbox(key="se_model_a").value == "lpt_main"  # the overview's pickers, key prefix se
    assert at.selectbox(key="se_model_b").value == "ft_base"
    diff = at.dataframe[0].value.set_index(["corruption", "severity"])
    assert diff.loc[("gaussian_noise", 3), "diff"] == pytest.approx(0.10)
    assert diff.loc[("gaussian_noise", 3), "ci_low"] < 0.10 < diff.loc[("gaussian_noise", 3), "ci_high"]
    at.selectbox(key="se_model_a").select("ft_base").run()
    at.selectbox(key="se_model_b").select("lpt_main").run()
    assert at.dataframe[0].value.set_index(["corruption", "severity"]).loc[("fog", 1), "diff"] == pytest.approx(-0.10)


def test_long_tail_shot_groups(seeded_url: str) -> None:
    at = _open(PAGES[2])
    table = at.dataframe[0].value.set_index(["model", "condition"])
    assert table.loc[("lpt_main", "clean"), "few"] == pytest.approx(60.0)  # shown in percent
    assert table.loc[("ft_base", "gaussian_noise"), "many"] == pytest.approx(60.0)  # (0.7 + 0.5) / 2


def test_timeline_lists_events_and_regressions(seeded_url: str) -> None:
    at = _open(PAGES[3])
    frames = [d.value for d in at.dataframe]
    assert any("to_state" in f.columns and "deployed" in set(f["to_state"]) for f in frames)
    assert any("message" in f.columns and f["message"].str.contains("fell 4.0 pp").any() for f in frames)


def test_data_runs_shows_failures_and_report(seeded_url: str) -> None:
    at = _open(PAGES[4])
    metrics = _metrics(at)
    assert metrics["Batches"] == ["4"] and metrics["Failed"] == ["1"]
    assert metrics["Without a DVC hash"] == ["1"]
    assert FAILED_ERROR in at.error[0].value
    assert "Nightly report 2026-11-20" in _text(at)


def test_filters_round_trip_through_the_url(seeded_url: str) -> None:
    at = _open(PAGES[0], {"corruption": "fog", "method": "lpt,bogus"})
    assert at.multiselect(key="f_corruptions").value == ["fog"]
    assert at.multiselect(key="f_methods").value == ["lpt"]
    assert "bogus" in "\n".join(w.value for w in at.sidebar.warning)
    assert _metrics(at)["Mean shifted accuracy"] == ["60.0%"]  # lpt on fog s1 only
    at.multiselect(key="f_corruptions").set_value(["gaussian_noise"]).run()
    assert at.query_params["corruption"] == "gaussian_noise"
    assert _metrics(at)["Mean shifted accuracy"] == ["60.0%"]  # (0.7 + 0.5) / 2
    at.toggle(key="f_demo").set_value(False).run()
    assert at.query_params["demo"] == "0"


def _chart_titles(at: AppTest) -> list[str]:
    """Title and subtitle of every Vega-Lite chart on the page."""
    out = []
    for chart in at.get("vega_lite_chart"):
        title = json.loads(chart.proto.spec).get("title", "")
        out.append(" | ".join([title.get("text", ""), title.get("subtitle", "")]) if isinstance(title, dict) else title)
    return out


def test_monitoring_page_without_estimates_says_how_to_get_them(seeded_url: str) -> None:
    at = _open(PAGES[5])
    assert not at.exception
    assert "No label-free estimates" in _text(at) and "lpt calibrate" in _text(at)


def test_monitoring_page_shows_estimates_tests_prior_and_errors(monitored_url: str) -> None:
    at = _open(PAGES[5])
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="mo_model").value == "lpt_main"  # deployed first
    estimates = at.dataframe[0].value.set_index("batch")
    assert list(estimates.index) == ["production · 11-22"]  # the batch without labels only
    row = estimates.loc["production · 11-22"]
    assert row["ATC est."] == pytest.approx(61.2) and row["images"] == 800  # shown in percent
    assert row["DoC est."] == pytest.approx(63.0)
    assert row["pred. few est."] == pytest.approx(31.2)  # 0.612 - 0.30
    verdicts = at.dataframe[1].value.set_index("batch id")
    assert verdicts.loc[PROD, "verdict"] == "shift detected: BBSD, prompt selection"
    assert verdicts.loc[PROD, "labels"] == "none"
    assert at.selectbox(key="mo_batch").value == PROD  # the newest batch without labels
    tests = at.dataframe[2].value.set_index("test")
    bh = EXPECTED_MONITORING["bh_adjusted"]
    assert tests.loc["BBSD (KS on softmax)", "BH-adjusted p"] == f"{bh[('lpt_main', 'bbsd')]:.2g}" == "0.0016"
    assert tests.loc["BBSD (KS on softmax)", "p-value"] == "0.0004"
    assert tests.loc["query-key cosine", "verdict"] == "no shift detected"
    priors = at.dataframe[3].value.set_index("class")
    assert priors.loc[3, "shot group"] == "few" and priors.loc[3, "change from reference (pp)"] == pytest.approx(10.0)
    errors = at.dataframe[4].value.set_index("model")
    assert errors.loc["lpt_main", "ATC error (pp)"] == pytest.approx(100 * (0.02 + 0.04 + 0.04) / 3)
    assert errors.loc["lpt_main", "labelled batches"] == 3
    titles = _chart_titles(at)
    assert len(titles) == 4
    assert "estimated by ATC (max confidence) on batches without labels" in titles[0]
    assert titles[1].startswith(f"Class prior of {PROD} (estimated from lpt_main's predictions)")
    at.selectbox(key="mo_model").select("ft_base").run()  # no prompt-selection tests for full fine-tuning
    assert list(at.dataframe[2].value["test"]) == ["BBSD (KS on softmax)"]


def test_overview_and_timeline_show_batches_without_labels_as_estimated(monitored_url: str) -> None:
    at = _open(PAGES[0])
    latest = next(t for t in _chart_titles(at) if t.startswith("Latest shifted batches of lpt_main"))
    assert "hollow points, dashed lines: top-1 estimated by ATC (max confidence)" in latest
    at = _open(PAGES[3])
    nightly = at.dataframe[0].value
    assert nightly.loc["2026-11-22", "lpt_main (estimated)"] == pytest.approx(61.2)  # percent
    assert "estimated without labels" in _text(at)
    at = _open(PAGES[4])
    assert _metrics(at)["Without labels"] == ["1"]
