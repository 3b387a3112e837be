"""The Ray executor (LPT_EXECUTOR=ray) on a local Ray with 2 CPUs: the same pairs and identical
metrics as the local executor; an actor killed mid-job leaves no pair doubled and the next job
completes the rest; each worker builds each backbone once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='ray is not installed (pip install -e ".[ray]"); the Ray executor is untested')

from app_fakes import FakeEvaluator, make_artifact, make_batch, tree_sha256  # noqa: E402
from sqlalchemy import select  # noqa: E402
from tiny_world import BATCHES, MODELS, build_world, metric_values, night  # noqa: E402

from app.db import repository as repo  # noqa: E402
from app.db.schema import EvalRun  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.ingest import ingest  # noqa: E402
from app.jobs import run_job  # noqa: E402

pytestmark = pytest.mark.ray
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray for the module (2 CPUs); its workers import the test doubles from here."""
    path = os.pathsep.join([str(HERE), str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_world(tmp_path_factory.mktemp("world"))


def test_ray_evaluates_the_same_pairs_with_identical_metrics(world: Path, tmp_path: Path) -> None:
    local, e_local = night(world, tmp_path / "local")
    remote, e_ray = night(world, tmp_path / "ray", executor="ray", executor_workers=2)
    pairs = len(MODELS) * BATCHES
    assert (remote.status, remote.executor) == ("succeeded", "ray")
    assert (remote.pairs_evaluated, remote.pairs_failed) == (pairs, 0)
    assert metric_values(e_ray) == metric_values(e_local)
    assert len(remote.workers) == 2 and sum(w["pairs"] for w in remote.workers) == pairs
    for w in remote.workers:  # each worker builds each backbone at most once (there are two)
        assert w["backbone_builds"] <= 2 and w["fingerprints"] == w["backbone_builds"]
        assert w["batch_reads"] <= BATCHES


def _fake_night(settings, engine, n_models: int = 2, n_batches: int = 4) -> None:
    for i in range(n_models):
        make_artifact(Path(settings.models_dir), f"m{i:02d}", "lpt")
    for j in range(n_batches):
        make_batch(Path(settings.shifts_dir), f"b{j:02d}")
    ingest(engine, results_dir=None, models_dir=Path(settings.models_dir), shift_dirs=[], hasher=tree_sha256)


def test_a_killed_actor_leaves_no_pair_doubled_and_the_next_job_completes(settings, engine, tmp_path) -> None:
    _fake_night(settings, engine)
    ray_settings = settings.replace(executor="ray", executor_workers=2)
    killer = FakeEvaluator(kill_on="b01", kill_marker=tmp_path / "killed")
    first = run_job(ray_settings, evaluator=killer, hasher=tree_sha256, engine=engine)
    assert (tmp_path / "killed").exists(), "the actor evaluating b01 was SIGKILLed"
    assert (first.status, first.pairs_evaluated, first.pairs_failed) == ("failed", 6, 2), "b01's unit is lost"
    with session_scope(engine) as s:
        runs = s.scalars(select(EvalRun)).all()
        assert len(runs) == 8 and not [r for r in runs if r.status == "running"]
        lost = [r for r in runs if r.status == "failed"]
        assert {r.batch_id for r in lost} == {"b01"} and all("Ray worker lost" in r.error for r in lost)
        assert repo.count_rows(s)["metrics"] == 6 * 8
    second = run_job(ray_settings, evaluator=FakeEvaluator(), hasher=tree_sha256, engine=engine)
    assert (second.status, second.pairs_evaluated, second.pairs_failed) == ("succeeded", 2, 0)
    with session_scope(engine) as s:
        counts = repo.count_rows(s)
        assert (counts["eval_runs"], counts["metrics"]) == (8, 8 * 8), "no pair doubled"
        assert {r.status for r in s.scalars(select(EvalRun))} == {"succeeded"}


def test_an_evaluator_error_fails_only_its_pair_on_ray(settings, engine) -> None:
    _fake_night(settings, engine, 2, 2)
    summary = run_job(settings.replace(executor="ray", executor_workers=2), evaluator=FakeEvaluator(fail_on="b01"),
                      hasher=tree_sha256, engine=engine)  # fmt: skip
    assert (summary.pairs_evaluated, summary.pairs_failed) == (2, 2)
    with session_scope(engine) as s:
        failed = s.scalars(select(EvalRun).where(EvalRun.status == "failed")).all()
        assert all("injected failure on b01" in r.error for r in failed) and repo.count_rows(s)["alerts"] == 2
