"""The nightly report: summary first (deployed model, new batches with their change, deployed vs
full fine-tuning, alerts, gate), one row per model and batch, and every chart an inline SVG with a
title and labelled axes (parsed with the stdlib HTML parser)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app import gate
from app.db.session import session_scope
from app.ingest import ingest
from app.jobs import run_job
from app_fakes import FakeEvaluator, make_artifact, make_batch, tree_sha256


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
            self.charts.append({"title": [], "axes": [], "in_figure": any(t == "figure" for t, _, _ in self._stack)})
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
