"""``lpt ingest``: load the pipeline's model artifacts, shift sets and result files into the store.

Idempotent: everything is keyed by natural keys (model name + artifact hash, batch id + content
hash, (model version, batch, code version) for results), so a second run adds no rows. An
artifact whose model name is registered with another artifact is that model's next version (a
retrained model), never an error. Each result file is recorded in its own transaction, its eval
run marked succeeded together with its metrics.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from app.db import registry
from app.db import repository as repo
from app.db.schema import BATCH_KINDS, ModelVersion, ShiftBatch
from app.db.session import session_scope

log = logging.getLogger(__name__)

BATCH_SCHEMA = "lpt-shift-batch/1"
RESULT_SCHEMAS = ("lpt-result/1", "lpt-result/2")
STATE_BY_METHOD = {"lpt": "candidate", "vpt": "candidate", "full_ft": "baseline", "linear": "baseline"}
#: the phase a finished artifact of each method is in; earlier phases are intermediate artifacts
FINAL_PHASE = {"lpt": "phase2", "vpt": "phase1", "full_ft": "train", "linear": "train"}
Hasher = Callable[[Path], str]


@dataclass
class IngestSummary:
    """What one ingest added (a second identical ingest adds nothing)."""

    models_added: list[str] = field(default_factory=list)
    models_skipped: list[str] = field(default_factory=list)
    batches_added: list[str] = field(default_factory=list)
    results_added: int = 0
    results_present: int = 0
    job_run_id: int | None = None


def default_hasher(path: Path) -> str:
    """``lpt_core.artifact_files.artifact_sha256``: verifies the files, imports no torch."""
    from lpt_core.artifact_files import artifact_sha256

    return artifact_sha256(path)


def _first(meta: Mapping[str, Any], *paths: str, default: Any = ...) -> Any:
    """The first present value among dotted ``paths`` of ``meta``; KeyError naming them otherwise."""
    for dotted in paths:
        node: Any = meta
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            return node
    if default is ...:
        raise KeyError(f"meta.json lacks all of {list(paths)}")
    return default


def state_for_method(method: str) -> str:
    """The initial state of a pipeline model: candidate for prompt methods, baseline otherwise."""
    if method not in STATE_BY_METHOD:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(STATE_BY_METHOD)}")
    return STATE_BY_METHOD[method]


def model_values(artifact_dir: Path, name: str, hasher: Hasher) -> dict[str, Any]:
    """The registry values (model + version) of an artifact directory, from its meta.json and its verified hash."""
    meta_path = artifact_dir / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"model artifact {artifact_dir} has no meta.json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    backbone = _first(meta, "backbone.name", "backbone")
    method = str(_first(meta, "method"))
    # A method on a randomly initialised backbone is a reference point, never a deployment candidate.
    random_backbone = _first(meta, "backbone.source", default="") == "random"
    return {
        "name": name, "method": method, "stage": "baseline" if random_backbone else state_for_method(method),
        "backbone": backbone if isinstance(backbone, str) else json.dumps(backbone),
        "backbone_fingerprint": str(_first(meta, "backbone.fingerprint", "backbone_fingerprint")),
        "artifact_path": str(artifact_dir), "artifact_sha256": hasher(artifact_dir),
        "trainable_params": int(_first(meta, "param_counts.trainable", "params.trainable", "trainable_params")),
        "stored_params": int(_first(meta, "param_counts.stored", "params.stored", "stored_params")),
        "data_version": str(_first(meta, "data_version", "data.version", default="")),
        "class_counts_json": json.dumps(list(_first(meta, "class_counts", "train_class_counts", default=[]))),
        "created_at": _parse_time(_first(meta, "created_at", default=None)),
    }


def is_intermediate(artifact_dir: Path) -> bool:
    """Whether the artifact stopped before its method's last phase (LPT after phase 1)."""
    meta = json.loads((artifact_dir / "meta.json").read_text(encoding="utf-8"))
    phase = meta.get("phase")
    return phase is not None and phase != FINAL_PHASE.get(str(meta.get("method")), phase)


