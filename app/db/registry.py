"""The model registry: registered models, their numbered immutable versions, the ``deployed`` alias.

The convention users know from MLflow's registry: a model name has versions 1, 2, ... (one
artifact sha256 each, never edited); an alias points at one version and moves on promotion and
rollback; every change is a ``model_events`` row with its reason and evidence. With
``app.db.repository`` and ``app.db.views`` this is the only module with SQL; callers own the
transaction (``app.db.session.session_scope``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.schema import (
    DEPLOYED,
    VERSION_STAGES,
    Model,
    ModelAlias,
    ModelEvent,
    ModelVersion,
    utcnow,
)
from app.db.upsert import insert_ignore


def upsert_model(session: Session, values: Mapping[str, Any], reason: str) -> tuple[ModelVersion, bool]:
    """Register an artifact as a version of the model ``values["name"]``; returns (version, created).

    The same artifact (sha256) again is a no-op. Another artifact becomes the next version
    (artifacts are immutable, a retrained model is a new version); the model's older versions
    that are not deployed are retired, so the nightly job evaluates the new one instead.
    ``values`` holds name, method, stage (candidate or baseline) and the version's columns.
    """
    stage = values.get("stage")
    if stage not in ("candidate", "baseline"):
        raise ValueError(f"a new model version's stage must be candidate or baseline, got {stage!r}")
    insert_ignore(session, Model, {"name": values["name"], "method": values["method"],
                                    "created_at": values.get("created_at") or utcnow()}, ["name"])
    model = session.scalars(select(Model).where(Model.name == values["name"])
                            .execution_options(populate_existing=True)).one()  # fmt: skip
    if model.method != values["method"]:
        raise ValueError(f"model {model.name!r} is registered as a {model.method!r} model; this artifact is "
                         f"{values['method']!r}: register it under another name")  # fmt: skip
    same = session.scalars(select(ModelVersion).filter_by(model_id=model.id, artifact_sha256=values["artifact_sha256"])).first()
    if same is not None:
        if same.stage == "retired":  # an older artifact is back (e.g. a recipe change undone): current again
            set_stage(session, same, stage, f"its artifact is registered again: {reason}", {"version": same.version})
            _retire_others(session, same)
        return same, False
    number = (session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)) or 0) + 1
    fields = {k: values[k] for k in VERSION_FIELDS if k in values}
    version = ModelVersion(model_id=model.id, version=number, stage=stage, created_at=values.get("created_at") or utcnow(),
                           **fields)  # fmt: skip
    session.add(version)
    session.flush()
    _retire_others(session, version)
    add_event(session, version, "none", stage, reason, {"artifact_sha256": version.artifact_sha256, "version": number})
    return version, True


def _retire_others(session: Session, current: ModelVersion) -> None:
    """Retire the model's other versions that are neither retired nor deployed."""
    deployed = deployed_version(session)
    for other in session.scalars(select(ModelVersion).where(ModelVersion.model_id == current.model_id,
                                                            ModelVersion.id != current.id,
                                                            ModelVersion.stage != "retired")):  # fmt: skip
        if deployed is None or other.id != deployed.id:
            set_stage(session, other, "retired", f"superseded by version {current.version}",
                      {"by_version": current.version})


VERSION_FIELDS = ("artifact_path", "artifact_sha256", "backbone", "backbone_fingerprint", "trainable_params",
                  "stored_params", "data_version", "class_counts_json")


def get_version(session: Session, name: str, version: int | None = None) -> ModelVersion:
    """Version ``version`` of model ``name`` (default: its current one, the newest not retired, else
    the newest); ``KeyError`` listing what exists."""
    model = session.scalars(select(Model).where(Model.name == name)).first()
    if model is None:
        names = ", ".join(session.scalars(select(Model.name).order_by(Model.name))) or "(none)"
        raise KeyError(f"unknown model {name!r}; registered models: {names}")
    stmt = select(ModelVersion).where(ModelVersion.model_id == model.id)
    stmt = stmt.where(ModelVersion.version == version) if version is not None else stmt
    rows = list(session.scalars(stmt.order_by(ModelVersion.version.desc())))
    row = next((r for r in rows if r.stage != "retired"), rows[0] if rows else None) if version is None else (
        rows[0] if rows else None)
    if row is None:
        have = ", ".join(str(v) for v in session.scalars(select(ModelVersion.version).filter_by(model_id=model.id)))
        raise KeyError(f"model {name!r} has no version {version}; versions: {have}")
    return row


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """``"lpt"`` -> ("lpt", None) (the newest version); ``"lpt@3"`` or ``"lpt@v3"`` -> ("lpt", 3)."""
    name, sep, version = ref.partition("@")
    if not sep:
        return name, None
    digits = version[1:] if version.startswith("v") else version
    if not digits.isdigit():
        raise ValueError(f"model reference {ref!r}: expected NAME or NAME@VERSION (e.g. lpt@2)")
    return name, int(digits)


