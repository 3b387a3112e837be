"""The scheduler process: APScheduler 3.11 ``BlockingScheduler`` running the nightly job.

Jobs persist in a ``SQLAlchemyJobStore`` in the service database (table ``apscheduler_jobs``) and
are re-declared at start-up with a fixed id and ``replace_existing=True``, so the code stays the
source of truth. ``coalesce=True`` folds missed nights into one run, ``misfire_grace_time=3600``
still runs a job up to an hour late (e.g. the box rebooted at 02:30), ``max_instances=1`` never
overlaps two runs (and the job's own lock refuses one started by ``lpt scheduler run-now``).
Run exactly one scheduler process per database: APScheduler 3 job stores are not shareable.
"""

from __future__ import annotations

import logging
import signal
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import Engine

from app.settings import Settings, load_settings

log = logging.getLogger(__name__)

JOB_ID = "lpt-nightly"
JOBSTORE_TABLE = "apscheduler_jobs"
MISFIRE_GRACE_S = 3600


def make_trigger(settings: Settings) -> Any:
    """The nightly ``CronTrigger`` at ``schedule_time`` in ``schedule_tz`` (default 02:30 UTC)."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        tz = ZoneInfo(settings.schedule_tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"LPT_SCHEDULE_TZ {settings.schedule_tz!r} is not a known IANA time zone") from None
    hour, minute = settings.schedule_hour_minute
    return CronTrigger(hour=hour, minute=minute, timezone=tz)


def nightly_job() -> None:
    """The scheduled callable (module-level so the job store can pickle a reference to it)."""
    from app.jobs import JobLockedError, run_job

    try:
        run_job(load_settings(), trigger="cron")
    except JobLockedError as exc:
        log.warning("nightly run refused: %s", exc)


def make_jobstore(engine: Engine) -> Any:
    """The APScheduler job store in the service database."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    return SQLAlchemyJobStore(engine=engine, tablename=JOBSTORE_TABLE)


def build_scheduler(settings: Settings, engine: Engine, *, blocking: bool = True) -> Any:
    """A scheduler (not started) with the nightly job declared in the persistent job store."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    cls = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = cls(jobstores={"default": make_jobstore(engine)}, timezone=ZoneInfo("UTC"))
    scheduler.add_job(
        nightly_job, make_trigger(settings), id=JOB_ID, name="lpt nightly evaluation",
        replace_existing=True, coalesce=True, misfire_grace_time=MISFIRE_GRACE_S, max_instances=1,
    )
    return scheduler


def start(settings: Settings, engine: Engine) -> None:
    """Run the blocking scheduler until SIGTERM or SIGINT, then shut it down cleanly."""
    scheduler = build_scheduler(settings, engine, blocking=True)

    from apscheduler.events import EVENT_SCHEDULER_STARTED

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %s received: shutting the scheduler down", signal.Signals(signum).name)
        if scheduler.running:
            scheduler.shutdown(wait=False)
        else:  # the signal came before the loop started: do not start it at all
            raise SystemExit(0)

    def _started(_event: Any) -> None:
        log.info("scheduler started: job %s at %s %s, next run %s", JOB_ID, settings.schedule_time,
                 settings.schedule_tz, scheduler.get_job(JOB_ID).next_run_time)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    scheduler.add_listener(_started, EVENT_SCHEDULER_STARTED)
    scheduler.start()
    log.info("scheduler stopped")


def next_run_time(engine: Engine) -> datetime | None:
    """When the persisted nightly job fires next (None when no scheduler ever declared it)."""
    store = make_jobstore(engine)
    store.start(None, "default")
    return store.get_next_run_time()
