"""Deployment gate (manual and automatic), significance of regressions, and the report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_fakes import FakeEvaluator, make_artifact, make_batch, tree_sha256
from sqlalchemy import select

from app import gate
from app.db import registry
from app.db import repository as repo
from app.db.schema import Alert, ModelEvent
from app.db.session import session_scope
from app.ingest import ingest
from app.jobs import run_job
from app.stats import is_significant_drop, two_proportion_change


def test_two_proportion_z_test_matches_hand_computation() -> None:
    # p1 = 0.80, p2 = 0.75, n = 1000 each: pooled 0.775, se = sqrt(.775*.225*2/1000) = 0.018675, z = -2.677
    change = two_proportion_change(0.80, 1000, 0.75, 1000, alpha=0.05)
    assert change.z == pytest.approx(-2.6774, abs=1e-3)
    assert change.p_value == pytest.approx(0.00742, abs=2e-4)
    assert change.ci_low < -0.05 < change.ci_high < 0
    assert is_significant_drop(change, 0.05)
    small = two_proportion_change(0.80, 50, 0.75, 50)
    assert not is_significant_drop(small, 0.05), "the same drop on 50 images is not significant"
    with pytest.raises(ValueError, match="sample size"):
        two_proportion_change(0.5, 0, 0.5, 10)


def _world(settings, engine) -> None:
    for name, method in (("lpt_a", "lpt"), ("lpt_b", "lpt"), ("ft", "full_ft")):
        make_artifact(Path(settings.models_dir), name, method)
    ingest(engine, results_dir=None, models_dir=Path(settings.models_dir), hasher=tree_sha256)
    make_batch(Path(settings.shifts_dir), "clean", corruption="none", severity=0, kind="clean")
    make_batch(Path(settings.shifts_dir), "fog1", corruption="fog", severity=3)


def _run(settings, engine, acc: dict) -> object:
    return run_job(settings, evaluator=FakeEvaluator(acc), hasher=tree_sha256, engine=engine)


def test_manual_promote_and_rollback_record_events_and_alerts(settings, engine) -> None:
    _world(settings, engine)
    with session_scope(engine) as s:
        gate.promote(s, "lpt_a", "first deployment")
        gate.promote(s, "lpt_b", "better on fog")
        assert [v.label for v in registry.list_versions(s, ["deployed"])] == ["lpt_b@1"]
        assert gate.rollback(s, "fog regression").startswith("rolled back lpt_b@1 -> lpt_a@1")
        assert [v.label for v in registry.list_versions(s, ["deployed"])] == ["lpt_a@1"]
        events = [(e.from_state, e.to_state) for e in s.scalars(select(ModelEvent).order_by(ModelEvent.id))][3:]
        assert events == [("candidate", "deployed"), ("deployed", "retired"), ("candidate", "deployed"),
                          ("deployed", "retired"), ("retired", "deployed")]
        assert [a.kind for a in s.scalars(select(Alert))] == ["promotion", "promotion", "rollback"]
    with pytest.raises(ValueError, match="non-empty reason"), session_scope(engine) as s:
        gate.promote(s, "lpt_b", " ")
    with pytest.raises(KeyError, match="unknown model 'nope'"), session_scope(engine) as s:
        gate.promote(s, "nope", "x")


@pytest.mark.parametrize(
    "b_shift, b_clean, promoted", [(0.80, 0.89, True), (0.80, 0.85, False), (0.69, 0.90, False), (0.705, 0.90, False)]
)
def test_auto_gate_rule(settings, engine, b_shift: float, b_clean: float, promoted: bool) -> None:
    """lpt_b replaces lpt_a only if it is significantly better under shift and loses <= 0.01 clean accuracy
    (+0.005 on 1,000 images is not significant)."""
    _world(settings, engine)
    with session_scope(engine) as s:
        gate.promote(s, "lpt_a", "first deployment")
    acc = {("lpt_a", "clean"): 0.90, ("lpt_a", "fog1"): 0.70, ("lpt_b", "clean"): b_clean,
           ("lpt_b", "fog1"): b_shift, ("ft", "clean"): 0.92, ("ft", "fog1"): 0.60}
    summary = _run(settings, engine, acc)
    assert bool(summary.gate_changes) == promoted
    with session_scope(engine) as s:
        deployed = gate.deployed_model(s).model.name
        assert deployed == ("lpt_b" if promoted else "lpt_a")
        if promoted:
            event = s.scalars(select(ModelEvent).order_by(ModelEvent.id.desc())).first()
            evidence = json.loads(event.evidence_json)
            assert event.reason.startswith("automatic gate") and evidence["batches"] == ["fog1"]


def test_report_flags_only_significant_regressions(settings, engine) -> None:
    _world(settings, engine)
    first = {("lpt_a", "fog1"): 0.80, ("lpt_b", "fog1"): 0.80, ("ft", "fog1"): 0.60}
    _run(settings, engine, first)
    make_batch(Path(settings.shifts_dir), "fog2", corruption="fog", severity=3)
    second = {("lpt_a", "fog2"): 0.70, ("lpt_b", "fog2"): 0.79, ("ft", "fog2"): 0.60}
    summary = _run(settings, engine, second)
    doc = json.loads(Path(summary.report_path).with_suffix(".json").read_text())
    flagged = {(r["model"], r["group"]) for r in doc["regressions"]}
    assert flagged == {("lpt_a", g) for g in ("overall", "many", "medium", "few")}
    row = next(r for r in doc["rows"] if r["model"] == "lpt_b")  # one row per model and batch
    assert row["prev_batch"] == "fog1" and row["change"] == pytest.approx(-0.01) and not row["regression"]
    assert {r["model"] for r in doc["rows"]} == {"lpt_a", "lpt_b", "ft"} and len(doc["rows"]) == 3
    lpt_a = next(r for r in doc["rows"] if r["model"] == "lpt_a")
    assert lpt_a["regression"] and lpt_a["regression_groups"] == ["overall", "many", "medium", "few"]
    assert lpt_a["gap"] is not None
    with session_scope(engine) as s:
        kinds = [a.kind for a in repo.alerts_for_job(s, summary.job_run_id)]
    assert kinds.count("regression") == 4
    html = Path(summary.report_path).read_text()
    md = Path(summary.report_path).with_suffix(".md").read_text()
    assert "<svg" in html and "<script" not in html and "src=" not in html
    assert "## Cost per method" in md and "| lpt |" in md
