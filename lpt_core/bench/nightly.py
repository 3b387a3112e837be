"""The nightly job's cost: time with nothing new, time per (model, batch) pair, and how both
grow with the number of prompt sets (models) and shift batches, on a temporary SQLite store.

The job is driven through its real entry point, ``lpt scheduler run-now`` (the service's
``app.cli``, registered with the ``lpt`` command through the ``lpt.commands`` entry points), in
a subprocess: ``lpt_core`` is a library and never imports ``app`` (docs/ARCHITECTURE.md).
The job's own in-process seconds (its JSON summary) are reported next to the subprocess wall
time, which adds interpreter start-up and imports. Models are real tiny LPT artifacts
(``save_artifact``); batches are real shift batches (``make_batch``, GX-validated, no DVC).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from lpt_core.bench.data import synthetic_images, synthetic_labels
from lpt_core.bench.models import TINY, BenchBackbone, build_variants
from lpt_core.bench.report import BenchRow

NUM_CLASSES = 5


@dataclass(frozen=True)
class JobTiming:
    """One ``run-now``: pairs evaluated, the job's own seconds and the subprocess wall seconds."""

    models: int
    batches: int
    pairs: int
    job_s: float
    wall_s: float
    pair_s: tuple[float, ...] = ()  # the job's own seconds per pair, in order (JobSummary.pair_seconds)


def _lpt_command() -> list[str]:
    exe = shutil.which("lpt")
    if exe is None:
        raise FileNotFoundError("the `lpt` console script is not on PATH (pip install -e . installs it)")
    return [exe]


