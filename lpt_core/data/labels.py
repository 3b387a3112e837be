"""Labels that arrive after a shift batch: checked against the batch, stored in its folder, versioned.

Production images come without labels; labels, if any, come days later and often for a sample.
:func:`label_batch` reads them (an ``.npy`` with one label per image, or a ``.csv`` keyed by
``index`` or ``id`` with a ``label`` or ``class`` column, for all images or a subset), refuses
anything inconsistent before writing, then stores ``labels/labels.npy`` (int64, -1 = no label)
and ``labels/labels.json`` atomically inside the batch folder and ``dvc add``s the folder again.
The batch's content hash (its images, and labels given with them) never changes; the label set
has its own hash (:func:`lpt_core.data.batches.label_set_hash`), so results can say which labels
they were measured on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lpt_core import dvcutil
from lpt_core.data.batch_inputs import as_labels
from lpt_core.data.batches import (
    LABEL_SET_SCHEMA,
    LABELS_DIR,
    LabelSet,
    dataset_info,
    label_set_hash,
    read_ids,
    read_label_set,
    read_meta,
)  # fmt: skip

try:  # POSIX: an advisory lock on the batch folder itself writes no lock file
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

KEY_COLUMNS, VALUE_COLUMNS = ("index", "id"), ("label", "class")


class AlreadyLabeledError(ValueError):
    """The batch has labels already and no replacement (with a reason) was asked for."""


def find_batch(shifts_root: str | Path, batch_id: str) -> Path:
    """The folder of batch ``batch_id`` under ``shifts_root``; ``FileNotFoundError`` when unknown."""
    if not batch_id or Path(batch_id).name != batch_id or batch_id.startswith("."):
        raise ValueError(f"{batch_id!r} is not a batch id (a folder name under the shifts root, see lpt shift list)")
    folder = Path(shifts_root) / batch_id
    if not (folder / "batch.json").is_file():
        raise FileNotFoundError(f"no shift batch {batch_id!r} under {shifts_root} (lpt shift list shows the ids)")
    return folder


def label_batch(
    batch_dir: str | Path, labels_path: str | Path, *, dataset_dir: str | Path, replace: bool = False,
    reason: str | None = None, use_dvc: bool = True,
) -> LabelSet:  # fmt: skip
    """Add (or, with ``replace`` and a non-empty ``reason``, replace) the labels of a stored batch.

    ``labels_path``: ``.npy`` of ints, one per image; or ``.csv`` with ``index`` (row) or ``id``
    (``ids.csv``) and ``label`` (0..C-1) or ``class`` (a class name of ``dataset_dir``), any subset
    of the images. Refused before anything is written: unknown batch, wrong length, labels out of
    range, unknown or duplicate ids or indices, a batch that has labels already (without
    ``replace``), ``dataset_dir`` not the batch's dataset, a DVC-tracked store without the batch's
    ``.dvc`` file. Returns the new label set.
    """
    batch_dir, labels_path = Path(batch_dir), Path(labels_path)
    meta = read_meta(batch_dir)
    if not labels_path.is_file():
        raise FileNotFoundError(f"labels file {labels_path} does not exist")
    reason = (reason or "").strip() or None
    if replace and reason is None:
        raise ValueError("replacing a batch's labels needs a non-empty reason (--reason \"...\")")
    if reason is not None and not replace:
        raise ValueError("a reason is recorded only when labels are replaced: pass --replace, or drop --reason")
    info = _matching_dataset(dataset_dir, meta)
    if use_dvc:
        dvcutil.require_dvc_root(batch_dir)
        if dvcutil.dvc_hash(batch_dir) is None:
            raise ValueError(f"batch {meta['id']} is not DVC-versioned ({dvcutil.dvc_file(batch_dir).name} "
                             f"missing): pass --no-dvc (use_dvc=False) to label it without versioning")  # fmt: skip
    with _locked(batch_dir):
        current = _current(batch_dir, meta)
        if current is not None and not replace:
            raise AlreadyLabeledError(f"batch {meta['id']} already has labels ({_describe(current)}): pass --replace with "
                             f"--reason \"...\" to replace them")  # fmt: skip
        labels, how = read_labels_file(labels_path, read_ids(batch_dir, int(meta["size"])), info["class_names"])
        if current is not None and label_set_hash(labels) == current.sha256:
            raise ValueError(f"{labels_path} holds the labels batch {meta['id']} has already ({_describe(current)})")
        doc = _label_doc(meta, info, labels, labels_path, how, current, reason)
        _write(batch_dir, labels, doc, use_dvc)
    return LabelSet(doc["sha256"], doc["n_labeled"], int(meta["size"]), "late", doc)


def _matching_dataset(dataset_dir: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    info = dataset_info(dataset_dir)
    if info["name"] != meta.get("dataset"):
        raise ValueError(f"batch {meta['id']} refers to dataset {meta.get('dataset')!r}, but {dataset_dir} is "
                         f"dataset {info['name']!r}: pass the batch's prepared dataset (--data)")  # fmt: skip
    return info


def _current(batch_dir: Path, meta: dict[str, Any]) -> LabelSet | None:
    """The batch's label set now (verified), or None."""
    given = None
    if meta.get("labeled", True):
        try:
            given = np.load(batch_dir / "labels.npy", allow_pickle=False).astype(np.int64)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"shift batch {batch_dir} has unreadable labels.npy: {exc}") from exc
    return read_label_set(batch_dir, meta, given)[1]


