"""Shift batches: the unit of new domain-shift data, validated, stored atomically and versioned with DVC.

A batch is a folder ``<shifts root>/<batch id>/`` holding ``images.npy`` (uint8 N x H x W x 3),
``labels.npy`` (int64, in the label space of the prepared dataset it refers to), ``batch.json``
(schema ``lpt-shift-batch/1``, see docs/ARCHITECTURE.md), the validation result
(``validation.json`` / ``validation.html``) and, for generated batches, ``conditions.csv`` (the
test-split row, corruption and severity of every image). Corruptions follow Hendrycks &
Dietterich (ICLR 2019) through :func:`lpt_core.shifts.corrupt`.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lpt_core import dvcutil
from lpt_core.data.image_sources import read_image_folder
from lpt_core.data.sources import load_corrupted_npy
from lpt_core.data.store import load_prepared
from lpt_core.fsutil import atomic_dir
from lpt_core.validation import batch_content_hash, validate_batch

SCHEMA = "lpt-shift-batch/1"
MIXTURE = "mixture"


@dataclass(frozen=True)
class ShiftBatch:
    """A stored shift batch: its ``batch.json`` metadata, images, labels and folder."""

    meta: dict[str, Any]
    images: np.ndarray
    labels: np.ndarray
    path: Path | None = None

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def dvc_hash(self) -> str | None:
        """The md5 DVC recorded for this batch, or ``None`` when it is not versioned."""
        return None if self.path is None else dvcutil.dvc_hash(self.path)


def _shift_api() -> Any:
    """The corruption module, imported lazily (it pulls in scikit-image and Wand)."""
    from lpt_core import shifts

    return shifts


def make_batch(
    prepared_dir: str | Path, out_root: str | Path, corruption: str, severity: int | None, size: int | None,
    seed: int, *, use_dvc: bool = True, report_dir: str | Path | None = None,
) -> ShiftBatch:  # fmt: skip
    """Corrupt ``size`` seeded-random images of the prepared test split and register the batch.

    ``corruption="mixture"`` draws one benchmark corruption and one severity (1..5) per image,
    simulating drifting deployment data; its batch severity is 0.
    """
    if use_dvc:
        dvcutil.require_dvc_root(out_root)
    data = load_prepared(prepared_dir)
    test = data.test
    n = len(test) if size is None else int(size)
    if not 1 <= n <= len(test):
        raise ValueError(f"batch size must be in 1..{len(test)} (the test split), got {size}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(test), size=n, replace=False))
    clean = np.ascontiguousarray(test.images[rows])
    images, names, sevs = _corrupt(clean, corruption, severity, seed, rng)
    conditions = pd.DataFrame({"source_index": rows, "corruption": names, "severity": sevs})
    meta = {
        "kind": "generated", "source": f"{data.meta.get('name', 'prepared')}:test",
        "dataset": data.meta.get("name", Path(prepared_dir).name), "corruption": corruption,
        "severity": 0 if corruption == MIXTURE else int(severity or 0), "seed": int(seed),
    }  # fmt: skip
    target = {"num_classes": data.num_classes, "image_hw": tuple(test.images.shape[1:3])}
    return _register(images, np.asarray(test.labels[rows], np.int64), meta, out_root, target,
                     sevs, use_dvc, report_dir, conditions)  # fmt: skip


def _corrupt(
    clean: np.ndarray, corruption: str, severity: int | None, seed: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(corrupted images, per-image corruption names, per-image severities)."""
    shifts = _shift_api()
    n = len(clean)
    if corruption != MIXTURE:
        shifts.CORRUPTIONS.get(corruption)  # unknown names raise, listing the valid ones
        if severity is None or not 1 <= int(severity) <= 5:
            raise ValueError(f"severity must be in 1..5 for corruption {corruption!r}, got {severity}")
        out = shifts.corrupt(clean, corruption, int(severity), seed)
        return out, np.full(n, corruption, dtype=object), np.full(n, int(severity))
    choices = list(shifts.BENCHMARK_CORRUPTIONS)
    which = rng.integers(len(choices), size=n)
    sevs = rng.integers(1, 6, size=n)
    out = np.empty_like(clean)
    for c, s in sorted({(int(c), int(s)) for c, s in zip(which, sevs)}):
        rows = np.flatnonzero((which == c) & (sevs == s))
        sub_seed = int(np.random.SeedSequence([seed, c, s]).generate_state(1)[0])
        out[rows] = shifts.corrupt(clean[rows], choices[c], s, sub_seed)
    return out, np.array([choices[c] for c in which], dtype=object), sevs


