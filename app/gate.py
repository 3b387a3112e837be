"""Deployment gate: manual promotion and rollback, and the automatic rule of the nightly job.

Deployment is the ``deployed`` alias of the model registry (``app.db.registry``): promotion points
it at a model version, rollback points it back at the version it pointed at before; the version it
leaves is retired. Automatic rule: a candidate version replaces the deployed one when, on the most
recent ``gate_recent_batches`` shifted batches that both have evaluated, its mean top-1 beats the
deployed one's by more than ``gate_min_gain`` (and significantly), and its clean top-1 is no more
than ``gate_max_clean_drop`` below the deployed one's. With nothing deployed the gate does nothing:
the first deployment is a person's decision (``lpt models promote``). Every change is a
``model_events`` row with its reason and evidence, plus an alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from app.db import registry
from app.db import repository as repo
from app.db.schema import ModelVersion
from app.settings import Settings
from app.stats import two_proportion_change

PROMOTABLE_FROM = ("candidate", "retired", "baseline")
FLOAT_TOL = 1e-9  # a drop of exactly the threshold (0.90 - 0.89) must not fail on rounding


def deployed_model(session: Session) -> ModelVersion | None:
    """The deployed model version, or None when nothing is deployed (a lookup, not a failure)."""
    return registry.deployed_version(session)


def promote(
    session: Session, ref: str, reason: str, evidence: Mapping[str, Any] | None = None,
    job_run_id: int | None = None,
) -> str:
    """Deploy model ``ref`` (``name`` = its newest version, or ``name@N``), retiring the deployed
    version; returns a one-line description."""
    if not reason.strip():
        raise ValueError("a promotion needs a non-empty reason")
    version = registry.get_version(session, *registry.parse_model_ref(ref))
    current = deployed_model(session)
    if current is not None and current.id == version.id:
        raise ValueError(f"{version.label} is already deployed")
    if version.stage not in PROMOTABLE_FROM:
        raise ValueError(f"model {version.label} is {version.stage}; only {PROMOTABLE_FROM} versions can be promoted")
    evidence = dict(evidence or {})
    _move_alias(session, current, version, reason, evidence, f"superseded by {version.label}: {reason}")
    line = f"promoted {version.label}" + (f" (replacing {current.label})" if current else "") + f": {reason}"
    repo.add_alert(session, "promotion", line, job_run_id=job_run_id, model_version_id=version.id, details=evidence)
    return line


def _move_alias(
    session: Session, current: ModelVersion | None, target: ModelVersion, reason: str, evidence: dict[str, Any],
    retire_reason: str,
) -> None:
    """Point ``deployed`` at ``target``; the version it leaves is retired. Both changes are events."""
    before = registry.state_of(target, current)
    if current is not None:
        current.stage = "retired"
        registry.add_event(session, current, "deployed", "retired", retire_reason, evidence)
    registry.set_deployed(session, target)
    if target.stage == "retired":
        target.stage = "candidate"  # deployed again: evaluated again, and a candidate once it leaves
    registry.add_event(session, target, before, "deployed", reason, evidence)
    session.flush()


def rollback(session: Session, reason: str, job_run_id: int | None = None) -> str:
    """Point ``deployed`` back at the version it pointed at before; returns a description."""
    current = deployed_model(session)
    if current is None:
        raise ValueError("nothing is deployed, so there is nothing to roll back")
    previous = _previous_deployed(session, current.id)
    if previous is None:
        raise ValueError(f"{current.label} is the first deployment: there is no earlier version to roll back to")
    evidence = {"from": current.label, "to": previous.label}
    _move_alias(session, current, previous, f"rollback from {current.label}: {reason}", evidence,
                f"rolled back: {reason}")  # fmt: skip
    line = f"rolled back {current.label} -> {previous.label}: {reason}"
    repo.add_alert(session, "rollback", line, job_run_id=job_run_id, model_version_id=previous.id, details=evidence)
    return line


def _previous_deployed(session: Session, current_id: int) -> ModelVersion | None:
    """The most recently deployed other version (now retired), or None."""
    for event in reversed(registry.model_events(session)):
        if event.to_state == "deployed" and event.model_version_id != current_id:
            version = session.get(ModelVersion, event.model_version_id)
            if version is not None and version.stage == "retired":
                return version
    return None


def latest_top1(session: Session) -> dict[tuple[int, str], tuple[float, Any]]:
    """{(version id, batch): (top1 overall, score row)} from each pair's latest succeeded run."""
    latest: dict[tuple[int, str], tuple[float, Any]] = {}
    for row in repo.scores(session, names=("top1",), groups=("overall",)):
        latest[(row.version_id, row.batch_id)] = (row.value, row)
    return latest


def gate_decision(session: Session, settings: Settings, candidate: ModelVersion, deployed: ModelVersion) -> dict[str, Any]:
    """The evidence of the automatic rule for one candidate version against the deployed one."""
    top1 = latest_top1(session)
    c, d = candidate.id, deployed.id
    shifted = sorted({b: row.registered_at for (_, b), (_, row) in top1.items() if row.corruption != "none"}.items(),
                     key=lambda kv: (kv[1], kv[0]))  # fmt: skip
    recent = [b for b, _ in shifted if (c, b) in top1 and (d, b) in top1][-settings.gate_recent_batches:]
    clean = [b for (v, b), (_, row) in top1.items() if v == d and row.corruption == "none" and (c, b) in top1]
    evidence: dict[str, Any] = {"candidate": candidate.label, "deployed": deployed.label, "batches": recent,
                                "clean_batches": clean, "min_gain": settings.gate_min_gain,
                                "max_clean_drop": settings.gate_max_clean_drop}  # fmt: skip
    if not recent or not clean:
        return {**evidence, "promote": False, "why": "no common shifted and clean evaluations yet"}
    gain = sum(top1[(c, b)][0] - top1[(d, b)][0] for b in recent) / len(recent)
    drop = sum(top1[(d, b)][0] - top1[(c, b)][0] for b in clean) / len(clean)
    # The gain must also be significant: pooled correct counts over the recent batches, two-proportion
    # z-test (treats the two models' samples as independent, which is conservative on shared images).
    n = sum(top1[(d, b)][1].n for b in recent)
    pooled = [sum(top1[(v, b)][0] * top1[(v, b)][1].n for b in recent) / n for v in (d, c)]
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
    candidates = [v for v in registry.list_versions(session, ["candidate"]) if v.model.method in ("lpt", "vpt")]
    decisions = [(v, gate_decision(session, settings, v, current)) for v in candidates]
    winners = sorted(((v, d) for v, d in decisions if d["promote"]), key=lambda vd: -vd[1]["shifted_gain"])
    if not winners:
        return []
    version, best = winners[0]
    return [promote(session, version.label, f"automatic gate: {best['why']}", best, job_run_id)]
