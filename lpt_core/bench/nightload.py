"""A night at load: tens of prompt sets x tens of shift batches through ``lpt scheduler run-now``.

What it shows, per store backend (SQLite; PostgreSQL when ``LPT_BENCH_PG_URL`` names a server)
and executor (``LPT_EXECUTOR=local``; ``ray`` when Ray is installed):

- no pair lost or doubled: the store's eval runs equal the pairs, every job's failures are 0, a
  last job finds nothing left, and the jobs together evaluated each pair once;
- job time against pairs: jobs of growing size (batches added between them), fitted as
  ``job seconds = fixed + pairs x per-pair``;
- the per-pair fixed cost, all but the forward passes (artifact and backbone loads, batch reads,
  metrics, result file, SQL), on a smaller night with ``LPT_EVAL_REUSE=0`` (every pair loads its
  artifact, backbone and batch afresh: the flow before grouping) and with grouping.

Driven through the service's CLI in subprocesses (``lpt_core`` never imports ``app``); models
are real tiny LPT artifacts on one backbone, batches real shift batches. A PostgreSQL run gets a
scratch schema (created and dropped with psycopg, as the service tests do).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lpt_core.bench.nightly import _add_models, _run, _world
from lpt_core.bench.report import BenchRow, error_row

PG_ENV = "LPT_BENCH_PG_URL"


@dataclass(frozen=True)
class LoadPlan:
    """Sizes of one load run."""

    models: int
    batch_steps: tuple[int, ...]  # batches added before each evaluating job
    batch_size: int
    grouping_models: int  # the before/after-grouping night: models x batches
    grouping_batches: int


FULL = LoadPlan(50, (5, 10, 25), 16, 50, 4)
QUICK = LoadPlan(3, (1, 1, 2), 8, 3, 2)


@dataclass(frozen=True)
class LoadJob:
    """One evaluating job: pairs, the job's seconds, its per-pair seconds and forward seconds."""

    pairs: int
    failed: int
    job_s: float
    pair_s: float  # sum of the job's per-pair seconds (JobSummary.pair_seconds)
    forward_s: float  # sum of the results' eval_seconds (preprocessing + forward passes)
    workers: tuple[dict, ...] = ()
    pair_list: tuple[float, ...] = ()  # each pair's seconds, in order
    forward_list: tuple[float, ...] = ()  # each result's eval_seconds

    def fixed_per_pair(self) -> float:
        """Median pair seconds after the job's first (which also pays imports) minus the median
        forward seconds: what a pair costs beyond its forward passes."""
        import statistics

        later = self.pair_list[1:] or self.pair_list
        return statistics.median(later) - statistics.median(self.forward_list or (0.0,))


@dataclass(frozen=True)
class LoadNight:
    """A whole load run: its jobs, the idle job after them, the store's counts, result files."""

    jobs: tuple[LoadJob, ...]
    idle_pairs: int
    counts: dict
    result_files: int
    expected_pairs: int