def add_batch(
    path: str | Path, out_root: str | Path, dataset_dir: str | Path, *, corruption: str | None = None,
    severity: int | None = None, labels_path: str | Path | None = None, kind: str | None = None,
    source: str | None = None, use_dvc: bool = True, report_dir: str | Path | None = None,
) -> ShiftBatch:  # fmt: skip
    """Ingest a user's batch: a class-per-subfolder folder, an ``.npz`` with ``x`` and ``y``, or a
    published -C ``<corruption>.npy`` (with ``labels.npy`` beside it, sliced to ``severity``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"batch path {path} does not exist")
    if use_dvc:
        dvcutil.require_dvc_root(out_root)
    info = _dataset_info(dataset_dir)
    if path.is_dir():
        size = info["image_shape"][0]
        images, labels, _ = read_image_folder(path, info["class_names"], size)
        default_kind, default_corruption = "real", "unknown"
    elif path.suffix == ".npz":
        images, labels = _read_npz(path)
        default_kind, default_corruption = "real", "unknown"
    elif path.suffix == ".npy":
        if severity is None:
            raise ValueError(f"{path.name} is a -C file holding 5 severities: pass severity (1..5)")
        images, labels = load_corrupted_npy(path, labels_path, severity)
        default_kind, default_corruption = "published", path.stem
    else:
        raise ValueError(f"unsupported batch {path}: expected a folder, an .npz (x, y) or a -C .npy")
    meta = {
        "kind": kind or default_kind, "source": source or str(path.resolve()), "dataset": info["name"],
        "corruption": corruption or default_corruption, "severity": int(severity or 0),
    }  # fmt: skip
    target = {"num_classes": info["num_classes"], "image_hw": tuple(info["image_shape"][:2])}
    return _register(images, _as_labels(labels, path), meta, out_root, target,
                     severity, use_dvc, report_dir, None)  # fmt: skip


def _dataset_info(dataset_dir: str | Path) -> dict[str, Any]:
    f = Path(dataset_dir) / "dataset.json"
    if not f.is_file():
        raise FileNotFoundError(f"{dataset_dir} is not a prepared dataset (no dataset.json)")
    meta = json.loads(f.read_text())
    return {"name": meta.get("name", Path(dataset_dir).name), "class_names": meta["class_names"],
            "num_classes": int(meta["num_classes"]), "image_shape": meta["image_shape"]}  # fmt: skip


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise ValueError(f"{path} lacks array(s) {missing}; it holds {f.files}, expected x (images) and y (labels)")
            return np.asarray(f["x"]), np.asarray(f["y"])
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read {path} (truncated or corrupt .npz?): {exc}") from exc
    except ValueError as exc:
        if "lacks array" in str(exc):
            raise
        raise ValueError(f"cannot read {path} (truncated or corrupt .npz?): {exc}") from exc


def _as_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """int64 labels; float labels are accepted only when every value is a whole number."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        return labels.astype(np.int64)
    bad = labels.reshape(-1)[:5].tolist() if labels.size else []
    raise ValueError(f"labels in {path} must be integers, got dtype {labels.dtype} (first values {bad})")


