"""Shift batches: the unit of new domain-shift data, validated, stored atomically and versioned with DVC.

A batch is a folder ``<shifts root>/<batch id>/`` holding ``images.npy`` (uint8 N x H x W x 3),
``labels.npy`` (int64, in the label space of the prepared dataset it refers to; absent for an
unlabeled batch, ``"labeled": false``), ``ids.csv`` (row, id of every image), ``batch.json``
(schema ``lpt-shift-batch/1``, see docs/ARCHITECTURE.md), the validation result
(``validation.json`` / ``validation.html``), for generated batches ``conditions.csv`` (the
test-split row, corruption and severity of every image) and, once labels arrive later
(:mod:`lpt_core.data.labels`), ``labels/labels.npy`` + ``labels/labels.json``. Corruptions follow
Hendrycks & Dietterich (ICLR 2019) through :func:`lpt_core.shifts.corrupt`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lpt_core import dvcutil
from lpt_core.data.batch_inputs import BatchInput, read_input
from lpt_core.data.store import load_prepared
from lpt_core.fsutil import atomic_dir
from lpt_core.validation import batch_content_hash, validate_batch

SCHEMA = "lpt-shift-batch/1"
MIXTURE = "mixture"
IDS_FILE = "ids.csv"
LABELS_DIR = "labels"  # labels that arrived after the batch: labels/labels.npy + labels/labels.json
LABEL_SET_SCHEMA = "lpt-label-set/1"


def label_set_hash(labels: np.ndarray) -> str:
    """sha256 of a label array's int64 bytes (-1 = no label): the identity of a label set."""
    a = np.ascontiguousarray(np.asarray(labels).astype(np.int64))
    return hashlib.sha256(a.data.cast("B") if a.size else b"").hexdigest()


@dataclass(frozen=True)
class LabelSet:
    """The labels a batch has: ``origin`` ``"batch"`` (given with the images: ``labels.npy``, part
    of the content hash) or ``"late"`` (``labels/``, added later); ``sha256`` keys results
    measured on it; ``meta`` is ``labels/labels.json`` for a late set."""

    sha256: str
    n_labeled: int
    size: int
    origin: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every image has a label."""
        return self.n_labeled == self.size

    def to_dict(self) -> dict[str, Any]:
        """The summary ``list_batches`` shows (``sha256`` is None there for ``origin == "batch"``)."""
        keys = ("replaced_sha256", "reason", "created_at", "source")
        return {"origin": self.origin, "sha256": self.sha256, "n_labeled": self.n_labeled, "size": self.size,
                **{k: self.meta.get(k) for k in keys if self.origin == "late"}}  # fmt: skip


@dataclass(frozen=True)
class ShiftBatch:
    """A stored shift batch: its ``batch.json`` metadata, images, labels (``None`` for an
    unlabeled batch without late labels; -1 where a late label set has no label), folder and
    label set."""

    meta: dict[str, Any]
    images: np.ndarray
    labels: np.ndarray | None
    path: Path | None = None
    label_set: LabelSet | None = None

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def labeled(self) -> bool:
        """Whether labels came with the images (``batch.json`` ``labeled``; old batches: True)."""
        return bool(self.meta.get("labeled", True))

    @property
    def labeled_rows(self) -> np.ndarray:
        """Rows with a label (label >= 0): every row for labels given with the batch, none without labels."""
        return np.zeros(0, np.int64) if self.labels is None else np.flatnonzero(self.labels >= 0)

    @cached_property
    def ids(self) -> np.ndarray:
        """One id per image (``ids.csv``; row indices for batches stored without it)."""
        n = int(self.meta.get("size", len(self.images)))
        return np.array([str(i) for i in range(n)], dtype=object) if self.path is None else read_ids(self.path, n)

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
    ids = [str(i) for i in (test.ids[rows] if test.ids is not None else rows)]
    inp = BatchInput(images, np.asarray(test.labels[rows], np.int64), ids, "generated", corruption)
    return _register(inp, meta, out_root, target, sevs, use_dvc, report_dir, conditions)


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
    unlabeled: bool = False,
) -> ShiftBatch:  # fmt: skip
    """Ingest a user's batch: a class-per-subfolder folder, an ``.npz`` with ``x`` and ``y``, or a
    published -C ``<corruption>.npy`` (with ``labels.npy`` beside it, sliced to ``severity``).

    ``unlabeled=True``: a folder of image files (no class folders; ids = sorted file names), an
    ``.npz`` with ``x`` only or an images ``.npy`` (ids = row indices), stored without labels
    (``"labeled": false``, content hash over the images only). An input of the other kind is
    refused (:class:`lpt_core.data.batch_inputs.LabelsMismatchError`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"batch path {path} does not exist")
    if use_dvc:
        dvcutil.require_dvc_root(out_root)
    info = dataset_info(dataset_dir)
    inp = read_input(path, info, unlabeled=unlabeled, severity=severity, labels_path=labels_path)
    meta = {
        "kind": kind or inp.kind, "source": source or str(path.resolve()), "dataset": info["name"],
        "corruption": corruption or inp.corruption, "severity": int(severity or 0),
    }  # fmt: skip
    target = {"num_classes": info["num_classes"], "image_hw": tuple(info["image_shape"][:2])}
    return _register(inp, meta, out_root, target, severity, use_dvc, report_dir, None)