def _describe(s: LabelSet) -> str:
    where = "given with the batch" if s.origin == "batch" else "added later"
    return f"{s.n_labeled} of {s.size} labelled, {where}, label set {s.sha256[:12]}"


def read_labels_file(path: Path, ids: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray, dict[str, str]]:
    """(labels (N,) int64 with -1 where the file gives none, {format, keyed_by, value}) of a labels
    ``.npy`` or ``.csv`` for a batch with image ``ids``; ``ValueError`` naming the first problem."""
    if path.suffix == ".npy":
        return _read_npy(path, len(ids), len(class_names)), {"format": "npy", "keyed_by": "row", "value": "label"}
    if path.suffix == ".csv":
        return _read_csv(path, ids, class_names)
    raise ValueError(f"unsupported labels file {path}: expected an .npy (one label per image) or a .csv "
                     f"(index or id, label or class)")  # fmt: skip


def _read_npy(path: Path, n: int, num_classes: int) -> np.ndarray:
    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"cannot read labels {path} (truncated or corrupt .npy?): {exc}") from exc
    if raw.ndim != 1 or len(raw) != n:
        raise ValueError(f"{path} holds {raw.shape[0] if raw.ndim else 0} labels (shape {raw.shape}), the batch has "
                         f"{n} images: an .npy gives one label per image (a .csv may give a subset)")  # fmt: skip
    labels = as_labels(raw, path)
    _check_range(labels, num_classes, path, [f"row {i}" for i in range(n)])
    return labels


def _check_range(labels: np.ndarray, num_classes: int, path: Path, where: Sequence[str]) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise ValueError(f"{path}: {bad.size} label(s) out of range 0..{num_classes - 1}; first: {int(labels[bad[0]])} "
                         f"at {where[bad[0]]}")  # fmt: skip


def _one_of(columns: list[str], names: tuple[str, str], path: Path) -> str:
    found = [c for c in names if c in columns]
    if len(found) != 1:
        raise ValueError(f"{path} must have exactly one of the columns {list(names)}; it has {columns}")
    return found[0]


def _read_csv(path: Path, ids: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray, dict[str, str]]:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")  # Excel writes a BOM
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read labels {path}: {exc}") from exc
    columns = [str(c).strip() for c in table.columns]
    table.columns = columns
    key, value = _one_of(columns, KEY_COLUMNS, path), _one_of(columns, VALUE_COLUMNS, path)
    if table.empty:
        raise ValueError(f"{path} has no rows: give at least one label")
    where = [f"line {i + 2} ({key} {k!r})" for i, k in enumerate(table[key])]
    rows = _rows(table[key].str.strip().tolist(), key, ids, path, where)
    values = _values(table[value].str.strip().tolist(), value, class_names, path, where)
    labels = np.full(len(ids), -1, np.int64)
    labels[rows] = values
    return labels, {"format": "csv", "keyed_by": key, "value": value}