def list_versions(session: Session, states: Iterable[str] | None = None, *, current: bool = True) -> list[ModelVersion]:
    """Model versions by model name then version; ``current``: only those not retired, and the
    deployed one; ``states`` filters on :func:`state_of` (deployed, candidate, baseline, retired)."""
    rows = list(session.scalars(select(ModelVersion).join(Model).order_by(Model.name, ModelVersion.version)))
    deployed = deployed_version(session)
    if current:  # what the service evaluates: every version not retired, and the deployed one
        rows = [v for v in rows if v.stage != "retired" or (deployed is not None and v.id == deployed.id)]
    wanted = None if states is None else set(states)
    return [v for v in rows if wanted is None or state_of(v, deployed) in wanted]


def state_of(version: ModelVersion, deployed: ModelVersion | None) -> str:
    """"deployed" when the alias points at ``version``, else its stage."""
    return DEPLOYED if deployed is not None and version.id == deployed.id else version.stage


def deployed_version(session: Session) -> ModelVersion | None:
    """The version the ``deployed`` alias points at, or None when nothing is deployed (a lookup)."""
    alias = session.get(ModelAlias, DEPLOYED, populate_existing=True)
    return None if alias is None else session.get(ModelVersion, alias.version_id)


def set_deployed(session: Session, version: ModelVersion | None) -> None:
    """Point the ``deployed`` alias at ``version`` (None removes it)."""
    alias = session.get(ModelAlias, DEPLOYED)
    if version is None:
        if alias is not None:
            session.delete(alias)
    elif alias is None:
        session.add(ModelAlias(alias=DEPLOYED, version_id=version.id, updated_at=utcnow()))
    else:
        alias.version_id, alias.updated_at = version.id, utcnow()
    session.flush()


def add_event(
    session: Session, version: ModelVersion, from_state: str, to_state: str, reason: str, evidence: Mapping[str, Any]
) -> ModelEvent:
    """Record one state change of a model version (does not change the version itself)."""
    event = ModelEvent(
        model_version_id=version.id, from_state=from_state, to_state=to_state, reason=reason,
        evidence_json=json.dumps(evidence, sort_keys=True, default=str), at=utcnow(),
    )
    session.add(event)
    session.flush()
    return event


def set_stage(
    session: Session, version: ModelVersion, stage: str, reason: str, evidence: Mapping[str, Any]
) -> ModelEvent:
    """Move ``version`` to lifecycle ``stage`` and record the event with its reason and evidence."""
    if stage not in VERSION_STAGES:
        raise ValueError(f"model version stage {stage!r} is not one of {VERSION_STAGES}")
    from_state = state_of(version, deployed_version(session))
    version.stage = stage
    session.flush()
    return add_event(session, version, from_state, stage, reason, evidence)


def model_events(session: Session, model_version_id: int | None = None) -> list[ModelEvent]:
    """State changes, oldest first (optionally of one model version)."""
    stmt = select(ModelEvent).order_by(ModelEvent.at, ModelEvent.id)
    if model_version_id is not None:
        stmt = stmt.where(ModelEvent.model_version_id == model_version_id)
    return list(session.scalars(stmt))




def version_by_sha(session: Session, artifact_sha256: str | None) -> ModelVersion | None:
    """The version holding the artifact ``artifact_sha256`` (of any model), or None (a lookup)."""
    if not artifact_sha256:
        return None
    return session.scalars(select(ModelVersion).where(ModelVersion.artifact_sha256 == artifact_sha256)).first()
