"""Demo nights for the dashboard, derived from real results already in the store.

``python -m dashboards.seed_demo --nights 7`` re-registers the real per-batch top-1 results (the
latest succeeded run of each model on each shifted batch, as loaded by ``lpt ingest``) as nightly
batches over the past ``nights`` nights, with every stored accuracy resampled as
Binomial(n, accuracy) / n. It is the one part of ``dashboards`` that writes, and it writes only
through the service's repository (``app.db.repository``).

Everything it writes is labelled so it is never mistaken for a measurement: batches have source
``demo-seed``, ids ``demo-<YYYYMMDD>-<real batch id>``, no path (so the nightly job never
evaluates them) and no DVC hash; runs and job runs have code version ``demo-seed`` and device
``demo``. The repository stamps rows with the current time; the seeder back-dates the rows it
has just created to their demo night. Reruns with the same arguments add nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.db import registry
from app.db import repository as repo
from app.db.schema import ShiftBatch
from app.db.session import make_engine, session_scope
from app.db.views import DEMO_SOURCE, ResultFilter, has_results, results

DEMO_CODE_VERSION = "demo-seed"
NIGHT_TIME = time(2, 30)
Z95 = 1.959963984540054
FILL_FIRST = ("no evaluation results in the store: run `dvc repro` then "
              "`lpt ingest --models models --shifts data/shifts/eval --results results` first")


@dataclass
class DemoSummary:
    """What one seeding added."""

    nights: list[str] = field(default_factory=list)
    batches_added: list[str] = field(default_factory=list)
    runs_added: int = 0


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k / n (n > 0)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    p, z2 = k / n, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def resample(rows: pd.DataFrame, rng: np.random.Generator) -> list[dict]:
    """Result-file metric entries with each accuracy redrawn as Binomial(n, value) / n."""
    out = []
    for grp, value, n in zip(rows["grp"], rows["value"], rows["n"]):
        n = int(n)
        if n <= 0:
            continue
        k = int(rng.binomial(n, float(np.clip(value, 0.0, 1.0))))
        low, high = wilson(k, n)
        out.append({"name": "top1", "group": grp, "value": k / n, "ci_low": low, "ci_high": high, "n": n})
    return out


def real_results(engine: Engine) -> pd.DataFrame:
    """Top-1 rows (overall, shot groups, classes) of the latest real run per (model, shifted batch)."""
    flt = ResultFilter(include_demo=False)
    frames = [results(engine, flt, groups=("overall", "many", "medium", "few")),
              results(engine, flt, per_class=True)]
    df = pd.concat(frames, ignore_index=True)
    return df[df["corruption"] != "none"]


def nights_before(now: datetime, nights: int) -> list[datetime]:
    """The ``nights`` nightly run times (02:30 UTC) before ``now``'s date, oldest first."""
    if nights < 1:
        raise ValueError(f"nights must be >= 1, got {nights}")
    today = now.astimezone(timezone.utc).date()
    return [datetime.combine(today - timedelta(days=d), NIGHT_TIME, tzinfo=timezone.utc)
            for d in range(nights, 0, -1)]


def _demo_batch_values(real: ShiftBatch, night: datetime) -> dict:
    """The registration of the demo copy of batch ``real`` for ``night``."""
    bid = f"demo-{night:%Y%m%d}-{real.id}"
    if len(bid) > 128:
        raise ValueError(f"demo batch id {bid!r} exceeds 128 characters; shorten batch {real.id!r}")
    digest = hashlib.sha256(f"{DEMO_SOURCE}:{real.content_hash}:{night.isoformat()}".encode()).hexdigest()
    return {
        "id": bid, "kind": real.kind, "source": DEMO_SOURCE, "dataset": real.dataset,
        "corruption": real.corruption, "severity": real.severity, "size": real.size,
        "content_hash": digest, "dvc_hash": None, "path": "", "validation_status": real.validation_status,
        "validation_json": json.dumps({"demo": True, "derived_from": real.id}),
        "created_at": night, "registered_at": night,
    }


