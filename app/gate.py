"""Deployment gate: manual promotion and rollback, and the automatic rule of the nightly job.

Automatic rule: a candidate replaces the deployed prompt set when, on the most recent
``gate_recent_batches`` shifted batches that both have evaluated, its mean top-1 beats the deployed
one's by more than ``gate_min_gain`` and its clean top-1 is no more than ``gate_max_clean_drop``
below the deployed one's. With no deployed model the gate does nothing: the first deployment is a
person's decision (``lpt models promote``). Every state change is a ``model_events`` row with its
reason and evidence, plus an alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from app.db import repository as repo
from app.db.schema import Model
from app.settings import Settings
from app.stats import two_proportion_change

PROMOTABLE_FROM = ("candidate", "retired", "baseline")
FLOAT_TOL = 1e-9  # a drop of exactly the threshold (0.90 - 0.89) must not fail on rounding


def deployed_model(session: Session) -> Model | None:
    """The deployed model, or None when nothing is deployed (a lookup, not a failure)."""
    rows = repo.list_models(session, ["deployed"])
    if len(rows) > 1:
        raise RuntimeError(f"more than one deployed model: {[m.name for m in rows]}")
    return rows[0] if rows else None


def promote(
    session: Session, name: str, reason: str, evidence: Mapping[str, Any] | None = None,
    job_run_id: int | None = None,
) -> str:
    """Deploy model ``name`` (retiring the deployed one); returns a one-line description."""
    if not reason.strip():
        raise ValueError("a promotion needs a non-empty reason")
    model = repo.get_model(session, name)
    if model.state not in PROMOTABLE_FROM:
        raise ValueError(f"model {name!r} is {model.state}; only {PROMOTABLE_FROM} models can be promoted")
    evidence = dict(evidence or {})
    current = deployed_model(session)
    if current is not None:
        repo.set_state(session, current, "retired", f"superseded by {name}: {reason}", evidence)
    repo.set_state(session, model, "deployed", reason, evidence)
    line = f"promoted {name}" + (f" (replacing {current.name})" if current else "") + f": {reason}"
    repo.add_alert(session, "promotion", line, job_run_id=job_run_id, model_id=model.id, details=evidence)
    return line


def rollback(session: Session, reason: str, job_run_id: int | None = None) -> str:
    """Retire the deployed model and redeploy the one deployed before it; returns a description."""
    current = deployed_model(session)
    if current is None:
        raise ValueError("nothing is deployed, so there is nothing to roll back")
    previous = _previous_deployed(session, current.id)
    if previous is None:
        raise ValueError(f"{current.name} is the first deployment: there is no earlier model to roll back to")
    evidence = {"from": current.name, "to": previous.name}
    repo.set_state(session, current, "retired", f"rolled back: {reason}", evidence)
    repo.set_state(session, previous, "deployed", f"rollback from {current.name}: {reason}", evidence)
    line = f"rolled back {current.name} -> {previous.name}: {reason}"
    repo.add_alert(session, "rollback", line, job_run_id=job_run_id, model_id=previous.id, details=evidence)
    return line


def _previous_deployed(session: Session, current_id: int) -> Model | None:
    """The most recently deployed other model that is now retired."""
    for event in reversed(repo.model_events(session)):
        if event.to_state == "deployed" and event.model_id != current_id:
            model = session.get(Model, event.model_id)
            if model is not None and model.state == "retired":
                return model
    return None


def latest_top1(session: Session) -> dict[tuple[str, str], tuple[float, Any]]:
    """{(model, batch): (top1 overall, batch row facts)} from each pair's latest succeeded run."""
    latest: dict[tuple[str, str], tuple[float, Any]] = {}
    for row in repo.scores(session, names=("top1",), groups=("overall",)):
        latest[(row.model, row.batch_id)] = (row.value, row)
    return latest


def gate_decision(session: Session, settings: Settings, candidate: str, deployed: str) -> dict[str, Any]:
    """The evidence of the automatic rule for one candidate against the deployed model."""
    top1 = latest_top1(session)
    shifted = sorted(
        {row.batch_id: row.registered_at for (m, _), (_, row) in top1.items() if row.corruption != "none"}.items(),
        key=lambda kv: (kv[1], kv[0]),
    )
    common = [b for b, _ in shifted if (candidate, b) in top1 and (deployed, b) in top1]
    recent = common[-settings.gate_recent_batches:]
    clean = [b for (m, b), (_, row) in top1.items() if m == deployed and row.corruption == "none" and (candidate, b) in top1]
    evidence: dict[str, Any] = {"candidate": candidate, "deployed": deployed, "batches": recent, "clean_batches": clean,
                                "min_gain": settings.gate_min_gain, "max_clean_drop": settings.gate_max_clean_drop}
    if not recent or not clean:
        return {**evidence, "promote": False, "why": "no common shifted and clean evaluations yet"}
    gain = sum(top1[(candidate, b)][0] - top1[(deployed, b)][0] for b in recent) / len(recent)
    drop = sum(top1[(deployed, b)][0] - top1[(candidate, b)][0] for b in clean) / len(clean)
    # The gain must also be significant: pooled correct counts over the recent batches, two-proportion
    # z-test (treats the two models' samples as independent, which is conservative on shared images).
    n = sum(top1[(deployed, b)][1].n for b in recent)
    pooled = [sum(top1[(m, b)][0] * top1[(m, b)][1].n for b in recent) / n for m in (deployed, candidate)]
    test = two_proportion_change(pooled[0], n, pooled[1], n, alpha=settings.alert_alpha)
    significant = test.delta > 0 and test.p_value < settings.alert_alpha
    ok = gain > settings.gate_min_gain and significant and drop <= settings.gate_max_clean_drop + FLOAT_TOL
    why = f"mean shifted gain {gain:+.4f} (needs > {settings.gate_min_gain} and significance: p = " \
          f"{test.p_value:.3g}, alpha {settings.alert_alpha}), clean drop {drop:+.4f} " \
          f"(allowed <= {settings.gate_max_clean_drop})"
    return {**evidence, "promote": ok, "shifted_gain": gain, "p_value": test.p_value, "clean_drop": drop, "why": why}


def auto_gate(session: Session, settings: Settings, job_run_id: int) -> list[str]:
    """Apply the automatic rule; promote the qualifying candidate with the largest gain, if any."""
    current = deployed_model(session)
    if current is None:
        return []
    decisions = [gate_decision(session, settings, m.name, current.name) for m in repo.list_models(session, ["candidate"])
                 if m.method in ("lpt", "vpt")]
    winners = sorted((d for d in decisions if d["promote"]), key=lambda d: -d["shifted_gain"])
    if not winners:
        return []
    best = winners[0]
    return [promote(session, best["candidate"], f"automatic gate: {best['why']}", best, job_run_id)]