def dataset_info(dataset_dir: str | Path) -> dict[str, Any]:
    """Name, class names, class count and image shape of a prepared dataset, from its dataset.json."""
    f = Path(dataset_dir) / "dataset.json"
    if not f.is_file():
        raise FileNotFoundError(f"{dataset_dir} is not a prepared dataset (no dataset.json)")
    meta = json.loads(f.read_text())
    return {"name": meta.get("name", Path(dataset_dir).name), "class_names": meta["class_names"],
            "num_classes": int(meta["num_classes"]), "image_shape": meta["image_shape"]}  # fmt: skip


def _known(out_root: Path, labeled: bool) -> tuple[dict[str, str], dict[str, str]]:
    """({content hash: id} of the stored batches, {images-only hash: id} a new batch must not
    repeat): an unlabeled batch must not repeat any batch's images; a labelled one those of an
    unlabeled batch (label that batch instead). Labelled batches may share images, as before."""
    metas = list_batches(out_root)
    content = {m["content_hash"]: m["id"] for m in metas}
    images: dict[str, str] = {}
    for m in metas:  # (an unlabeled batch's content hash is its images' hash: covered by ``content``)
        if labeled and not m.get("labeled", True):
            images[m["content_hash"]] = m["id"]
        elif not labeled and m.get("labeled", True) and m.get("images_hash"):
            images[m["images_hash"]] = m["id"]
    return content, images


def _register(
    inp: BatchInput, meta: dict[str, Any], out_root: str | Path, target: dict[str, Any], severity: Any,
    use_dvc: bool, report_dir: str | Path | None, conditions: pd.DataFrame | None,
) -> ShiftBatch:  # fmt: skip
    """Validate, then store atomically under ``out_root/<id>`` and ``dvc add`` it; nothing on failure."""
    out_root = Path(out_root)
    images, labels = inp.images, inp.labels
    content, by_images = _known(out_root, labels is not None)
    report = validate_batch(
        images, labels, num_classes=target["num_classes"], image_shape=target["image_hw"],
        severity=severity, registered_hashes=set(content), registered_image_hashes=set(by_images),
    )  # fmt: skip
    if not report.success:
        _refuse(report, images, labels, content, by_images, report_dir)
    content_hash = batch_content_hash(images, labels)
    meta = _full_meta(meta, content_hash, batch_content_hash(images, None), len(images), labels is not None)
    final = out_root / meta["id"]
    _store(final, inp, meta, report, conditions)
    if use_dvc:
        try:
            dvcutil.dvc_add(final)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            dvcutil.dvc_forget(final)
            raise
    label_set = None if labels is None else LabelSet(label_set_hash(labels), len(labels), len(labels), "batch")
    return ShiftBatch(meta, images, labels, final, label_set)