def pg_url_for_schema(base: str, schema: str) -> str:
    """``base`` with ``search_path`` set to ``schema`` (the service's own URL options)."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def scratch_store(backend: str, root: Path) -> Iterator[str]:
    """A fresh store URL: a SQLite file under ``root``, or a scratch PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite:///{root / 'store.db'}"
        return
    import psycopg

    base = os.environ[PG_ENV]
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    dsn = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield pg_url_for_schema(base, schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _add_batches(prepared: Path, root: Path, first: int, count: int, size: int, seed: int) -> list[str]:
    """``count`` generated shift batches dropped into the shifts root; returns their ids."""
    from lpt_core.data.batches import make_batch

    ids = []
    for i in range(first, first + count):
        staging = root / "staging" / str(i)
        batch = make_batch(prepared, staging, "gaussian_noise", 1 + i % 5, size, seed + i, use_dvc=False)
        shutil.move(str(batch.path), str(root / "shifts" / batch.path.name))
        ids.append(batch.id)
    return ids


def _forward_seconds(results: Path, batch_ids: list[str]) -> list[float]:
    """The eval_seconds of the job's result files (those of its batches)."""
    wanted = set(batch_ids)
    return [float(json.loads(f.read_text()).get("run", {}).get("eval_seconds", 0.0))
            for f in results.glob("*/*.json") if f.stem in wanted]


def run_night(plan_models: int, steps: tuple[int, ...], size: int, db_url: str, env_extra: dict[str, str],
              root: Path, seed: int = 0) -> LoadNight:  # fmt: skip
    """Models, then batches step by step with a ``run-now`` after each; an idle run; the counts."""
    prepared, env = _world(root, size, seed, balanced=True)
    env.update(env_extra, LPT_DB_URL=db_url)
    _add_models(root, 0, plan_models, seed, env)
    jobs, have = [], 0
    for step in steps:
        ids = _add_batches(prepared, root, have, step, size, seed)
        have += step
        out, _ = _run(["scheduler", "run-now"], env)
        forward = _forward_seconds(Path(env["LPT_REPORTS_DIR"]) / "results", ids)
        jobs.append(LoadJob(out["pairs_evaluated"] + out["pairs_failed"], out["pairs_failed"], out["seconds"],
                            sum(out["pair_seconds"]), sum(forward), tuple(out.get("workers", [])),
                            tuple(out["pair_seconds"]), tuple(forward)))
    idle, _ = _run(["scheduler", "run-now"], env)
    counts, _ = _run(["db", "counts"], env)
    files = len(list((Path(env["LPT_REPORTS_DIR"]) / "results").glob("*/*.json")))
    return LoadNight(tuple(jobs), idle["pairs_evaluated"] + idle["pairs_failed"], counts, files, plan_models * have)


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares ``y = a + b x``: (a, b, largest relative residual)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    a = my - b * mx
    worst = max(abs(y - (a + b * x)) / y for x, y in zip(xs, ys) if y > 0)
    return a, b, worst


def night_rows(night: LoadNight, label: str, command: str) -> list[BenchRow]:
    """Rows of one load run: accounting, per-job time, the linear fit and throughput."""
    sec = f"nightly job at load ({label})"
    ran = sum(j.pairs for j in night.jobs)
    failed = sum(j.failed for j in night.jobs)
    runs = night.counts.get("eval_runs", -1)
    per_pair_metrics = night.counts.get("metrics", 0) / runs if runs > 0 else 0.0
    lost = night.expected_pairs - (runs - failed)  # pairs without a succeeded run
    doubled = max(0, (ran - failed) - night.expected_pairs)  # succeeded evaluations beyond one per pair
    rows = [BenchRow(sec, "pairs recorded (eval runs in the store)", runs, "pairs",
                     f"expected {night.expected_pairs}; lost {lost}, doubled {doubled} "
                     f"(jobs evaluated {ran}, failed {failed}); idle job after: {night.idle_pairs} pairs left; "
                     f"{night.result_files} result files; {per_pair_metrics:.4g} metric rows per pair", command)]
    for j in night.jobs:
        rows.append(BenchRow(sec, f"job evaluating {j.pairs} pairs", j.job_s, "s (job)",
                             f"{1e3 * j.job_s / j.pairs:.1f} ms/pair; forward passes {j.forward_s:.2f} s; "
                             f"all but forward {1e3 * (j.job_s - j.forward_s) / j.pairs:.1f} ms/pair", command))
    if len(night.jobs) >= 2:
        a, b, worst = fit_line([j.pairs for j in night.jobs], [j.job_s for j in night.jobs])
        rows.append(BenchRow(sec, "job seconds = fixed + pairs x per-pair (fit)", b * 1e3, "ms/pair",
                             f"fixed {a:.2f} s; largest deviation from the line {worst:.1%} over "
                             f"{len(night.jobs)} jobs of {[j.pairs for j in night.jobs]} pairs", command))
    total = sum(j.job_s for j in night.jobs)
    rows.append(BenchRow(sec, "throughput over the night", ran / total if total else 0.0, "pairs/s",
                         f"{ran} pairs in {total:.1f} s of job time", command))
    return rows


def grouping_rows(before: LoadJob, after: LoadJob, label: str, command: str) -> list[BenchRow]:
    """The per-pair fixed cost (:meth:`LoadJob.fixed_per_pair`) without and with grouping."""
    import statistics

    sec = f"per-pair fixed cost, all but the forward passes ({label})"
    out = []
    for name, job in (("before grouping (LPT_EVAL_REUSE=0: per-pair loading)", before),
                      ("after grouping (LPT_EVAL_REUSE=1, default)", after)):
        w = job.workers[0] if job.workers else {}
        out.append(BenchRow(sec, name, job.fixed_per_pair() * 1e3, "ms/pair",
                            f"median of {job.pairs - 1} pairs after the first: pair "
                            f"{1e3 * statistics.median(job.pair_list[1:] or job.pair_list):.1f} ms - forward "
                            f"{1e3 * statistics.median(job.forward_list or (0.0,)):.1f} ms; job {job.job_s:.2f} s; "
                            f"backbone builds {w.get('backbone_builds', '?')}, artifact loads "
                            f"{w.get('artifact_loads', '?')}, batch reads {w.get('batch_reads', '?')}", command))
    b, a = before.fixed_per_pair(), after.fixed_per_pair()
    out.append(BenchRow(sec, "before / after", b / a if a > 0 else 0.0, "x", "same night, same machine", command))
    return out


def backends() -> list[str]:
    """SQLite, and PostgreSQL when ``LPT_BENCH_PG_URL`` is set."""
    return ["sqlite"] + (["postgresql"] if os.environ.get(PG_ENV) else [])


def executors() -> list[str]:
    """local, and ray when Ray is importable."""
    return ["local"] + (["ray"] if importlib.util.find_spec("ray") is not None else [])


def load_rows(quick: bool, command: str, seed: int = 0) -> list[BenchRow]:
    """Every row of the section: grouping on SQLite, then each backend x executor at load."""
    plan = QUICK if quick else FULL
    rows: list[BenchRow] = []
    # one torch thread per process (the job, each actor): tiny models gain nothing from more, and
    # two contending threads on a shared 2-core box make tiny ops many times slower
    env = {"LPT_EXECUTOR_WORKERS": str(max(1, min(2, os.cpu_count() or 1))), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="lpt-bench-load-") as tmp:
        jobs = {}
        for reuse in ("0", "1"):
            root = Path(tmp) / f"grouping{reuse}"
            root.mkdir()
            with scratch_store("sqlite", root) as url:
                jobs[reuse] = run_night(plan.grouping_models, (plan.grouping_batches,), plan.batch_size, url,
                                        {**env, "LPT_EVAL_REUSE": reuse}, root, seed).jobs[0]  # fmt: skip
        label = (f"SQLite, local, {plan.grouping_models} models x {plan.grouping_batches} batches of "
                 f"{plan.batch_size}, 1 torch thread")
        rows += grouping_rows(jobs["0"], jobs["1"], label, command)
        for backend in backends():
            for executor in executors():
                label = (f"{backend}, {executor}, {plan.models} tiny LPT models x {sum(plan.batch_steps)} batches "
                         f"of {plan.batch_size}, 1 torch thread per process"
                         + (f", {env['LPT_EXECUTOR_WORKERS']} actors" if executor == "ray" else ""))
                root = Path(tmp) / f"{backend}-{executor}"
                root.mkdir()
                try:
                    with scratch_store(backend, root) as url:
                        night = run_night(plan.models, plan.batch_steps, plan.batch_size, url,
                                          {**env, "LPT_EXECUTOR": executor}, root, seed)  # fmt: skip
                    rows += night_rows(night, label, command)
                except Exception as exc:  # noqa: BLE001 -- one backend/executor failing keeps the others
                    rows.append(error_row(f"nightly job at load ({label})", "load run", "", command, exc))
    return rows
