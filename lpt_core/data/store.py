"""Prepared datasets on disk: memory-mappable uint8 image arrays plus a manifest.

Layout of a prepared dataset directory::

    dataset.json                 name, source, class names, training counts, profile, hashes
    train/ val/ test/            one folder per split
        images.npy               uint8 (N, H, W, 3), memory-mappable
        labels.npy               int64 (N,)
        manifest.csv             id, label, source_index, split, sha256

Loaders hand arrays straight to batched tensor code: no per-image PIL work.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lpt_core.fsutil import atomic_dir

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ArraySplit:
    """Images (uint8, N x H x W x 3) with int64 labels; ``ids`` and ``source_index`` are optional."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray | None = None
    source_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_images(self.images, "images")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError(
                f"labels must be 1-D with one entry per image: got shape {self.labels.shape} "
                f"for {len(self.images)} images"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray, out: str | Path | None = None) -> ArraySplit:
        """The rows ``index`` of this split: copied into memory, or with ``out`` into a
        memory-mapped ``.npy`` file at that path (:func:`take_rows`)."""
        pick = lambda a: None if a is None else np.asarray(a)[index]  # noqa: E731
        return ArraySplit(
            take_rows(self.images, index, out),
            np.asarray(self.labels[index], dtype=np.int64),
            pick(self.ids),
            pick(self.source_index),
        )


@dataclass(frozen=True)
class PreparedDataset:
    """A long-tailed training split, a held-out validation split and a balanced test split."""

    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    class_names: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> np.ndarray:
        """Training-image count per class (after the validation hold-out), int64 (C,)."""
        return np.bincount(self.train.labels, minlength=self.num_classes).astype(np.int64)


ROW_CHUNK_BYTES = 32 * 2**20  # rows copied per step by take_rows into a file


