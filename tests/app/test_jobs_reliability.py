"""Process-level faults: a job killed with SIGKILL mid-evaluation, and two concurrent jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from app_fakes import FakeEvaluator, make_artifact, make_batch, tree_sha256
from sqlalchemy import select

from app.db import repository as repo
from app.db.schema import EvalRun, JobRun
from app.db.session import session_scope
from app.ingest import ingest
from app.jobs import JobLockedError, run_job

FAKES = Path(__file__).with_name("app_fakes.py")
ROOT = Path(__file__).resolve().parents[2]


def _setup(settings, engine) -> None:
    for i, method in enumerate(("lpt", "full_ft")):
        make_artifact(Path(settings.models_dir), f"m{i:02d}", method)
    for j in range(3):
        make_batch(Path(settings.shifts_dir), f"b{j:02d}")
    ingest(engine, results_dir=None, models_dir=Path(settings.models_dir), hasher=tree_sha256)


def _spawn(db_url: str, root: Path, sleep_on: str) -> subprocess.Popen:
    """Start a job in another process whose evaluator sleeps on ``sleep_on``; wait until it does."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, str(FAKES), "run-job", db_url, str(root), sleep_on],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if line.startswith("SLEEPING"):
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"the job process never reached the evaluation (exit {proc.wait()})")


def test_sigkill_mid_evaluation_then_rerun_leaves_one_complete_set(settings, engine, db_url, tmp_path) -> None:
    _setup(settings, engine)
    proc = _spawn(db_url, tmp_path, "b01")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with session_scope(engine) as s:
        stuck = s.scalars(select(EvalRun).where(EvalRun.status == "running")).all()
        assert [(r.batch_id) for r in stuck] == ["b01"], "the killed pair is left running, nothing else"
        assert repo.count_rows(s)["metrics"] == 2 * 8, "only the two b00 pairs have metrics"
    summary = run_job(settings, evaluator=FakeEvaluator(), hasher=tree_sha256, engine=engine)
    assert (summary.pairs_evaluated, summary.pairs_failed) == (4, 0)
    with session_scope(engine) as s:
        counts = repo.count_rows(s)
        assert (counts["eval_runs"], counts["metrics"]) == (6, 6 * 8)
        assert {r.status for r in s.scalars(select(EvalRun))} == {"succeeded"}
        killed_job = s.scalars(select(JobRun).order_by(JobRun.id)).all()[0]
        assert killed_job.status == "failed" and "interrupted" in killed_job.error


def test_a_second_concurrent_job_is_refused(settings, engine, db_url, tmp_path) -> None:
    _setup(settings, engine)
    proc = _spawn(db_url, tmp_path, "b00")
    try:
        with pytest.raises(JobLockedError, match="another lpt job is running"):
            run_job(settings, evaluator=FakeEvaluator(), hasher=tree_sha256, engine=engine)
        with session_scope(engine) as s:
            runs = repo.recent_job_runs(s)
            assert [r.status for r in runs] == ["skipped", "running"]
            assert repo.count_rows(s)["metrics"] == 0
    finally:
        proc.kill()
        proc.wait(timeout=30)
    summary = run_job(settings, evaluator=FakeEvaluator(), hasher=tree_sha256, engine=engine)
    assert summary.pairs_evaluated == 6, "once the holder is gone, the lock is free again"
