"""The nightly job with a deterministic fake evaluator, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from app_fakes import FakeEvaluator, make_artifact, make_batch, tree_sha256
from sqlalchemy import select

from app.db import repository as repo
from app.db.schema import EvalRun, Metric
from app.db.session import session_scope
from app.ingest import ingest
from app.jobs import run_job


def _setup(settings, engine, n_models: int = 2, n_batches: int = 2) -> None:
    models = Path(settings.models_dir)
    methods = ["lpt", "full_ft", "vpt", "linear"]
    for i in range(n_models):
        make_artifact(models, f"m{i:02d}", methods[i % len(methods)])
    for j in range(n_batches):
        make_batch(Path(settings.shifts_dir), f"b{j:02d}", severity=1 + j % 5)
    ingest(engine, results_dir=None, models_dir=models, shift_dirs=[], hasher=tree_sha256)


def _job(settings, engine, evaluator=None):
    return run_job(settings, evaluator=evaluator or FakeEvaluator(), hasher=tree_sha256, engine=engine)


def test_job_evaluates_exactly_the_new_pairs(settings, engine) -> None:
    _setup(settings, engine)
    first_eval = FakeEvaluator()
    first = _job(settings, engine, first_eval)
    assert (first.status, first.pairs_evaluated, sorted(first.batches_added)) == ("succeeded", 4, ["b00", "b01"])
    assert Path(first.report_path).is_file()
    assert len(first.pair_seconds) == 4 and all(0 <= t <= first.seconds for t in first.pair_seconds)
    again = FakeEvaluator()
    second = _job(settings, engine, again)
    assert (second.pairs_evaluated, again.calls, second.report_path, second.pair_seconds) == (0, [], None, [])
    make_batch(Path(settings.shifts_dir), "b02")
    third_eval = FakeEvaluator()
    third = _job(settings, engine, third_eval)
    assert sorted(third_eval.calls) == [("m00", "b02"), ("m01", "b02")]
    assert third.batches_added == ["b02"]


def test_a_new_code_version_reevaluates_every_pair(settings, engine) -> None:
    _setup(settings, engine, 1, 2)
    _job(settings, engine)
    ev = FakeEvaluator()
    assert _job(settings.replace(code_version="test-2"), engine, ev).pairs_evaluated == 2
    with session_scope(engine) as s:
        assert repo.count_rows(s)["eval_runs"] == 4


def test_a_failing_pair_is_recorded_without_metrics_and_retried(settings, engine) -> None:
    _setup(settings, engine, 2, 2)
    summary = _job(settings, engine, FakeEvaluator(fail_on="b01"))
    assert (summary.status, summary.pairs_evaluated, summary.pairs_failed) == ("failed", 2, 2)
    with session_scope(engine) as s:
        failed = s.scalars(select(EvalRun).where(EvalRun.status == "failed")).all()
        assert len(failed) == 2 and all("injected failure on b01" in r.error for r in failed)
        assert not s.scalars(select(Metric).where(Metric.run_id.in_([r.id for r in failed]))).all()
        assert repo.count_rows(s)["alerts"] == 2
    retry = FakeEvaluator()
    assert _job(settings, engine, retry).pairs_evaluated == 2
    assert sorted(retry.calls) == [("m00", "b01"), ("m01", "b01")]
    with session_scope(engine) as s:
        assert {r.status for r in s.scalars(select(EvalRun))} == {"succeeded"}
        assert repo.count_rows(s)["eval_runs"] == 4


@pytest.mark.parametrize("damage", ["tamper", "delete"])
def test_missing_or_tampered_artifact_is_refused(settings, engine, damage: str) -> None:
    _setup(settings, engine, 2, 1)
    art = Path(settings.models_dir) / "m00"
    if damage == "tamper":
        (art / "tensors.bin").write_bytes(b"evil")
    else:
        shutil.rmtree(art)
    ev = FakeEvaluator()
    summary = _job(settings, engine, ev)
    assert ev.calls == [("m01", "b00")], "the damaged artifact must not reach the evaluator"
    assert summary.pairs_failed == 1
    with session_scope(engine) as s:
        run = s.scalars(select(EvalRun).where(EvalRun.status == "failed")).one()
        assert ("tampered" if damage == "tamper" else "missing") in run.error


def test_a_bad_batch_is_refused_before_any_write(settings, engine) -> None:
    _setup(settings, engine, 1, 0)
    make_batch(Path(settings.shifts_dir), "bad", success=False)
    broken = make_batch(Path(settings.shifts_dir), "broken")
    meta = json.loads((broken / "batch.json").read_text())
    meta["severity"] = 9
    (broken / "batch.json").write_text(json.dumps(meta))
    summary = _job(settings, engine)
    assert set(summary.batches_refused) == {"bad", "broken"}
    assert "validation did not succeed" in summary.batches_refused["bad"]
    assert "severity 9" in summary.batches_refused["broken"]
    with session_scope(engine) as s:
        counts = repo.count_rows(s)
        assert (counts["shift_batches"], counts["eval_runs"], counts["metrics"]) == (0, 0, 0)


@pytest.mark.slow
def test_hundreds_of_pairs_are_recorded_without_loss(settings, engine) -> None:
    """20 models x 15 batches = 300 pairs, one transaction pair each, on both backends."""
    _setup(settings, engine, 20, 15)
    summary = _job(settings, engine)
    assert (summary.pairs_evaluated, summary.pairs_failed) == (300, 0)
    with session_scope(engine) as s:
        counts = repo.count_rows(s)
        top1 = repo.scores(s, groups=("overall",))
    assert counts["eval_runs"] == 300
    assert counts["metrics"] == 300 * 8  # 4 top1 groups + error + 3 per-class
    assert len({(r.model, r.batch_id) for r in top1}) == 300
