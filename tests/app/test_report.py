"""The nightly report: summary first (deployed model, new batches with their change, batches
without labels with their estimates, shift tests and class prior, deployed vs full fine-tuning,
alerts, gate), one row per model and batch, and every chart an inline SVG with a title and
labelled axes (parsed with the stdlib HTML parser)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from app_fakes import FakeEvaluator, make_artifact, make_batch, result_dict, tree_sha256

from app import gate
from app.db import repository
from app.db.schema import Model, ModelVersion
from app.db.session import session_scope
from app.ingest import ingest
from app.jobs import run_job


class ReportParser(HTMLParser):
    """Collects the headings, the summary's terms, and per SVG chart its title texts and, for each
    axis (Vega's ``aria-roledescription="axis"`` groups), its title."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.summary: dict[str, str] = {}
        self.charts: list[dict] = []
        self.tags: set[str] = set()
        self.external: list[str] = []
        self._stack: list[tuple[str, str, dict | None]] = []  # (tag, class, axis record) of open elements
        self._term: str | None = None
        self._text: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.external += [f"{tag} {k}={v}" for k, v in a.items() if k in ("src", "href") and v]
        axis = {"title": ""} if tag == "g" and a.get("aria-roledescription") == "axis" else None
        if tag == "svg":
            self.charts.append({"title": [], "subtitle": [], "axes": [], "in_figure": any(t == "figure" for t, _, _ in self._stack)})
        self._stack.append((tag, a.get("class") or "", axis))
        if tag in ("h1", "h2", "dt", "dd", "text"):
            self._text = ""

    def _inside(self, cls: str) -> bool:
        return any(cls in c.split() for _, c, _ in self._stack)

    def handle_endtag(self, tag: str) -> None:
        text = (self._text or "").strip() if tag in ("h1", "h2", "dt", "dd", "text") else ""
        if tag == "text" and self.charts:
            chart = self.charts[-1]
            if self._inside("role-title-text"):
                chart["title"].append(text)
            elif self._inside("role-title-subtitle"):
                chart["subtitle"].append(text)
            elif self._inside("role-axis-title"):
                next(ax for _, _, ax in reversed(self._stack) if ax is not None)["title"] += text
        while self._stack:
            open_tag, _, axis = self._stack.pop()
            if axis is not None and self.charts:
                self.charts[-1]["axes"].append(axis)
            if open_tag == tag:
                break
        if tag in ("h1", "h2"):
            self.headings.append(text)
        elif tag == "dt":
            self._term = text
        elif tag == "dd" and self._term:
            old = self.summary.get(self._term)
            self.summary[self._term] = text if old is None else f"{old} | {text}"

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text += data


def _two_nights(settings, engine) -> object:
    """lpt_a deployed, lpt_b candidate, ft full fine-tuning; fog batches on two jobs, lpt_a drops."""
    for name, method in (("lpt_a", "lpt"), ("lpt_b", "lpt"), ("ft", "full_ft")):
        make_artifact(Path(settings.models_dir), name, method)
    ingest(engine, results_dir=None, models_dir=Path(settings.models_dir), hasher=tree_sha256)
    with session_scope(engine) as s:
        gate.promote(s, "lpt_a", "first deployment")
    shifts = Path(settings.shifts_dir)
    make_batch(shifts, "clean", corruption="none", severity=0, kind="clean")
    make_batch(shifts, "fog1", corruption="fog", severity=3)
    first = {("lpt_a", "clean"): 0.9, ("lpt_b", "clean"): 0.85, ("ft", "clean"): 0.92,
             ("lpt_a", "fog1"): 0.80, ("lpt_b", "fog1"): 0.70, ("ft", "fog1"): 0.60}
    run_job(settings, evaluator=FakeEvaluator(first), hasher=tree_sha256, engine=engine)
    make_batch(shifts, "fog2", corruption="fog", severity=3)
    make_batch(shifts, "snow1", corruption="snow", severity=2)
    second = {("lpt_a", "fog2"): 0.70, ("lpt_b", "fog2"): 0.69, ("ft", "fog2"): 0.60,
              ("lpt_a", "snow1"): 0.75, ("lpt_b", "snow1"): 0.70, ("ft", "snow1"): 0.65}
    return run_job(settings, evaluator=FakeEvaluator(second), hasher=tree_sha256, engine=engine)


@pytest.fixture
def report(settings, engine) -> tuple[ReportParser, dict, str]:
    summary = _two_nights(settings, engine)
    html_path = Path(summary.report_path)
    parser = ReportParser()
    parser.feed(html_path.read_text(encoding="utf-8"))
    doc = json.loads(html_path.with_suffix(".json").read_text(encoding="utf-8"))
    return parser, doc, html_path.with_suffix(".md").read_text(encoding="utf-8")


def test_summary_comes_first_and_answers_the_question(report) -> None:
    parser, _, _ = report
    assert parser.headings[0].startswith("Nightly report") and parser.headings[1] == "Summary"
    s = parser.summary
    assert list(s)[:2] == ["Answer", "Deployed"]
    assert s["Answer"].startswith("lpt_a fell significantly on 1 of this job's 2 batch(es)")
    assert "under shift it is above full fine-tuning" in s["Answer"]
    assert s["Deployed"].startswith("lpt_a (LPT, 1,200 trainable parameters)")
    fog, snow = s["New batch"].split(" | ")
    assert fog.startswith("fog s3 (batch fog2, 1000 images): top-1 70.0% [67.0%, 73.0%]; -10.0 pp")
    assert "since fog1 (p = " in fog and fog.endswith("significant DROP")
    assert snow.endswith("first batch of its kind for this model")
    assert s["vs full fine-tuning"].startswith("on this job's 2 shifted batch(es) lpt_a 72.5% vs ft 62.5%, +10.0 pp [")
    assert s["Alerts"] == "4 regression (listed below)"  # overall, many, medium, few of lpt_a on fog2
    assert s["Gate"] == "no change: lpt_a stays deployed (no candidate met the rule)"


def test_every_chart_is_an_inline_svg_with_title_and_labelled_axes(report) -> None:
    parser, _, _ = report
    assert len(parser.charts) >= 3  # deployed vs full FT, this job's batches, per-class accuracy
    for chart in parser.charts:
        assert chart["in_figure"] and chart["title"] and all(chart["title"]), chart
        assert len(chart["axes"]) >= 2 and all(ax["title"] for ax in chart["axes"]), chart
    titles = [" | ".join(c["title"]) for c in parser.charts]  # a faceted chart adds its panel headers
    assert titles[0] == "lpt_a vs ft on the 3 shifted batches both have"
    assert "Top-1 of every model on this job's batches" in titles
    assert "script" not in parser.tags and "img" not in parser.tags and not parser.external


def test_one_row_per_model_and_batch_deployed_first(report) -> None:
    _, doc, md = report
    assert [(r["model"], r["batch"]) for r in doc["rows"]] == [
        ("lpt_a", "fog2"), ("lpt_a", "snow1"), ("lpt_b", "fog2"), ("lpt_b", "snow1"), ("ft", "fog2"), ("ft", "snow1")]
    fog2 = doc["rows"][0]
    assert fog2["kind"] == "measured" and fog2["estimator"] is None
    assert fog2["top1"] == pytest.approx(0.7) and fog2["gap"] == pytest.approx(0.2)  # clean 0.9 - 0.7
    assert fog2["change"] == pytest.approx(-0.1) and fog2["regression"] and fog2["prev_batch"] == "fog1"
    assert doc["subject"]["model"] == "lpt_a" and doc["reference"]["model"] == "ft"
    assert {r["measure"] for r in doc["versus"]["all"]} == {"clean", "shifted", "gap", "many", "medium", "few"}
    assert [c["class_id"] for c in doc["per_class"]] == [0, 0, 1, 1, 2, 2]
    assert md.index("## Summary") < md.index("## Every model on this job's batches")
    assert "| lpt_a | deployed | fog s3 | fog2 | 1000 | 70.0% [67.0%, 73.0%] |" in md


def test_a_store_with_nothing_deployed_says_so(settings, engine) -> None:
    for name, method in (("lpt_a", "lpt"), ("ft", "full_ft")):
        make_artifact(Path(settings.models_dir), name, method)
    ingest(engine, results_dir=None, models_dir=Path(settings.models_dir), hasher=tree_sha256)
    make_batch(Path(settings.shifts_dir), "fog1", corruption="fog", severity=3)
    summary = run_job(settings, evaluator=FakeEvaluator(), hasher=tree_sha256, engine=engine)
    parser = ReportParser()
    parser.feed(Path(summary.report_path).read_text(encoding="utf-8"))
    assert parser.summary["Deployed"].startswith("nothing is deployed; shown: the first candidate, lpt_a")
    assert "lpt models promote" in parser.summary["Gate"]


# --- label-free monitoring: a third job with a batch without labels and a labelled one with estimates ---

PROD_ESTIMATES = {"atc_max_conf": 0.612, "atc_neg_entropy": 0.601, "doc": 0.630, "avg_conf": 0.655}
PROD_PRIOR = [0.2, 0.3, 0.5]  # estimated by BBSE; the reference prior is balanced: the few-shot class 2 grows
TESTS = {"bbsd": (0.21, 0.0004), "prompt_selection": (31.2, 0.002), "key_cosine": (-1.1, 0.27)}


def _monitoring(estimates: dict[str, float], n: int, measured: float | None = None) -> dict:
    """``MonitorResult.to_dict()`` with these overall estimates (predicted-group ones 0.1 apart)."""
    import numpy as np

    from lpt_core.monitoring import (
        DetectorResult,
        Estimate,
        LabelShiftEstimate,
        Measured,
        MonitorResult,
    )

    rows = [Estimate(k, "overall", v, n, "group") for k, v in estimates.items()]
    rows += [Estimate(k, f"predicted:{g}", v + off, n // 3, "group") for g, off in (("many", 0.1), ("few", -0.2))
             for k, v in estimates.items()]
    ref = np.full(3, 1 / 3)
    meas = () if measured is None else (Measured("top1", "overall", measured, n),)
    return MonitorResult(n, 1.2, tuple(rows), meas, tuple(DetectorResult(k, st, p, {}) for k, (st, p) in TESTS.items()),
                         LabelShiftEstimate(np.asarray(PROD_PRIOR), ref, np.asarray(PROD_PRIOR) / ref, 3)).to_dict()


def _batch_values(batch_id: str, labeled: bool, corruption: str) -> dict:
    return {"id": batch_id, "kind": "real" if not labeled else "generated", "source": "test", "dataset": "tiny",
            "corruption": corruption, "severity": 0 if not labeled else 3, "size": 800,
            "content_hash": batch_id.ljust(64, "0"), "path": "", "validation_status": "passed",
            "created_at": repository.utcnow(), "labeled": labeled, "n_labeled": 800 if labeled else 0}


def _third_night(settings, engine) -> int:
    """A job evaluating every model on prod1 (no labels: estimates and tests only) and on fog3
    (labelled: metrics, and estimates with their measured value), then the night's BH step."""
    from app.alerting import monitoring_alerts

    with session_scope(engine) as s:
        job = repository.start_job_run(s, "manual", settings.code_version).id
        for batch_id, labeled in (("prod1", False), ("fog3", True)):
            repository.upsert_batch(s, _batch_values(batch_id, labeled, "unknown" if not labeled else "fog"))
        for version in s.query(ModelVersion).join(Model).order_by(Model.name).all():
            spec = type("Spec", (), {"model_name": version.model.name, "method": version.model.method,
                                     "artifact_path": version.artifact_path, "artifact_sha256": version.artifact_sha256,
                                     "batch_id": "fog3", "code_version": settings.code_version})()
            over = {name: 0.75 + 0.01 * i for i, name in enumerate(PROD_ESTIMATES)}  # ATC 5 pp above the truth
            labelled = {**result_dict(spec, 0.70, n=800), "monitoring": _monitoring(over, 800, measured=0.70)}
            for batch_id, result in (("prod1", {"metrics": [], "monitoring": _monitoring(PROD_ESTIMATES, 800)}),
                                     ("fog3", labelled)):
                run = repository.begin_eval_run(s, version.id, batch_id, settings.code_version, job)
                repository.complete_eval_run(s, run.id, result)
        monitoring_alerts(s, settings, job)
        repository.finish_job_run(s, job, "succeeded", pairs_evaluated=6)
    return job


@pytest.fixture
def monitored(settings, engine) -> tuple[ReportParser, dict, str]:
    from app.report import write_report

    _two_nights(settings, engine)
    paths = write_report(engine, settings, _third_night(settings, engine)).paths
    parser = ReportParser()
    parser.feed(paths["html"].read_text(encoding="utf-8"))
    return parser, json.loads(paths["json"].read_text(encoding="utf-8")), paths["html"].read_text(encoding="utf-8")


def test_a_batch_without_labels_shows_its_estimate_tests_and_prior(monitored) -> None:
    parser, doc, page = monitored
    s = parser.summary
    assert s["Answer"].startswith("lpt_a holds up: no significant drop on this job's 1 labelled batch(es); "
                                  "1 batch(es) without labels: estimated top-1 61.2% (ATC), shift detected on 1")
    assert s["Unlabeled batch"].startswith("production (shift unknown) (batch prod1, 800 images, no labels): "
                                           "estimated top-1 61.2% (ATC; DoC 63.0%); predicted-group estimates "
                                           "(ATC): many 71.2%, few 41.2%; no test of a change: without labels")
    # 9 tests (3 models x 3 detectors on prod1... and fog3): BH-adjusted p of bbsd 0.0004 * 18 / 6 ranks
    assert s["Shift tests"].startswith("prod1: shift DETECTED by BBSD (KS on softmax) p = 0.0004 (BH-adjusted 0.0012)")
    assert "not by query-key cosine p = 0.27 (BH-adjusted 0.27)" in s["Shift tests"]
    assert s["Class prior"].startswith("prod1 (BBSE, from lpt_a's predictions): growing class 2 (few-shot, 10 training "
                                       "images) 33.3% → 50.0% (+16.7 pp); shrinking class 0 (many-shot, 500 training "
                                       "images) 33.3% → 20.0% (-13.3 pp), class 1")
    assert s["Estimates vs labels"].startswith("mean absolute error against the measured top-1 on this job's 1 "
                                               "labelled batch(es): ATC 5.0 pp")
    est = [r for r in doc["rows"] if r["kind"] == "estimated"]
    assert [(r["model"], r["batch"], r["estimator"]) for r in est] == [
        ("lpt_a", "prod1", "atc_max_conf"), ("lpt_b", "prod1", "atc_max_conf"), ("ft", "prod1", "atc_max_conf")]
    assert est[0]["top1"] == pytest.approx(0.612) and est[0]["ci_low"] is None and "change" not in est[0]
    assert "est. 61.2% (ATC)" in page and "class=\"est\"" in page  # the compact table marks estimated values


def test_monitoring_charts_are_svgs_with_labelled_axes(monitored) -> None:
    parser, _, page = monitored
    for chart in parser.charts:
        assert chart["in_figure"] and chart["title"] and all(chart["title"]), chart
        assert len(chart["axes"]) >= 2 and all(ax["title"] for ax in chart["axes"]), chart
    titles = [" | ".join(c["title"] + c["subtitle"]) for c in parser.charts]
    batches = next(t for t in titles if t.startswith("Top-1 of every model on this job's batches"))
    assert "estimated by ATC (max confidence) on batches without labels" in batches
    prior = next(t for t in titles if "Class prior of lpt_a's batches (estimated)" in t)
    assert prior.startswith("production (shift unknown) (prod1), no labels")  # the first panel: no labels
    assert any(t.startswith("Estimated against measured top-1 of lpt_a on the 1 labelled batch(es)") for t in titles)
    axes = {ax["title"] for c in parser.charts for ax in c["axes"]}
    assert {"estimated top-1 (label-free)", "measured top-1 (labelled images)", "share of the images"} <= axes
    assert "script" not in parser.tags and not parser.external and "<script" not in page