def take_rows(images: np.ndarray, index: np.ndarray, out: str | Path | None = None) -> np.ndarray:
    """``images[index]`` as a new C-contiguous array; with ``out``, a memory-mapped ``.npy`` file
    written ROW_CHUNK_BYTES at a time, so neither the source nor the result is ever held whole."""
    index = np.asarray(index)
    if index.dtype == bool:
        index = np.flatnonzero(index)
    if out is None:
        return np.ascontiguousarray(images[index])
    rows = np.lib.format.open_memmap(Path(out), mode="w+", dtype=images.dtype, shape=(len(index), *images.shape[1:]))
    step = max(1, ROW_CHUNK_BYTES // max(1, images[:1].nbytes))
    for start in range(0, len(index), step):
        rows[start:start + step] = images[index[start:start + step]]
    rows.flush()
    return rows


def file_backed(images: np.ndarray) -> bool:
    """Whether ``images`` (or an array it views) is memory-mapped from a file."""
    import mmap

    a: object = images
    while a is not None:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


def check_images(images: np.ndarray, what: str) -> None:
    """Raise ``ValueError`` unless ``images`` is a uint8 (N, H, W, 3) array."""
    if not isinstance(images, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{what} must have shape (N, H, W, 3), got {images.shape}")


def image_hashes(images: np.ndarray) -> np.ndarray:
    """sha256 hex digest of each image's bytes (used for ids and train/test overlap checks)."""
    return np.array([hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images])


def array_hash(*arrays: np.ndarray) -> str:
    """One sha256 over the shapes, dtypes and bytes of ``arrays`` (a content version)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data.cast("B") if a.size else b"")  # cast() rejects zero-size shapes
    return h.hexdigest()


def save_prepared(root: str | Path, data: PreparedDataset) -> Path:
    """Write ``data`` to ``root`` atomically (a temp dir renamed into place); returns ``root``."""
    root = Path(root)
    with atomic_dir(root) as tmp:
        hashes = {}
        for name in SPLITS:
            split = getattr(data, name)
            hashes[name] = _save_split(tmp / name, split, name)
        meta = dict(data.meta)
        meta.update(
            class_names=list(data.class_names),
            num_classes=data.num_classes,
            train_class_counts=data.class_counts.tolist(),
            sizes={name: len(getattr(data, name)) for name in SPLITS},
            image_shape=list(data.train.images.shape[1:]),
            content_hashes=hashes,
        )
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return root


def _save_split(folder: Path, split: ArraySplit, name: str) -> str:
    folder.mkdir(parents=True)
    np.save(folder / "images.npy", np.ascontiguousarray(split.images))
    np.save(folder / "labels.npy", split.labels.astype(np.int64))
    sha = image_hashes(split.images)
    ids = split.ids if split.ids is not None else np.array([f"{name}-{i:07d}" for i in range(len(split))])
    src = split.source_index if split.source_index is not None else np.arange(len(split))
    pd.DataFrame(
        {"id": ids, "label": split.labels, "source_index": src, "split": name, "sha256": sha}
    ).to_csv(folder / "manifest.csv", index=False)
    return array_hash(split.images, split.labels)


def load_prepared(root: str | Path, *, mmap: bool = True) -> PreparedDataset:
    """Load a prepared dataset; image arrays are memory-mapped unless ``mmap=False``."""
    root = Path(root)
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{root} is not a prepared dataset (no dataset.json); run the prepare stage "
            f"(`dvc repro prepare` or `lpt prepare`) first"
        )
    meta = json.loads(meta_path.read_text())
    splits = {name: load_split(root / name, mmap=mmap) for name in SPLITS}
    return PreparedDataset(**splits, class_names=list(meta["class_names"]), meta=meta)


def load_split(folder: str | Path, *, mmap: bool = True) -> ArraySplit:
    """Load one split folder written by :func:`save_prepared`."""
    folder = Path(folder)
    for f in ("images.npy", "labels.npy", "manifest.csv"):
        if not (folder / f).is_file():
            raise FileNotFoundError(f"prepared split {folder} is missing {f}")
    try:
        images = np.load(folder / "images.npy", mmap_mode="r" if mmap else None)
        labels = np.load(folder / "labels.npy")
    except ValueError as exc:
        raise ValueError(f"prepared split {folder} has a corrupt array file: {exc}") from exc
    manifest = pd.read_csv(folder / "manifest.csv")
    if len(manifest) != len(labels):
        raise ValueError(f"{folder}/manifest.csv has {len(manifest)} rows for {len(labels)} labels")
    return ArraySplit(
        images, labels.astype(np.int64), manifest["id"].to_numpy(str), manifest["source_index"].to_numpy()
    )


# --- the shot-group rule a prepared dataset's protocol implies ----------------------------------

#: heldout: a validation hold-out from the long-tailed split (the default); released: none (the
#: authors' protocol: whole split, official val lists where the source has them)
PROTOCOLS = ("heldout", "released")


@dataclass(frozen=True)
class GroupRule:
    """How a protocol groups classes into many/medium/few and pools the group accuracy."""

    class_counts: np.ndarray  # int64 (C,): the training counts the groups are cut on
    few_includes_20: bool  # released: a class with exactly 20 training images is "few"
    pooling: str  # lpt_core.metrics.GROUP_POOLINGS: "class_mean" or "pooled"


def group_rule(meta: dict[str, Any], protocol: str | None = None) -> GroupRule:
    """The shot-group rule ``protocol`` (default: the dataset's own) implies for a prepared
    dataset's ``dataset.json`` ``meta``.

    ``heldout``: the counts the model trains on (after the hold-out), many > 100, medium
    20..100, few < 20, mean of per-class accuracies. ``released``: the full long-tailed training
    counts (before any hold-out), few <= 20, correct / images pooled over the group's test images
    (the released ``eval_phase2.py``).
    """
    protocol = protocol or meta.get("protocol", "heldout")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    if protocol == "heldout":
        return GroupRule(np.asarray(meta["train_class_counts"], dtype=np.int64), False, "class_mean")
    full = meta.get("full_train_class_counts") or meta.get("profile", {}).get("counts_before_holdout")
    if full is None:
        raise KeyError("dataset.json records no full training counts (full_train_class_counts); prepare it again")
    return GroupRule(np.asarray(full, dtype=np.int64), True, "pooled")