def _register(
    images: np.ndarray, labels: np.ndarray, meta: dict[str, Any], out_root: str | Path, target: dict[str, Any],
    severity: Any, use_dvc: bool, report_dir: str | Path | None, conditions: pd.DataFrame | None,
) -> ShiftBatch:  # fmt: skip
    """Validate, then store atomically under ``out_root/<id>`` and ``dvc add`` it; nothing on failure."""
    out_root = Path(out_root)
    known = {m["content_hash"]: m["id"] for m in list_batches(out_root)}
    report = validate_batch(
        images, labels, num_classes=target["num_classes"], image_shape=target["image_hw"],
        severity=severity, registered_hashes=set(known),
    )  # fmt: skip
    if not report.success:
        if isinstance(images, np.ndarray) and images.size and batch_content_hash(images, labels) in known:
            report.notes.append(f"this batch is already registered as {known[batch_content_hash(images, labels)]}")
        if report_dir is not None:
            report.write(report_dir, stem=f"rejected-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
        report.raise_for_failure()
    content_hash = batch_content_hash(images, labels)
    meta = _full_meta(meta, content_hash, len(labels))
    final = out_root / meta["id"]
    _store(final, images, labels, meta, report, conditions)
    if use_dvc:
        try:
            dvcutil.dvc_add(final)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            dvcutil.dvc_forget(final)
            raise
    return ShiftBatch(meta, images, labels, final)


def _full_meta(meta: dict[str, Any], content_hash: str, size: int) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    corruption = re.sub(r"[^A-Za-z0-9_.]+", "_", str(meta["corruption"])) or "unknown"
    batch_id = f"{now:%Y%m%d}-{meta['kind']}-{corruption}-s{meta['severity']}-{content_hash[:8]}"
    return {"schema": SCHEMA, "id": batch_id, **meta, "corruption": corruption, "size": int(size),
            "content_hash": content_hash, "created_at": now.isoformat(timespec="seconds")}  # fmt: skip


def _store(
    final: Path, images: np.ndarray, labels: np.ndarray, meta: dict[str, Any], report: Any,
    conditions: pd.DataFrame | None,
) -> None:  # fmt: skip
    if final.exists():
        raise FileExistsError(f"shift batch {final} already exists")
    with atomic_dir(final, overwrite=False) as tmp:
        np.save(tmp / "images.npy", np.ascontiguousarray(images))
        np.save(tmp / "labels.npy", labels.astype(np.int64))
        if conditions is not None:
            conditions.to_csv(tmp / "conditions.csv", index=False)
        report.write(tmp, stem="validation")
        meta["validation"] = {"success": bool(report.success), "result_path": "validation.json"}
        (tmp / "batch.json").write_text(json.dumps(meta, indent=2, sort_keys=True))


def load_batch(batch_dir: str | Path, *, mmap: bool = True, verify: bool = True) -> ShiftBatch:
    """Load a stored batch; ``verify`` recomputes the content hash and raises on any mismatch."""
    batch_dir = Path(batch_dir)
    f = batch_dir / "batch.json"
    if not f.is_file():
        raise FileNotFoundError(f"{batch_dir} is not a shift batch (no batch.json)")
    meta = json.loads(f.read_text())
    if meta.get("schema") != SCHEMA:
        raise ValueError(f"{f} has schema {meta.get('schema')!r}, expected {SCHEMA!r}")
    try:
        images = np.load(batch_dir / "images.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        labels = np.load(batch_dir / "labels.npy", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"shift batch {batch_dir} has unreadable arrays: {exc}") from exc
    if verify and batch_content_hash(images, labels) != meta["content_hash"]:
        raise ValueError(f"shift batch {batch_dir}: content hash differs from batch.json (files edited?)")
    return ShiftBatch(meta, images, labels.astype(np.int64), batch_dir)


def list_batches(root: str | Path) -> list[dict[str, Any]]:
    """Metadata of every batch under ``root`` (each with ``path`` and ``dvc_hash``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for f in sorted(root.glob("*/batch.json")):
        if f.parent.name.startswith("."):
            continue
        meta = json.loads(f.read_text())
        meta.update(path=str(f.parent), dvc_hash=dvcutil.dvc_hash(f.parent))
        out.append(meta)
    return sorted(out, key=lambda m: (m.get("created_at", ""), m["id"]))


def registered_hashes(root: str | Path) -> set[str]:
    """Content hashes of the batches already stored under ``root``."""
    return {m["content_hash"] for m in list_batches(root)}


def read_index(shifts_dir: str | Path) -> list[dict[str, Any]]:
    """The batch.json of every set listed in ``shifts_dir/index.json`` (the pipeline's shift sets), in order."""
    shifts_dir = Path(shifts_dir)
    index_path = shifts_dir / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} missing: run the shifts stage first (dvc repro shifts)")
    sets = json.loads(index_path.read_text(encoding="utf-8"))["sets"]
    return [json.loads((shifts_dir / s["id"] / "batch.json").read_text(encoding="utf-8")) for s in sets]