def _plan_night(session: Session, real: pd.DataFrame, night: datetime, per_night: int,
                rng: np.random.Generator) -> list[tuple[dict, str, list[dict]]]:
    """(demo batch values, model, resampled metrics) for every pair of the night not yet seeded.

    All random draws happen here, in a fixed order, so a rerun reproduces the same numbers.
    """
    batch_ids = sorted(real["batch_id"].unique())
    picked = sorted(str(b) for b in rng.choice(batch_ids, size=min(per_night, len(batch_ids)), replace=False))
    plan = []
    for real_id in picked:
        values = _demo_batch_values(repo.get_batch(session, real_id), night)
        for model_name, rows in real[real["batch_id"] == real_id].groupby("model", sort=True):
            metrics = resample(rows, rng)
            model = _version(session, model_name)
            if repo.run_status(session, model.id, values["id"], DEMO_CODE_VERSION) != "succeeded":
                plan.append((values, model_name, metrics))
    return plan


def _version(session: Session, label: str):  # noqa: ANN202 - an app.db.schema.ModelVersion
    """The model version a views label names (``name``, or ``name@N`` once a model has versions)."""
    return registry.get_version(session, *registry.parse_model_ref(label))


def _seed_night(engine: Engine, real: pd.DataFrame, night: datetime, per_night: int,
                rng: np.random.Generator, summary: DemoSummary) -> None:
    """One demo night in one transaction: a job run, the night's batches and their eval runs."""
    with session_scope(engine) as session:
        plan = _plan_night(session, real, night, per_night, rng)
        summary.nights.append(night.date().isoformat())
        if not plan:
            return
        job = repo.start_job_run(session, "manual", DEMO_CODE_VERSION)
        for values, model_name, metrics in plan:
            batch, created = repo.upsert_batch(session, values)
            if created:
                summary.batches_added.append(batch.id)
            run = repo.begin_eval_run(session, _version(session, model_name).id, batch.id,
                                      DEMO_CODE_VERSION, job.id)
            repo.complete_eval_run(session, run.id, {"metrics": metrics, "eval_seconds": 0.0,
                                                     "images_per_second": 0.0, "device": "demo"})
            # The repository stamps "now"; these rows belong to their demo night.
            run.started_at, run.finished_at = night, night + timedelta(minutes=1)
        repo.finish_job_run(session, job.id, "succeeded", pairs_evaluated=len(plan))
        job.started_at, job.finished_at = night, night + timedelta(minutes=5)
        session.flush()
        summary.runs_added += len(plan)


def seed_demo(engine: Engine, *, nights: int = 7, per_night: int = 3, seed: int = 0,
              now: datetime | None = None) -> DemoSummary:
    """Seed ``nights`` demo nights of ``per_night`` shifted batches each; see the module docstring.

    Raises ``RuntimeError`` when the store holds no real shifted-batch results to derive from.
    """
    if per_night < 1:
        raise ValueError(f"per_night must be >= 1, got {per_night}")
    if not has_results(engine):
        raise RuntimeError(FILL_FIRST)
    real = real_results(engine)
    if real.empty:
        raise RuntimeError(f"the store has results but none on a shifted batch: {FILL_FIRST}")
    rng = np.random.default_rng(seed)
    summary = DemoSummary()
    for night in nights_before(now or datetime.now(timezone.utc), nights):
        _seed_night(engine, real, night, per_night, rng, summary)
    return summary


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nights", type=int, default=7, help="past nights to seed (default 7)")
    parser.add_argument("--per-night", type=int, default=3, help="shifted batches per night (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling RNG (default 0)")
    parser.add_argument("--db-url", default=None, help="store URL (default: LPT_DB_URL)")


def _run(args: argparse.Namespace) -> int:
    """Seed from parsed arguments; errors propagate (RuntimeError/ValueError name the problem)."""
    summary = seed_demo(make_engine(args.db_url), nights=args.nights, per_night=args.per_night, seed=args.seed)
    print(f"seeded {summary.runs_added} demo runs on {len(summary.batches_added)} new demo batches over "
          f"nights {summary.nights[0]}..{summary.nights[-1]} (source {DEMO_SOURCE!r}: demo data, not measurements)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lpt demo seed`` (for the ``lpt.commands`` entry-point group)."""
    demo = subparsers.add_parser("demo", help="demo data for the dashboard")
    actions = demo.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    seed = actions.add_parser("seed", help=__doc__.splitlines()[0])
    _add_arguments(seed)
    seed.set_defaults(func=_run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dashboards.seed_demo``: seed demo nights into the store at ``LPT_DB_URL``."""
    parser = argparse.ArgumentParser(prog="python -m dashboards.seed_demo", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (RuntimeError, ValueError) as exc:
        print(f"seed_demo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