def _rows(keys: list[str], key: str, ids: np.ndarray, path: Path, where: list[str]) -> np.ndarray:
    """The batch rows the CSV's keys name; refuses keys the batch lacks and images named twice."""
    if key == "id":
        index = {str(i): r for r, i in enumerate(ids)}
        unknown = [i for i, k in enumerate(keys) if k not in index]
        if unknown:
            raise ValueError(f"{path}: {len(unknown)} id(s) the batch does not have; first: {where[unknown[0]]}")
        rows = np.array([index[k] for k in keys], np.int64)
    else:
        bad = [i for i, k in enumerate(keys) if not (k.isdigit() and int(k) < len(ids))]
        if bad:
            raise ValueError(f"{path}: {len(bad)} index(es) not a row 0..{len(ids) - 1} of the batch; "
                             f"first: {where[bad[0]]}")  # fmt: skip
        rows = np.array([int(k) for k in keys], np.int64)
    dup = pd.Series(rows).duplicated(keep=False).to_numpy()
    if dup.any():
        first = sorted({keys[i] for i in np.flatnonzero(dup)})[:5]
        raise ValueError(f"{path}: {int(dup.sum())} rows name the same image ({key} {first}); give each image once")
    return rows


def _values(values: list[str], column: str, class_names: Sequence[str], path: Path, where: list[str]) -> np.ndarray:
    """Class indices of the CSV's ``label`` (integers) or ``class`` (names) column."""
    missing = [i for i, v in enumerate(values) if v == ""]
    if missing:
        raise ValueError(f"{path}: {len(missing)} row(s) without a {column}; first: {where[missing[0]]} (leave "
                         f"an unlabelled image out of the file)")  # fmt: skip
    if column == "class":
        index = {name: i for i, name in enumerate(class_names)}
        unknown = [i for i, v in enumerate(values) if v not in index]
        if unknown:
            raise ValueError(f"{path}: {len(unknown)} unknown class name(s); first: {values[unknown[0]]!r} at "
                             f"{where[unknown[0]]}; expected one of {list(class_names)[:10]}")  # fmt: skip
        return np.array([index[v] for v in values], np.int64)
    not_int = [i for i, v in enumerate(values) if not v.lstrip("-").isdigit()]
    if not_int:
        raise ValueError(f"{path}: label {values[not_int[0]]!r} at {where[not_int[0]]} is not an integer class index")
    labels = np.array([int(v) for v in values], np.int64)
    _check_range(labels, len(class_names), path, where)
    return labels


def _label_doc(
    meta: dict[str, Any], info: dict[str, Any], labels: np.ndarray, source: Path, how: dict[str, str],
    current: LabelSet | None, reason: str | None,
) -> dict[str, Any]:  # fmt: skip
    """``labels/labels.json``: what the set is, where it came from and which set it replaced."""
    history = list(current.meta.get("history", [])) if current is not None else []
    if current is not None:
        history.append({"sha256": current.sha256, "origin": current.origin, "n_labeled": current.n_labeled,
                        "created_at": current.meta.get("created_at"), "source": current.meta.get("source")})  # fmt: skip
    return {
        "schema": LABEL_SET_SCHEMA, "batch_id": meta["id"], "dataset": info["name"],
        "num_classes": info["num_classes"], "size": int(meta["size"]), "n_labeled": int((labels >= 0).sum()),
        "sha256": label_set_hash(labels), "source": str(source.resolve()),
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(), **how,
        "replaced_sha256": None if current is None else current.sha256,
        "replaced_origin": None if current is None else current.origin, "reason": reason, "history": history,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip


@contextmanager
def _locked(batch_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the batch folder (two labellers of one batch run one at a time)."""
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(batch_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write(batch_dir: Path, labels: np.ndarray, doc: dict[str, Any], use_dvc: bool) -> None:
    """Put ``labels/`` in place atomically and re-version the batch; on any failure the previous
    ``labels/`` and ``.dvc`` file are restored. Scratch folders live beside the batch, not in it
    (DVC hashes everything inside)."""
    folder, dvc_file = batch_dir / LABELS_DIR, dvcutil.dvc_file(batch_dir)
    old_dvc = dvc_file.read_bytes() if dvc_file.is_file() else None
    scratch = Path(tempfile.mkdtemp(prefix=f".{batch_dir.name}.labels.", dir=batch_dir.parent))
    new, old = scratch / "new", scratch / "old"
    new.mkdir()
    np.save(new / "labels.npy", labels.astype(np.int64))
    (new / "labels.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    moved = placed = False
    try:
        if folder.exists():
            os.replace(folder, old)
            moved = True
        os.replace(new, folder)
        placed = True
        if use_dvc:
            dvcutil.dvc_add(batch_dir)
    except BaseException:
        if placed:
            shutil.rmtree(folder, ignore_errors=True)
        if moved:
            os.replace(old, folder)
        if old_dvc is not None:
            dvc_file.write_bytes(old_dvc)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