def _run(args: list[str], env: dict[str, str]) -> tuple[dict, float]:
    """Run ``lpt <args>``; return its JSON summary (stdout) and the wall seconds."""
    start = time.perf_counter()
    proc = subprocess.run(_lpt_command() + args, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1) or "{" not in proc.stdout:
        raise RuntimeError(f"`lpt {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
    return json.loads(proc.stdout[proc.stdout.index("{"):]), wall


def _world(root: Path, batch_size: int, seed: int, balanced: bool = False) -> tuple[Path, dict[str, str]]:
    """A prepared synthetic dataset and the service environment, all under ``root``
    (``balanced``: test labels cycle through the classes, so a whole-split batch has them all)."""
    import numpy as np

    from lpt_core.data.store import ArraySplit, PreparedDataset, save_prepared

    def split(n: int, s: int) -> ArraySplit:
        return ArraySplit(synthetic_images(n, 32, seed + s), synthetic_labels(n, NUM_CLASSES, seed + s))

    prepared = root / "prepared"
    names = [f"class_{i}" for i in range(NUM_CLASSES)]
    test = split(batch_size, 2)
    if balanced:
        test = ArraySplit(test.images, np.arange(batch_size, dtype=np.int64) % NUM_CLASSES)
    save_prepared(prepared, PreparedDataset(split(50, 0), split(10, 1), test, names, meta={"name": "bench-nightly"}))
    env = dict(os.environ, LPT_DB_URL=f"sqlite:///{root / 'store.db'}", LPT_SHIFTS_DIR=str(root / "shifts"),
               LPT_INCOMING_DIR=str(root / "incoming"), LPT_MODELS_DIR=str(root / "models"),
               LPT_REPORTS_DIR=str(root / "reports"), LPT_RESULTS_DIR=str(root / "results"),
               LPT_PREPARED_DIR=str(prepared), LPT_CODE_VERSION="bench", LPT_USE_DVC="0", LPT_EVAL_DEVICE="cpu",
               LPT_LOCK_PATH=str(root / "job.lock"), HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1")
    (root / "shifts").mkdir()
    return prepared, env


def _add_batches(prepared: Path, root: Path, first: int, count: int, size: int, seed: int) -> None:
    """Generate ``count`` shift batches and drop them into the shifts root (the job finds them)."""
    from lpt_core.data.batches import make_batch

    staging = root / "staging"
    for i in range(first, first + count):
        before = set(staging.glob("*")) if staging.exists() else set()
        make_batch(prepared, staging, "gaussian_noise", 1 + i % 5, size, seed + i, use_dvc=False)
        for new in set(staging.glob("*")) - before:
            if new.is_dir():
                shutil.move(str(new), str(root / "shifts" / new.name))


def _add_models(root: Path, first: int, count: int, seed: int, env: dict[str, str]) -> None:
    """Save ``count`` tiny LPT artifacts and register them with ``lpt ingest --models``."""
    from lpt_core.artifacts import save_artifact

    folder = root / f"models_{first}"
    spec: BenchBackbone = replace(TINY, num_classes=NUM_CLASSES)
    for i in range(first, first + count):
        model = build_variants(spec, ("lpt_reuse",), seed=seed)["lpt_reuse"]  # same backbone, new prompts
        model.group_pool.prompts.data.add_(0.01 * i)
        save_artifact(folder / f"m{i}", model, {"class_names": [f"class_{c}" for c in range(NUM_CLASSES)],
                                                "class_counts": [10] * NUM_CLASSES})
    _run(["ingest", "--models", str(folder)], env)


def nightly_growth(steps: tuple[tuple[int, int], ...], batch_size: int, seed: int = 0) -> list[tuple[JobTiming, JobTiming]]:
    """For each (models, batches) step (both non-decreasing), add the new ones, then time a job
    that evaluates the new pairs and a second job with nothing new."""
    out = []
    with tempfile.TemporaryDirectory(prefix="lpt-bench-nightly-") as tmp:
        root = Path(tmp)
        prepared, env = _world(root, batch_size, seed)
        have_m = have_b = 0
        for models, batches in steps:
            if models < have_m or batches < have_b:
                raise ValueError(f"steps must not shrink: {steps}")
            if batches > have_b:
                _add_batches(prepared, root, have_b, batches - have_b, batch_size, seed)
            if models > have_m:
                _add_models(root, have_m, models - have_m, seed, env)
            have_m, have_b = models, batches
            first, w1 = _run(["scheduler", "run-now"], env)
            again, w2 = _run(["scheduler", "run-now"], env)
            out.append((JobTiming(models, batches, first["pairs_evaluated"], first["seconds"], w1,
                                  tuple(first["pair_seconds"])),
                        JobTiming(models, batches, again["pairs_evaluated"], again["seconds"], w2)))
    return out


QUICK_STEPS = ((1, 1), (1, 2), (2, 2))
FULL_STEPS = ((1, 1), (1, 2), (1, 4), (2, 4), (4, 4))


def nightly_rows(quick: bool, command: str, seed: int = 0) -> list[BenchRow]:
    """Rows for the CPU suite: per step, the evaluating job and the job with nothing new; then
    the job's cost split into a per-pair part and a fixed part (:func:`cost_rows`)."""
    steps, size = (QUICK_STEPS, 16) if quick else (FULL_STEPS, 256)
    sec = f"nightly job (lpt scheduler run-now, SQLite, tiny LPT artifacts, batches of {size})"
    rows = []
    runs = nightly_growth(steps, size, seed)
    for new, idle in runs:
        label = f"{new.models} model(s) x {new.batches} batch(es)"
        if new.pairs:
            rows.append(BenchRow(sec, f"{label}: job evaluating {new.pairs} new pair(s)", new.job_s, "s (job)",
                                 f"pairs {', '.join(f'{t:.3f}' for t in new.pair_s)} s; {new.wall_s:.2f} s wall "
                                 "incl. start-up; includes discovering new batches, gate and report", command))
        rows.append(BenchRow(sec, f"{label}: nothing new", idle.job_s, "s (job)",
                             f"{idle.wall_s:.2f} s wall incl. interpreter start-up; pairs {idle.pairs}", command))
    return rows + cost_rows([new for new, _ in runs], sec, command)


def cost_rows(runs: list[JobTiming], section: str, command: str) -> list[BenchRow]:
    """The evaluating jobs' cost split from their own per-pair timings.

    A job's first pair also pays first use (torch/timm imports, the backbone build), so the
    per-pair figure is the median over every later pair; the fixed figure is the median over
    jobs of ``job_s - pairs * per_pair``. Measured directly rather than fitted: with tiny models
    the per-pair cost is far below the run-to-run noise of the fixed cost.
    """
    import statistics

    jobs = [r for r in runs if r.pairs and len(r.pair_s) == r.pairs]
    later = [t for r in jobs for t in r.pair_s[1:]]
    if not later:
        return []
    per_pair = statistics.median(later)
    first = statistics.median(r.pair_s[0] for r in jobs)
    fixed = statistics.median(r.job_s - r.pairs * per_pair for r in jobs)
    n_jobs = f"{len(jobs)} jobs with {sorted(r.pairs for r in jobs)} new pairs"
    return [
        BenchRow(section, "per pair (median, after each job's first)", per_pair, "s/pair",
                 f"{len(later)} pairs of {n_jobs}; artifact hash check, evaluation, result file, SQL rows", command),
        BenchRow(section, "first pair of a job (median)", first, "s",
                 f"{n_jobs}; includes first use of torch/timm and the backbone build", command),
        BenchRow(section, "fixed cost of a job that evaluates (median)", fixed, "s",
                 f"job seconds - pairs x per-pair, over {n_jobs}; imports, discovery, gate, report", command),
    ]


if __name__ == "__main__":  # a quick manual check: python -m lpt_core.bench.nightly
    for row in nightly_rows(True, "python -m lpt_core.bench.nightly"):
        print(row.name, row.formatted_value(), row.unit, row.detail, file=sys.stdout)
