"""The demo seeder: labelled, resampled, back-dated, idempotent, and refusing an empty store."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dash_store import ACC, EXPECTED, seed_store
from sqlalchemy import select

from app.db import views
from app.db.schema import EvalRun, JobRun, ShiftBatch
from app.db.session import init_db, make_engine, session_scope
from dashboards.seed_demo import DEMO_CODE_VERSION, main, resample, seed_demo, wilson

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(tmp_path: Path):
    eng = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    seed_store(eng)
    yield eng
    eng.dispose()


def test_seeds_labelled_backdated_nights(engine) -> None:
    summary = seed_demo(engine, nights=3, per_night=2, seed=1, now=NOW)
    assert summary.nights == ["2026-11-25", "2026-11-26", "2026-11-27"]
    assert len(summary.batches_added) == 6 and summary.runs_added == 12  # 2 models per batch
    with session_scope(engine) as s:
        demo = s.scalars(select(ShiftBatch).where(ShiftBatch.id.like("demo-%"))).all()
        assert {b.source for b in demo} == {"demo-seed"} and {b.path for b in demo} == {""}
        assert all(b.dvc_hash is None and b.corruption != "none" for b in demo)
        runs = s.scalars(select(EvalRun).where(EvalRun.code_version == DEMO_CODE_VERSION)).all()
        assert {r.started_at.date().isoformat() for r in runs} == set(summary.nights)
        assert {r.device for r in runs} == {"demo"}
        jobs = s.scalars(select(JobRun).where(JobRun.code_version == DEMO_CODE_VERSION)).all()
        assert sorted(j.started_at.date().isoformat() for j in jobs) == summary.nights


def test_resampled_values_stay_near_the_real_ones(engine) -> None:
    seed_demo(engine, nights=4, per_night=3, seed=2, now=NOW)
    rows = views.results(engine, views.ResultFilter())
    demo = rows[rows["is_demo"]]
    assert not demo.empty
    for row in demo.itertuples():
        real = ACC[row.model][(row.corruption, row.severity)]
        sd = np.sqrt(real * (1 - real) / row.n)
        assert abs(row.value - real) < 5 * sd
        assert row.ci_low <= row.value <= row.ci_high
        assert (row.value * row.n) == pytest.approx(round(row.value * row.n))  # k / n


def test_rerun_adds_nothing_and_demo_can_be_excluded(engine) -> None:
    first = seed_demo(engine, nights=2, per_night=2, seed=3, now=NOW)
    counts = views.store_counts(engine)
    again = seed_demo(engine, nights=2, per_night=2, seed=3, now=NOW)
    assert first.runs_added == 8 and again.runs_added == 0 and not again.batches_added
    assert views.store_counts(engine) == counts
    real_only = views.model_overview(engine, views.ResultFilter(include_demo=False))
    assert real_only.set_index("model").loc["lpt_main", "shifted_acc"] == pytest.approx(0.60)
    assert views.model_overview(engine, views.ResultFilter())["demo_batches"].sum() > 0
    assert f"{100 * real_only.set_index('model').loc['ft_base', 'gap']:.1f}%" == EXPECTED["ft_base"]["gap"]


def test_refuses_an_empty_store(tmp_path: Path, capsys) -> None:
    eng = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    init_db(eng)
    with pytest.raises(RuntimeError, match="dvc repro.*lpt ingest"):
        seed_demo(eng, nights=1, now=NOW)
    assert main(["--db-url", f"sqlite:///{tmp_path / 'empty.db'}", "--nights", "1"]) == 2
    assert "lpt ingest" in capsys.readouterr().err


def test_rejects_bad_arguments(engine) -> None:
    with pytest.raises(ValueError, match="nights must be >= 1, got 0"):
        seed_demo(engine, nights=0, now=NOW)
    with pytest.raises(ValueError, match="per_night must be >= 1, got 0"):
        seed_demo(engine, per_night=0, now=NOW)


def test_wilson_and_resample() -> None:
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k=11, n=10"):
        wilson(11, 10)
    rows = pd.DataFrame({"grp": ["overall", "class:0"], "value": [0.5, 1.0], "n": [100, 7]})
    out = resample(rows, np.random.default_rng(0))
    assert [m["group"] for m in out] == ["overall", "class:0"]
    assert out[1]["value"] == 1.0  # Binomial(n, 1) is n


def test_registers_lpt_demo_seed(engine, tmp_path: Path, capsys) -> None:
    import argparse

    from dashboards.seed_demo import register

    parser = argparse.ArgumentParser(prog="lpt")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["demo", "seed", "--nights", "2", "--per-night", "1",
                              "--db-url", str(engine.url)])
    assert args.func(args) == 0
    assert "demo data, not measurements" in capsys.readouterr().out
    assert views.model_overview(engine, views.ResultFilter())["demo_batches"].tolist() == [2, 2]