def find_artifacts(models_root: Path) -> list[tuple[str, Path]]:
    """(name, dir) of every artifact (a directory with meta.json) under ``models_root``; the name
    is the path relative to the root."""
    if not models_root.is_dir():
        raise FileNotFoundError(f"models folder {models_root} does not exist")
    found = sorted(p.parent for p in models_root.rglob("meta.json"))
    return [(p.relative_to(models_root).as_posix() or p.name, p) for p in found]


def batch_values(meta: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The ``shift_batches`` row of a batch.json; ``ValueError`` naming the first bad field.

    Only batches whose validation succeeded are accepted: bad data is refused before any write.
    """
    if meta.get("schema") != BATCH_SCHEMA:
        raise ValueError(f"batch {path}: schema {meta.get('schema')!r}, expected {BATCH_SCHEMA!r}")
    for key in ("id", "kind", "source", "dataset", "corruption", "severity", "size", "content_hash"):
        if key not in meta:
            raise ValueError(f"batch {path}: batch.json lacks {key!r}")
    if meta["kind"] not in BATCH_KINDS:
        raise ValueError(f"batch {path}: kind {meta['kind']!r} is not one of {BATCH_KINDS}")
    if not isinstance(meta["severity"], int) or not 0 <= meta["severity"] <= 5:
        raise ValueError(f"batch {path}: severity {meta['severity']!r} must be an int in 0..5")
    if not isinstance(meta["size"], int) or meta["size"] < 1:
        raise ValueError(f"batch {path}: size {meta['size']!r} must be a positive int")
    validation = meta.get("validation") or {}
    if validation.get("success") is not True:
        raise ValueError(f"batch {path}: validation did not succeed ({validation!r}); refusing it")
    return {
        "id": str(meta["id"]), "kind": meta["kind"], "source": str(meta["source"]), "dataset": str(meta["dataset"]),
        "corruption": str(meta["corruption"]), "severity": meta["severity"], "size": meta["size"],
        "content_hash": str(meta["content_hash"]), "dvc_hash": meta.get("dvc_hash"), "path": path,
        "validation_status": "passed", "validation_json": json.dumps(validation, sort_keys=True),
        "created_at": _parse_time(meta.get("created_at")),  # pipeline sets carry none (same bytes per clone)
        "labeled": bool(meta.get("labeled", True)), "n_labeled": meta["size"] if meta.get("labeled", True) else 0,
    }


def read_batch_dir(batch_dir: Path) -> dict[str, Any]:
    """The ``shift_batches`` row of a batch directory (batch.json plus the DVC hash if tracked)."""
    meta_path = batch_dir / "batch.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"shift batch {batch_dir} has no batch.json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    values = batch_values(meta, str(batch_dir))
    values["dvc_hash"] = values["dvc_hash"] or _dvc_hash(batch_dir)
    return values


def _dvc_hash(batch_dir: Path) -> str | None:
    """The md5 DVC recorded for the batch (None when the batch is not DVC-tracked)."""
    from lpt_core.dvcutil import dvc_hash

    return dvc_hash(batch_dir)


def shift_values_from_result(shift: Mapping[str, Any], result_path: Path) -> dict[str, Any]:
    """A ``shift_batches`` row for a result's shift set whose folder was not ingested: its path is
    empty, so the nightly job never tries to load it (only the pipeline evaluates it)."""
    meta = {"schema": BATCH_SCHEMA, "source": "pipeline", "size": shift.get("size"),
            "created_at": None, "validation": {"success": True, "source": "pipeline result"}, **shift}
    meta["created_at"] = meta["created_at"] or datetime.now(timezone.utc).isoformat()
    values = batch_values(meta, str(result_path))
    values["path"] = ""
    return values


def _parse_time(value: Any) -> datetime:
    """An aware UTC datetime from ISO-8601 text (naive text is taken as UTC); now when absent."""
    if value is None:
        return datetime.now(timezone.utc)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def ingest(
    engine: Engine, *, results_dir: Path | None, models_dir: Path | None, shift_dirs: Iterable[Path] = (),
    hasher: Hasher = default_hasher,
) -> IngestSummary:
    """Load artifacts, shift batches and results into the store; see the module docstring."""
    summary = IngestSummary()
    if models_dir is not None:
        for name, path in find_artifacts(Path(models_dir)):
            if is_intermediate(path):  # e.g. LPT's phase-1 artifact, the input of phase 2
                summary.models_skipped.append(name)
                continue
            with session_scope(engine) as s:
                version, created = registry.upsert_model(s, model_values(path, name, hasher), "registered by lpt ingest")
                label = f"{name}@{version.version}"
            if created:
                summary.models_added.append(label)
    for root in shift_dirs:
        for batch_dir in _batch_dirs(Path(root)):
            with session_scope(engine) as s:
                _, created = repo.upsert_batch(s, read_batch_dir(batch_dir))
            if created:
                summary.batches_added.append(batch_dir.name)
    if results_dir is not None:
        for path in sorted(Path(results_dir).rglob("*.json")):
            _ingest_result(engine, path, summary)
    log.info("ingest: %d models, %d batches, %d results added (%d already present)", len(summary.models_added),
             len(summary.batches_added), summary.results_added, summary.results_present)
    return summary


def _batch_dirs(root: Path) -> list[Path]:
    """``root`` itself when it is a batch, else its batch subdirectories."""
    if not root.is_dir():
        raise FileNotFoundError(f"shift folder {root} does not exist")
    if (root / "batch.json").is_file():
        return [root]
    return sorted(p.parent for p in root.glob("*/batch.json"))


def _ingest_result(engine: Engine, path: Path, summary: IngestSummary) -> None:
    """Record one result file in its own transaction (nothing when already recorded)."""
    result = json.loads(path.read_text(encoding="utf-8"))
    if result.get("schema") not in RESULT_SCHEMAS:
        raise ValueError(f"result {path}: schema {result.get('schema')!r}, expected one of {list(RESULT_SCHEMAS)}")
    code_version = str(result["code_version"])
    with session_scope(engine) as s:
        version = _result_version(s, result["model"], path)
        shift = result["shift"]
        batch = s.get(ShiftBatch, shift["id"]) or repo.upsert_batch(s, shift_values_from_result(shift, path))[0]
        if repo.run_status(s, version.id, batch.id, code_version) == "succeeded":
            summary.results_present += 1
            return
        if summary.job_run_id is None:
            summary.job_run_id = repo.start_job_run(s, "pipeline", code_version).id
        run = repo.begin_eval_run(s, version.id, batch.id, code_version, summary.job_run_id)
        repo.complete_eval_run(s, run.id, result)
        repo.finish_job_run(s, summary.job_run_id, "succeeded", pairs_evaluated=summary.results_added + 1)
    summary.results_added += 1


def _result_version(session: Any, section: Mapping[str, Any], path: Path) -> ModelVersion:
    """The model version a result refers to (by artifact hash), registering it from the result's
    own model section (as a version of the model it names) when the artifact was not ingested."""
    sha = section.get("artifact_sha256")
    found = registry.version_by_sha(session, sha)
    if found is not None:
        return found
    try:
        values = {
            "name": section["name"], "method": section["method"], "stage": state_for_method(section["method"]),
            "backbone": section["backbone"], "backbone_fingerprint": section["backbone_fingerprint"],
            "artifact_path": section.get("artifact", ""), "artifact_sha256": sha,
            "trainable_params": int(section["trainable_params"]), "stored_params": int(section["stored_params"]),
            "data_version": str(section.get("data_version") or ""), "created_at": _parse_time(None),
        }
    except KeyError as exc:
        raise ValueError(f"result {path}: model section lacks {exc}") from None
    return registry.upsert_model(session, values, f"registered from result {path.name}")[0]
