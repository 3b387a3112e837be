"""The result file: one (model, shift set) evaluation, as the pipeline and the nightly job write it
and the service ingests it (docs/ARCHITECTURE.md, "Result file").

Schema ``lpt-result/2``: what the evaluation computed (model, shift set, measured metrics and
per-class accuracy on the labelled images, ``labels`` (how many images had labels, and which label
set), ``monitoring`` (label-free estimates and shift tests, when the model has a calibration),
code version) is separate from how this run went (``run``: seconds, images/s, device, time). The pipeline writes results without ``run``, so the same inputs and code give the same
bytes on every clone (DVC hashes them); the nightly job keeps ``run`` and the store records it.
``lpt-result/1`` files (run details at the top level) are still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpt_core.data.store import array_hash
from lpt_core.fsutil import atomic_file
from lpt_core.version import code_version

RESULT_SCHEMA = "lpt-result/2"
READABLE_SCHEMAS = ("lpt-result/1", RESULT_SCHEMA)
RUN_KEYS = ("eval_seconds", "images_per_second", "device", "created_at")
SHIFT_KEYS = ("id", "kind", "dataset", "corruption", "severity", "size", "content_hash")


@dataclass
class EvalResult:
    """One (model, shift set) evaluation in the result-file schema."""

    model: dict[str, Any]
    shift: dict[str, Any]
    metrics: list[dict[str, Any]]
    per_class: dict[str, Any]
    run: dict[str, Any] | None = None  # eval_seconds, images_per_second, device, created_at
    labels: dict[str, Any] | None = None  # n_images, n_labeled, hash (of a label set that came later)
    monitoring: dict[str, Any] | None = None  # lpt_core.monitoring.MonitorResult.to_dict()
    code_version: str = field(default_factory=code_version)

    def to_dict(self, *, with_run: bool = True) -> dict[str, Any]:
        """The result file's JSON object (``with_run=False``: without the run details)."""
        doc = {"schema": RESULT_SCHEMA, "model": self.model, "shift": self.shift, "metrics": self.metrics,
               "per_class": self.per_class, "code_version": self.code_version}  # fmt: skip
        for key in ("labels", "monitoring"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        if with_run and self.run is not None:
            doc["run"] = dict(self.run)
        return doc

    def to_json(self, *, with_run: bool = True) -> str:
        """The result file's text (indented JSON, sorted keys: the same result gives the same bytes)."""
        return json.dumps(self.to_dict(with_run=with_run), indent=2, sort_keys=True) + "\n"

    def write(self, path: str | Path, *, with_run: bool = True) -> Path:
        """Write the result file atomically (temp file + rename); returns the path."""
        path = Path(path)
        with atomic_file(path) as tmp:
            tmp.write_text(self.to_json(with_run=with_run), encoding="utf-8")
        return path

    def metric(self, name: str, group: str = "overall") -> float:
        """The value of metric ``name`` for ``group``; raises if absent."""
        for row in self.metrics:
            if row["name"] == name and row["group"] == group:
                return float(row["value"])
        raise KeyError(f"no metric {name!r} for group {group!r} in this result")


def run_details(result: Mapping[str, Any]) -> dict[str, Any]:
    """The run details of a result dict: its ``run`` block (``lpt-result/2``), else the top-level keys
    of ``lpt-result/1``; empty when the result has none (a pipeline result)."""
    source = result.get("run") if isinstance(result.get("run"), Mapping) else result
    return {k: source[k] for k in RUN_KEYS if isinstance(source, Mapping) and source.get(k) is not None}


def clean_shift_meta(images: np.ndarray, labels: np.ndarray, *, shift_id: str, dataset: str) -> dict[str, Any]:
    """The "shift" block for an unshifted split (kind clean, corruption none, severity 0)."""
    return {
        "id": shift_id, "kind": "clean", "dataset": dataset, "corruption": "none", "severity": 0,
        "size": int(len(labels)), "content_hash": array_hash(images, labels), "dvc_hash": None,
    }


def shift_block(shift_meta: Mapping[str, Any] | None, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The result's "shift" block from a batch.json-like mapping (default: an unnamed clean split)."""
    if shift_meta is None:
        return clean_shift_meta(images, labels, shift_id="unnamed-clean", dataset="unknown")
    missing = [k for k in SHIFT_KEYS if k not in shift_meta]
    if missing:
        raise ValueError(f"shift metadata lacks {missing}; got keys {sorted(shift_meta)}")
    if int(shift_meta["size"]) != len(labels):
        raise ValueError(f"shift {shift_meta['id']!r} declares size {shift_meta['size']}, got {len(labels)} images")
    block = {k: shift_meta[k] for k in SHIFT_KEYS}
    block["severity"] = int(block["severity"])
    block["dvc_hash"] = shift_meta.get("dvc_hash")
    return block


def model_block(meta: Mapping[str, Any], artifact_dir: Path, sha256: str, name: str | None) -> dict[str, Any]:
    """The result file's "model" block from an artifact's meta.json."""
    backbone = meta.get("backbone", {})
    counts = meta.get("param_counts", {})
    return {
        "name": name or meta.get("name") or artifact_dir.name,
        "method": meta["method"],
        "artifact": str(artifact_dir),
        "artifact_sha256": sha256,
        "backbone": backbone.get("name", "unknown") if isinstance(backbone, dict) else str(backbone),
        "backbone_fingerprint": backbone.get("fingerprint", "") if isinstance(backbone, dict) else "",
        "trainable_params": int(counts.get("trainable", 0)),
        "stored_params": int(counts.get("stored", 0)),
        "data_version": str(meta.get("data_version", "unknown")),
    }
