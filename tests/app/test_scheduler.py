"""Scheduler: trigger arithmetic (no waiting), persistence across restarts, clean SIGTERM shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.db.session import init_db, make_engine
from app.scheduler import JOB_ID, MISFIRE_GRACE_S, build_scheduler, make_trigger, next_run_time
from app.settings import Settings

UTC = timezone.utc
ROOT = Path(__file__).resolve().parents[2]


def _fires(trigger, start: datetime, count: int) -> list[datetime]:
    out, prev, now = [], None, start
    for _ in range(count):
        nxt = trigger.get_next_fire_time(prev, now)
        out.append(nxt)
        prev = now = nxt
    return out


def test_default_schedule_fires_daily_at_0230_utc() -> None:
    fires = _fires(make_trigger(Settings()), datetime(2026, 3, 27, 12, 0, tzinfo=UTC), 4)
    assert fires[0] == datetime(2026, 3, 28, 2, 30, tzinfo=UTC)
    assert all(b - a == timedelta(days=1) for a, b in zip(fires, fires[1:]))


def test_a_dst_zone_shifts_utc_fire_times_and_fires_twice_when_clocks_go_back() -> None:
    """Why the default is UTC: in Europe/Berlin 02:30 does not exist on 29 March 2026 and
    exists twice on 25 October 2026. The job is idempotent, so the repeated run does nothing."""
    trigger = make_trigger(Settings(schedule_tz="Europe/Berlin"))
    spring = [f.astimezone(UTC) for f in _fires(trigger, datetime(2026, 3, 27, 12, 0, tzinfo=UTC), 3)]
    assert spring == [datetime(2026, 3, 28, 1, 30, tzinfo=UTC), datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                      datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]
    autumn = [f.astimezone(UTC) for f in _fires(trigger, datetime(2026, 10, 24, 12, 0, tzinfo=UTC), 3)]
    assert autumn == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
                      datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


def test_bad_schedule_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        make_trigger(Settings(schedule_tz="Mars/Olympus"))
    with pytest.raises(ValueError, match="25:00"):
        Settings.from_env({"LPT_SCHEDULE_TIME": "25:00"})


def test_job_persists_across_a_scheduler_restart(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    init_db(engine)
    assert next_run_time(engine) is None
    first = build_scheduler(Settings(schedule_time="03:15"), engine, blocking=False)
    first.start(paused=True)
    first.shutdown(wait=False)
    stored = next_run_time(engine)
    assert (stored.hour, stored.minute, stored.tzinfo is not None) == (3, 15, True)
    second = build_scheduler(Settings(schedule_time="04:45"), engine, blocking=False)
    second.start(paused=True)
    try:
        jobs = second.get_jobs()
        assert [j.id for j in jobs] == [JOB_ID], "replace_existing keeps exactly one nightly job"
        job = jobs[0]
        assert (job.coalesce, job.misfire_grace_time, job.max_instances) == (True, MISFIRE_GRACE_S, 1)
        assert (job.next_run_time.hour, job.next_run_time.minute) == (4, 45)
    finally:
        second.shutdown(wait=False)
    assert next_run_time(engine).minute == 45


def test_blocking_scheduler_shuts_down_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "LPT_DB_URL": f"sqlite:///{tmp_path / 'store.db'}",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    code = ("import logging,sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout);"
            "from app.cli import cmd_scheduler; import argparse;"
            "cmd_scheduler(argparse.Namespace(action='start', limit=1))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    for line in proc.stdout:
        if "scheduler started" in line:
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=20) == 0
    assert "scheduler stopped" in rest
