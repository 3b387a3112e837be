"""The service's ``lpt`` subcommands: ``ingest``, ``scheduler``, ``models``, ``db`` and ``report``.

Registered through the entry-point group ``lpt.commands`` (``app.cli:register``), so lpt_core
never imports the service. Everything heavy is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.settings import Settings, load_settings


def register(subparsers: Any) -> None:
    """Add the service subcommands to the ``lpt`` parser."""
    p = subparsers.add_parser("ingest", help="load pipeline artifacts, shift sets and results into the store")
    p.add_argument("--results", type=Path, help="results folder (results/<model>/<shift>.json)")
    p.add_argument("--models", type=Path, help="model artifacts folder")
    p.add_argument("--shifts", type=Path, nargs="*", default=[], help="shift batch folders or their roots")
    p.set_defaults(func=cmd_ingest)

    p = subparsers.add_parser("scheduler", help="the nightly evaluation scheduler")
    p.add_argument("action", choices=("start", "run-now", "status"))
    p.add_argument("--limit", type=int, default=10, help="status: how many job runs to list")
    p.set_defaults(func=cmd_scheduler)

    p = subparsers.add_parser("models", help="list, register, promote or roll back model versions")
    p.add_argument("action", choices=("list", "register", "promote", "rollback"))
    p.add_argument("name", nargs="?", help="register: model NAME; promote: NAME (its newest version that is not retired) or NAME@VERSION")
    p.add_argument("--all", action="store_true", help="list: every version, not only current ones")
    p.add_argument("--artifact", type=Path, help="register: the artifact directory")
    p.add_argument("--state", default=None, help="register: candidate or baseline (default by method)")
    p.add_argument("--reason", default="", help="promote/rollback: why (recorded with the event)")
    p.set_defaults(func=cmd_models)

    p = subparsers.add_parser("db", help="the store's schema: upgrade it (Alembic), show its revision or row counts")
    p.add_argument("action", choices=("upgrade", "current", "counts"))
    p.add_argument("--revision", default="head", help="upgrade: target revision (default head)")
    p.set_defaults(func=cmd_db)

    p = subparsers.add_parser("report", help="(re)write the report of a job run")
    p.add_argument("--job", type=int, default=None, help="job run id (default: the latest that evaluated pairs)")
    p.set_defaults(func=cmd_report)


def _engine(settings: Settings) -> Any:
    from app.db.session import init_db, make_engine

    engine = make_engine(settings.db_url)
    init_db(engine)
    return engine


def cmd_ingest(args: argparse.Namespace) -> int:
    """``lpt ingest``."""
    from app.ingest import ingest

    if args.results is None and args.models is None and not args.shifts:
        raise ValueError("nothing to ingest: give --results, --models and/or --shifts")
    summary = ingest(_engine(load_settings()), results_dir=args.results, models_dir=args.models,
                     shift_dirs=args.shifts)
    print(json.dumps(summary.__dict__, indent=1))
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    """``lpt scheduler start|run-now|status``."""
    settings = load_settings()
    engine = _engine(settings)
    if args.action == "start":
        from app.scheduler import start

        start(settings, engine)
        return 0
    if args.action == "run-now":
        from app.jobs import run_job

        summary = run_job(settings, trigger="manual", engine=engine)
        print(json.dumps(summary.to_dict(), indent=1))
        return 0 if summary.status == "succeeded" else 1
    return _status(settings, engine, args.limit)


def _status(settings: Settings, engine: Any, limit: int) -> int:
    """Print the next fire time and the last job runs."""
    from app.db import repository as repo
    from app.db.session import session_scope
    from app.scheduler import next_run_time

    nxt = next_run_time(engine)
    print(f"schedule: {settings.schedule_time} {settings.schedule_tz}; next run: "
          f"{nxt.isoformat() if nxt else 'not scheduled (start the scheduler)'}")
    with session_scope(engine) as s:
        for run in repo.recent_job_runs(s, limit):
            end = run.finished_at.isoformat() if run.finished_at else "-"
            print(f"job {run.id}: {run.trigger} {run.status} started {run.started_at.isoformat()} finished {end} "
                  f"pairs {run.pairs_evaluated} failed {run.pairs_failed}"
                  + (f" error: {run.error}" if run.error else "") + (f" report: {run.report_path}" if run.report_path else ""))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """``lpt models list|register|promote|rollback``."""
    from app import gate
    from app.db import registry
    from app.db.session import session_scope

    engine = _engine(load_settings())
    with session_scope(engine) as s:
        if args.action == "list":
            deployed = registry.deployed_version(s)
            print("model@version\tmethod\tstate\tartifact\ttrainable\tstored")
            for v in registry.list_versions(s, current=not args.all):
                print(f"{v.label}\t{v.model.method}\t{registry.state_of(v, deployed)}\t{v.artifact_sha256[:12]}\t"
                      f"{v.trainable_params}\t{v.stored_params}")
        elif args.action == "register":
            print(_register(s, args))
        elif args.action == "promote":
            if not args.name:
                raise ValueError("lpt models promote needs a model NAME")
            print(gate.promote(s, args.name, args.reason or "manual promotion", {"by": "lpt models promote"}))
        else:
            print(gate.rollback(s, args.reason or "manual rollback"))
    return 0


def _register(session: Any, args: argparse.Namespace) -> str:
    """Register one artifact directory under ``args.name``."""
    from app.db import registry
    from app.ingest import default_hasher, model_values

    if not args.name or args.artifact is None:
        raise ValueError("lpt models register needs a NAME and --artifact DIR")
    values = model_values(args.artifact, args.name, default_hasher)
    if args.state is not None:
        if args.state not in ("candidate", "baseline"):
            raise ValueError(f"--state must be candidate or baseline, got {args.state!r}")
        values["stage"] = args.state
    version, created = registry.upsert_model(session, values, "registered by lpt models register")
    return f"{'registered' if created else 'already registered'} {version.label} ({version.stage})"


def cmd_db(args: argparse.Namespace) -> int:
    """``lpt db upgrade|current|counts``."""
    from app.db.migrate import current_revision, head_revision, upgrade
    from app.db.session import make_engine

    engine = make_engine(load_settings().db_url)
    if args.action == "counts":  # rows per table, as JSON (load checks: nothing lost, nothing doubled)
        from app.db import repository as repo
        from app.db.session import session_scope

        with session_scope(engine) as s:
            print(json.dumps(repo.count_rows(s), sort_keys=True))
        return 0
    if args.action == "current":
        print(f"store revision {current_revision(engine) or '(empty store)'}; this code's head {head_revision()}")
        return 0
    before, after = upgrade(engine, args.revision)
    print(f"store upgraded {before or '(empty)'} -> {after}" if before != after else f"store already at {after}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``lpt report``: rewrite a job run's report."""
    from app.db import repository as repo
    from app.db.session import session_scope
    from app.report import write_report

    settings = load_settings()
    engine = _engine(settings)
    job_id = args.job
    if job_id is None:
        with session_scope(engine) as s:
            runs = [r for r in repo.recent_job_runs(s, 1000) if r.pairs_evaluated > 0]
        if not runs:
            raise ValueError("no job run has evaluated anything yet: nothing to report")
        job_id = runs[0].id
    report = write_report(engine, settings, job_id)
    for kind, path in report.paths.items():
        print(f"{kind}: {path}")
    return 0
