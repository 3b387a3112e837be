"""Reading a user's shift-batch input into arrays: labelled or unlabeled, folder, ``.npz`` or ``.npy``.

Labelled inputs: a class-per-subfolder folder, an ``.npz`` with ``x`` and ``y``, or a published
-C ``<corruption>.npy`` with ``labels.npy`` beside it (Hendrycks & Dietterich, ICLR 2019).
Unlabeled inputs (production images, labels arrive later or never): a folder of image files
without class folders (ids = file names, sorted), an ``.npz`` with ``x`` only, or an images
``.npy`` (uint8 N x H x W x 3; ids = row indices). Asking for one kind and giving the other is
refused with :class:`LabelsMismatchError` naming the switch that fits.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpt_core.data.image_sources import folder_layout, read_class_folder, read_flat_folder
from lpt_core.data.sources import load_corrupted_npy


class LabelsMismatchError(ValueError):
    """A labelled batch was asked for and the input has no labels (``has_labels`` False), or an
    unlabeled batch was asked for and the input has labels (``has_labels`` True)."""

    def __init__(self, message: str, *, has_labels: bool) -> None:
        super().__init__(message)
        self.has_labels = has_labels


@dataclass(frozen=True)
class BatchInput:
    """Arrays read from an input: images, labels (``None``: unlabeled), one id per image, and the
    kind and corruption a batch of it has unless the caller says otherwise."""

    images: np.ndarray
    labels: np.ndarray | None
    ids: list[str]
    kind: str
    corruption: str


def read_input(
    path: Path, info: dict[str, Any], *, unlabeled: bool, severity: int | None, labels_path: str | Path | None
) -> BatchInput:
    """Read ``path`` (folder, ``.npz`` or ``.npy``) for the prepared dataset ``info``
    (``class_names``, ``image_shape``) as a labelled or an unlabeled batch input."""
    if path.is_dir():
        return _read_folder(path, info, unlabeled)
    if path.suffix == ".npz":
        images, labels = read_npz(path, unlabeled)
        return BatchInput(images, labels, _row_ids(images), "real", "unknown")
    if path.suffix == ".npy":
        return _read_unlabeled_npy(path, labels_path) if unlabeled else _read_c_npy(path, labels_path, severity)
    expected = "a folder, an .npz (x) or an images .npy" if unlabeled else "a folder, an .npz (x, y) or a -C .npy"
    raise ValueError(f"unsupported batch {path}: expected {expected}")


def _row_ids(images: np.ndarray) -> list[str]:
    n = int(images.shape[0]) if images.ndim else 0
    return [str(i) for i in range(n)]


def _read_folder(path: Path, info: dict[str, Any], unlabeled: bool) -> BatchInput:
    layout = folder_layout(path)
    size = int(info["image_shape"][0])
    if layout == "mixed":
        raise ValueError(f"{path} mixes class folders and loose image files: put every image in a class "
                         f"folder (a labelled batch) or none (an unlabeled batch, --unlabeled)")  # fmt: skip
    if unlabeled:
        if layout == "classes":
            names = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise LabelsMismatchError(f"{path} has class folders {names[:5]} (labels): drop --unlabeled "
                                      f"(unlabeled=False) to add it as a labelled batch", has_labels=True)  # fmt: skip
        images, ids = read_flat_folder(path, size)
        return BatchInput(images, None, ids, "real", "unknown")
    if layout == "flat":
        raise LabelsMismatchError(f"{path} has image files but no class folders (no labels): for an unlabeled "
                                  f"batch pass --unlabeled (unlabeled=True)", has_labels=False)  # fmt: skip
    images, labels, ids = read_class_folder(path, info["class_names"], size)
    return BatchInput(images, labels, ids, "real", "unknown")


_CORRUPT = (OSError, EOFError, ValueError, zipfile.BadZipFile)


def read_npz(path: Path, unlabeled: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) of a labelled ``.npz``, or (x, None) of an unlabeled one; corrupt files raise ``ValueError``."""
    try:
        f = np.load(path, allow_pickle=False)
    except _CORRUPT as exc:
        raise ValueError(f"cannot read {path} (truncated or corrupt .npz?): {exc}") from exc
    with f:
        _check_npz_keys(path, list(f.files), unlabeled)
        try:
            x, y = np.asarray(f["x"]), (None if unlabeled else np.asarray(f["y"]))
        except _CORRUPT as exc:
            raise ValueError(f"cannot read {path} (truncated or corrupt .npz?): {exc}") from exc
    return x, (None if y is None else as_labels(y, path))


def _check_npz_keys(path: Path, files: list[str], unlabeled: bool) -> None:
    if "x" not in files:
        raise ValueError(f"{path} lacks array x (images); it holds {files}")
    if unlabeled and "y" in files:
        raise LabelsMismatchError(f"{path} holds labels (array y): drop --unlabeled (unlabeled=False) "
                                  f"to add it as a labelled batch, or remove y", has_labels=True)  # fmt: skip
    if not unlabeled and "y" not in files:
        raise LabelsMismatchError(f"{path} lacks array y (labels); it holds {files}: for an unlabeled "
                                  f"batch pass --unlabeled (unlabeled=True)", has_labels=False)  # fmt: skip


def _read_c_npy(path: Path, labels_path: str | Path | None, severity: int | None) -> BatchInput:
    labels_file = Path(labels_path) if labels_path else path.with_name("labels.npy")
    if not labels_file.is_file():
        raise LabelsMismatchError(f"{path.name}: no labels file {labels_file}; a -C .npy needs its labels.npy "
                                  f"(or --labels), and an unlabeled images .npy needs --unlabeled "
                                  f"(unlabeled=True)", has_labels=False)  # fmt: skip
    if severity is None:
        raise ValueError(f"{path.name} is a -C file holding 5 severities: pass severity (1..5)")
    images, labels = load_corrupted_npy(path, labels_file, severity)
    return BatchInput(images, as_labels(labels, labels_file), _row_ids(images), "published", path.stem)


def _read_unlabeled_npy(path: Path, labels_path: str | Path | None) -> BatchInput:
    if labels_path is not None:
        raise LabelsMismatchError(f"labels {labels_path} were given for the unlabeled batch {path.name}: drop "
                                  f"--labels or --unlabeled", has_labels=True)  # fmt: skip
    beside = path.with_name("labels.npy")
    if beside.is_file() and beside != path:
        raise LabelsMismatchError(f"{path.name} has {beside} beside it (the labelled -C layout): drop --unlabeled "
                                  f"and pass --severity, or move the images file away from labels.npy",
                                  has_labels=True)  # fmt: skip
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"cannot read images {path} (truncated or corrupt .npy?): {exc}") from exc
    return BatchInput(images, None, _row_ids(images), "real", "unknown")


def as_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """int64 labels; float labels are accepted only when every value is a whole number."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        return labels.astype(np.int64)
    bad = labels.reshape(-1)[:5].tolist() if labels.size else []
    raise ValueError(f"labels in {path} must be integers, got dtype {labels.dtype} (first values {bad})")
