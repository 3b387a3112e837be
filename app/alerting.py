"""The night's label-free alerts (MONITORING_SPEC.md): false-discovery control over every shift
test of one job run, then ``shift`` and ``estimated_drop`` alerts.

``shift``: the detectors of all (model version, batch) pairs evaluated by the job are one family;
Benjamini-Hochberg at ``LPT_ALERT_ALPHA`` (``lpt_core.monitoring.benjamini_hochberg``) decides which
reject, and each pair with a rejection gets one alert naming its detectors with raw and adjusted
p-values. ``estimated_drop``: a pair whose estimated top-1 (ATC on the max softmax, the headline
estimator) lies more than ``LPT_ESTIMATE_DROP_MARGIN`` below the version's measured clean top-1.
"""

from __future__ import annotations

from collections import defaultdict
from typing import cast

from sqlalchemy.orm import Session

from app.db import monitoring as mon
from app.db import repository as repo
from app.db.schema import EvalRun, ModelVersion
from app.settings import Settings

HEADLINE_ESTIMATOR = "atc_max_conf"


def monitoring_alerts(session: Session, settings: Settings, job_run_id: int) -> list[str]:
    """Record the night's verdicts and alerts; returns one line per alert raised."""
    return _shift_alerts(session, settings, job_run_id) + _drop_alerts(session, settings, job_run_id)


def _shift_alerts(session: Session, settings: Settings, job_run_id: int) -> list[str]:
    from lpt_core.monitoring import benjamini_hochberg

    rows = mon.night_tests(session, job_run_id)
    if not rows:
        return []
    # night_tests returns only rows with a p-value
    fdr = benjamini_hochberg([cast(float, r.p_value) for r in rows], settings.alert_alpha)
    mon.set_verdicts(session, rows, list(fdr.adjusted), list(fdr.reject))
    by_run = defaultdict(list)
    for row in rows:
        if row.rejected:
            by_run[row.run_id].append(row)
    lines = []
    for run_id, found in by_run.items():
        run = session.get_one(EvalRun, run_id)
        label = session.get_one(ModelVersion, run.model_version_id).label
        tests = ", ".join(f"{d.detector} (p = {d.p_value:.2g}, adjusted {d.p_adjusted:.2g})" for d in found)
        line = f"shift detected on {run.batch_id} for {label}: {tests}; false discovery rate {settings.alert_alpha}"
        repo.add_alert(session, "shift", line, job_run_id=job_run_id, model_version_id=run.model_version_id,
                       batch_id=run.batch_id, details={"detectors": [d.detector for d in found]})  # fmt: skip
        lines.append(line)
    return lines


def _drop_alerts(session: Session, settings: Settings, job_run_id: int) -> list[str]:
    lines = []
    for run, est in mon.night_estimates(session, job_run_id, HEADLINE_ESTIMATOR):
        clean = mon.clean_top1(session, run.model_version_id)
        if clean is None or est.value >= clean - settings.estimate_drop_margin:
            continue
        label = session.get_one(ModelVersion, run.model_version_id).label
        line = (f"{label} on {run.batch_id}: estimated top-1 {est.value:.1%} ({HEADLINE_ESTIMATOR}) is "
                f"{clean - est.value:.1%} below its clean top-1 {clean:.1%} (margin {settings.estimate_drop_margin:.0%})")
        repo.add_alert(session, "estimated_drop", line, job_run_id=job_run_id, model_version_id=run.model_version_id,
                       batch_id=run.batch_id, details={"estimate": est.value, "clean_top1": clean})  # fmt: skip
        lines.append(line)
    return lines