def _refuse(
    report: Any, images: np.ndarray, labels: np.ndarray | None, content: dict[str, str],
    by_images: dict[str, str], report_dir: str | Path | None,
) -> None:  # fmt: skip
    """Name the batch a duplicate repeats, write the report to ``report_dir`` and raise."""
    if isinstance(images, np.ndarray) and images.size:
        h, hi = batch_content_hash(images, labels), batch_content_hash(images, None)
        if h in content:
            report.notes.append(f"this batch is already registered as {content[h]}")
        elif hi in by_images and labels is not None:
            report.notes.append(f"its images are already registered as the unlabeled batch {by_images[hi]}: "
                                f"add the labels to it (lpt shift label {by_images[hi]} LABELS)")  # fmt: skip
        elif hi in by_images:
            report.notes.append(f"its images are already registered as {by_images[hi]}")
    if report_dir is not None:
        report.write(report_dir, stem=f"rejected-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
    report.raise_for_failure()


def _full_meta(meta: dict[str, Any], content_hash: str, images_hash: str, size: int, labeled: bool) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    corruption = re.sub(r"[^A-Za-z0-9_.]+", "_", str(meta["corruption"])) or "unknown"
    batch_id = f"{now:%Y%m%d}-{meta['kind']}-{corruption}-s{meta['severity']}-{content_hash[:8]}"
    return {"schema": SCHEMA, "id": batch_id, **meta, "corruption": corruption, "size": int(size),
            "labeled": bool(labeled), "content_hash": content_hash, "images_hash": images_hash,
            "created_at": now.isoformat(timespec="seconds")}  # fmt: skip


def _store(final: Path, inp: BatchInput, meta: dict[str, Any], report: Any, conditions: pd.DataFrame | None) -> None:
    if final.exists():
        raise FileExistsError(f"shift batch {final} already exists")
    with atomic_dir(final, overwrite=False) as tmp:
        np.save(tmp / "images.npy", np.ascontiguousarray(inp.images))
        if inp.labels is not None:
            np.save(tmp / "labels.npy", inp.labels.astype(np.int64))
        pd.DataFrame({"row": np.arange(len(inp.ids)), "id": inp.ids}).to_csv(tmp / IDS_FILE, index=False)
        if conditions is not None:
            conditions.to_csv(tmp / "conditions.csv", index=False)
        report.write(tmp, stem="validation")
        meta["validation"] = {"success": bool(report.success), "result_path": "validation.json"}
        (tmp / "batch.json").write_text(json.dumps(meta, indent=2, sort_keys=True))


def read_meta(batch_dir: str | Path) -> dict[str, Any]:
    """The ``batch.json`` of a stored batch; ``FileNotFoundError``/``ValueError`` when it is none."""
    f = Path(batch_dir) / "batch.json"
    if not f.is_file():
        raise FileNotFoundError(f"{batch_dir} is not a shift batch (no batch.json)")
    meta = json.loads(f.read_text())
    if meta.get("schema") != SCHEMA:
        raise ValueError(f"{f} has schema {meta.get('schema')!r}, expected {SCHEMA!r}")
    return meta


def read_ids(batch_dir: str | Path, size: int) -> np.ndarray:
    """The ids of a batch's ``size`` images, by row (``ids.csv``; row indices when it is absent)."""
    f = Path(batch_dir) / IDS_FILE
    if not f.is_file():
        return np.array([str(i) for i in range(size)], dtype=object)
    table = pd.read_csv(f, dtype={"row": np.int64, "id": str}, keep_default_na=False)
    if list(table.columns) != ["row", "id"] or table["row"].tolist() != list(range(size)):
        raise ValueError(f"{f} must have columns row,id with rows 0..{size - 1}; got {list(table.columns)}, "
                         f"{len(table)} rows")  # fmt: skip
    return table["id"].to_numpy(dtype=object)


def read_label_set(
    batch_dir: str | Path, meta: dict[str, Any], batch_labels: np.ndarray | None, *, verify: bool = True
) -> tuple[np.ndarray | None, LabelSet | None]:
    """(labels, label set) of a batch: the late set in ``labels/`` when there is one (-1 = no
    label), else the labels stored with it (``batch_labels``), else (None, None)."""
    folder = Path(batch_dir) / LABELS_DIR
    if not (folder / "labels.json").is_file():
        if batch_labels is None:
            return None, None
        n = len(batch_labels)
        return batch_labels, LabelSet(label_set_hash(batch_labels), n, n, "batch")
    doc = json.loads((folder / "labels.json").read_text())
    try:
        labels = np.load(folder / "labels.npy", allow_pickle=False).astype(np.int64)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"shift batch {batch_dir} has an unreadable label set: {exc}") from exc
    if verify and (len(labels) != int(meta["size"]) or label_set_hash(labels) != doc.get("sha256")):
        raise ValueError(f"shift batch {batch_dir}: labels/labels.npy differs from labels/labels.json (edited?)")
    return labels, LabelSet(str(doc["sha256"]), int(doc["n_labeled"]), int(meta["size"]), "late", doc)


def load_batch(batch_dir: str | Path, *, mmap: bool = True, verify: bool = True) -> ShiftBatch:
    """Load a stored batch; ``verify`` recomputes the content hash (and the late label set's
    hash) and raises on any mismatch. ``labels`` is None for an unlabeled batch without late
    labels; with late labels it is their (N,) int64 array, -1 where an image has none."""
    batch_dir = Path(batch_dir)
    meta = read_meta(batch_dir)
    labeled = bool(meta.get("labeled", True))
    try:
        images = np.load(batch_dir / "images.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        batch_labels = np.load(batch_dir / "labels.npy", allow_pickle=False).astype(np.int64) if labeled else None
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"shift batch {batch_dir} has unreadable arrays: {exc}") from exc
    if verify and batch_content_hash(images, batch_labels) != meta["content_hash"]:
        raise ValueError(f"shift batch {batch_dir}: content hash differs from batch.json (files edited?)")
    labels, label_set = read_label_set(batch_dir, meta, batch_labels, verify=verify)
    return ShiftBatch(meta, images, labels, batch_dir, label_set)


def label_summary(batch_dir: str | Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """:meth:`LabelSet.to_dict` of a batch without reading its arrays (``sha256`` None for labels
    stored with the batch); None for an unlabeled batch without late labels."""
    f = Path(batch_dir) / LABELS_DIR / "labels.json"
    if f.is_file():
        doc = json.loads(f.read_text())
        return LabelSet(str(doc["sha256"]), int(doc["n_labeled"]), int(meta["size"]), "late", doc).to_dict()
    if not meta.get("labeled", True):
        return None
    return {"origin": "batch", "sha256": None, "n_labeled": int(meta["size"]), "size": int(meta["size"])}


def list_batches(root: str | Path) -> list[dict[str, Any]]:
    """Metadata of every batch under ``root`` (each with ``path``, ``dvc_hash`` and ``label_set``:
    :func:`label_summary`), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for f in sorted(root.glob("*/batch.json")):
        if f.parent.name.startswith("."):
            continue
        meta = json.loads(f.read_text())
        meta.update(path=str(f.parent), dvc_hash=dvcutil.dvc_hash(f.parent), label_set=label_summary(f.parent, meta))
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
