"""Dataset sources: raw train/test arrays from files a user already has, never downloading unasked.

Each source is a factory in :data:`SOURCES`; :func:`load_source` returns a :class:`RawDataset`
of uint8 NHWC images (grayscale replicated to 3 channels) and int64 labels. When files are
missing and ``download`` is false, a :class:`DataUnavailableError` says how to supply them.
"""

from __future__ import annotations

import gzip
import json
import pickle
import tarfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpt_core.data.store import ArraySplit
from lpt_core.registry import Registry

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class DataUnavailableError(RuntimeError):
    """The requested data is not on disk (and downloading was not allowed or failed)."""


@dataclass(frozen=True)
class RawDataset:
    """A source's full train and test splits with class names; ``source_index`` = row in the source."""

    train: ArraySplit
    test: ArraySplit
    class_names: list[str]
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


SourceFactory = Callable[..., RawDataset]
SOURCES: Registry[SourceFactory] = Registry("dataset source")


def load_source(name: str, root: str | Path | None = None, download: bool = False, **kw: Any) -> RawDataset:
    """Load dataset ``name`` from ``root`` (its default location when ``None``)."""
    factory = SOURCES.get(name)
    return factory(None if root is None else Path(root), download=download, **kw)


def _split(images: np.ndarray, labels: np.ndarray) -> ArraySplit:
    labels = np.asarray(labels, dtype=np.int64)
    return ArraySplit(np.ascontiguousarray(images), labels, None, np.arange(len(labels)))


def to_rgb(images: np.ndarray) -> np.ndarray:
    """Replicate (N, H, W) or (N, H, W, 1) grayscale to (N, H, W, 3); RGB passes through."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim == 4 and images.shape[-1] == 1:
        return np.ascontiguousarray(np.repeat(images, 3, axis=-1))
    return images


# --------------------------------------------------------------------------- Fashion-MNIST (IDX)


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) into a numpy array; corrupt files raise ``ValueError``."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4]!r})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise ValueError(f"{path} is truncated: {len(raw) - offset} bytes for shape {dims} ({expected})")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "FashionMNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


@SOURCES.register("fashion_mnist")
def fashion_mnist(root: Path | None, download: bool = False) -> RawDataset:
    """Fashion-MNIST from its IDX files (Debian ``dataset-fashion-mnist`` or torchvision's layout)."""
    root = root or FASHION_MNIST_ROOT
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip
    paths = [_find_idx(root, s) for s in stems]
    if any(p is None for p in paths) and download:
        _torchvision_download("FashionMNIST", root)
        paths = [_find_idx(root, s) for s in stems]
    if any(p is None for p in paths):
        missing = [s for s, p in zip(stems, paths) if p is None]
        raise DataUnavailableError(
            f"Fashion-MNIST IDX files {missing} not found under {root}; install the Debian package "
            f"`dataset-fashion-mnist` (files land in {FASHION_MNIST_ROOT}), copy the *-ubyte(.gz) files "
            f"there or into the given root, or pass download=True"
        )
    xtr, ytr, xte, yte = (read_idx(p) for p in paths)  # type: ignore[arg-type]
    return RawDataset(_split(to_rgb(xtr), ytr), _split(to_rgb(xte), yte), list(FASHION_MNIST_CLASSES), "fashion_mnist")


def _torchvision_download(cls_name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    try:
        getattr(tvd, cls_name)(str(root), train=True, download=True)
        getattr(tvd, cls_name)(str(root), train=False, download=True)
    except Exception as exc:  # network errors vary by platform
        raise DataUnavailableError(f"downloading {cls_name} into {root} failed: {exc}") from exc


# --------------------------------------------------------------------------- CIFAR (python pickles)


def _unpickle(blob: bytes, what: str) -> dict:
    try:
        return pickle.loads(blob, encoding="bytes")
    except Exception as exc:  # pickle raises many types on corrupt input
        raise ValueError(f"cannot unpickle {what}: {exc}") from exc


def _cifar_members(root: Path, folder: str, archive: str, names: Sequence[str]) -> dict[str, dict]:
    """The pickled dicts ``names`` from ``root/folder`` or from ``root/archive`` (tar.gz)."""
    if (root / folder).is_dir():
        return {n: _unpickle((root / folder / n).read_bytes(), str(root / folder / n)) for n in names}
    if (root / archive).is_file():
        out = {}
        try:
            with tarfile.open(root / archive, "r:gz") as tar:
                for n in names:
                    fh = tar.extractfile(f"{folder}/{n}")
                    if fh is None:
                        raise ValueError(f"{root / archive} has no member {folder}/{n}")
                    out[n] = _unpickle(fh.read(), f"{archive}:{folder}/{n}")
        except (tarfile.TarError, EOFError, OSError, KeyError) as exc:
            raise ValueError(f"cannot read CIFAR archive {root / archive}: {exc}") from exc
        return out
    raise FileNotFoundError(f"neither {root / folder} nor {root / archive}")


def _cifar_images(d: dict, what: str) -> np.ndarray:
    data = np.asarray(d[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{what}: b'data' must be (N, 3072) uint8, got {data.shape}")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _load_cifar(root: Path | None, download: bool, *, fine: bool) -> RawDataset:
    name, folder, archive, tv = (
        ("cifar100", "cifar-100-python", "cifar-100-python.tar.gz", "CIFAR100")
        if fine
        else ("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz", "CIFAR10")
    )
    root = root or Path("data/raw") / name
    train_names = ["train"] if fine else [f"data_batch_{i}" for i in range(1, 6)]
    names = [*train_names, "test", "meta" if fine else "batches.meta"]
    try:
        d = _cifar_members(root, folder, archive, names)
    except FileNotFoundError:
        if not download:
            raise DataUnavailableError(
                f"{name} not found: put the official {archive} (or its extracted {folder}/) in {root}, "
                f"or pass download=True"
            ) from None
        _torchvision_download(tv, root)
        d = _cifar_members(root, folder, archive, names)
    key = b"fine_labels" if fine else b"labels"
    xtr = np.concatenate([_cifar_images(d[n], n) for n in train_names])
    ytr = np.concatenate([np.asarray(d[n][key]) for n in train_names])
    meta = d[names[-1]]
    label_key = b"fine_label_names" if fine else b"label_names"
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[label_key]]
    test = _split(_cifar_images(d["test"], "test"), np.asarray(d["test"][key]))
    return RawDataset(_split(xtr, ytr), test, classes, name)


@SOURCES.register("cifar10")
def cifar10(root: Path | None, download: bool = False) -> RawDataset:
    """CIFAR-10 from cifar-10-python.tar.gz or cifar-10-batches-py/ under ``root``."""
    return _load_cifar(root, download, fine=False)


@SOURCES.register("cifar100")
def cifar100(root: Path | None, download: bool = False) -> RawDataset:
    """CIFAR-100 (fine labels) from cifar-100-python.tar.gz or cifar-100-python/ under ``root``."""
    return _load_cifar(root, download, fine=True)


# --------------------------------------------------------------------------- CIFAR-10-C / CIFAR-100-C


def load_corrupted_npy(
    images_path: str | Path, labels_path: str | Path | None = None, severity: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One corruption file of the published -C layout, optionally sliced to ``severity`` (1..5).

    Rows are ``(severity - 1) * n + i`` for ``n = len / 5`` test images. The images stay a
    memory map until sliced; corrupt or truncated files raise ``ValueError``.
    """
    images_path = Path(images_path)
    labels_path = Path(labels_path) if labels_path else images_path.with_name("labels.npy")
    for p in (images_path, labels_path):
        if not p.is_file():
            raise FileNotFoundError(f"-C file {p} does not exist")
    try:
        x = np.load(images_path, mmap_mode="r", allow_pickle=False)
        y = np.load(labels_path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"cannot read -C arrays {images_path} / {labels_path}: {exc}") from exc
    if severity is None:
        return x, np.asarray(y, dtype=np.int64)
    if not 1 <= int(severity) <= 5:
        raise ValueError(f"severity must be in 1..5, got {severity}")
    if len(x) % 5 or len(y) != len(x):
        raise ValueError(
            f"{images_path.name} has {len(x)} rows and {labels_path.name} {len(y)}: the -C layout needs "
            f"5 severities x n images in both"
        )
    n = len(x) // 5
    rows = slice((int(severity) - 1) * n, int(severity) * n)
    return np.array(x[rows]), np.asarray(y[rows], dtype=np.int64)


def _load_c(name: str, base: str, root: Path | None, corruption: str, severity: int) -> RawDataset:
    root = root or Path("data/raw") / name
    path = root / f"{corruption}.npy"
    if not path.is_file():
        have = sorted(p.stem for p in root.glob("*.npy") if p.stem != "labels") if root.is_dir() else []
        raise DataUnavailableError(
            f"{name}: {path} not found (corruptions present: {have or 'none'}); download the published "
            f"{name.replace('_c', '').upper()}-C archive yourself and extract its <corruption>.npy files "
            f"and labels.npy into {root}"
        )
    x, y = load_corrupted_npy(path, root / "labels.npy", severity)
    classes = CIFAR10_CLASSES if base == "cifar10" else [f"class_{i:03d}" for i in range(100)]
    empty = ArraySplit(np.zeros((0, *x.shape[1:]), np.uint8), np.zeros(0, np.int64))
    return RawDataset(empty, _split(x, y), list(classes), name)


@SOURCES.register("cifar10_c")
def cifar10_c(root: Path | None, download: bool = False, *, corruption: str, severity: int) -> RawDataset:
    """One (corruption, severity) of CIFAR-10-C as the test split (no training split)."""
    return _load_c("cifar10_c", "cifar10", root, corruption, severity)


@SOURCES.register("cifar100_c")
def cifar100_c(root: Path | None, download: bool = False, *, corruption: str, severity: int) -> RawDataset:
    """One (corruption, severity) of CIFAR-100-C as the test split; class names are placeholders."""
    return _load_c("cifar100_c", "cifar100", root, corruption, severity)


# --------------------------------------------------------------------------- decoded image files


def decode_images(paths: Sequence[Path], image_size: int | None, workers: int = 4) -> np.ndarray:
    """Decode image files to uint8 (N, S, S, 3), resized to ``image_size`` (bilinear) when given."""
    from PIL import Image, UnidentifiedImageError

    def one(p: Path) -> np.ndarray:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if image_size is not None:
                    im = im.resize((image_size, image_size), Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise ValueError(f"cannot decode image {p}: {exc}") from exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        arrays = list(pool.map(one, paths))
    if not arrays:
        return np.zeros((0, image_size or 1, image_size or 1, 3), np.uint8)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images have different sizes {sorted(shapes)[:4]}; pass image_size to resize them")
    return np.stack(arrays)


def read_image_folder(
    folder: str | Path, class_names: Sequence[str] | None = None, image_size: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images of a class-per-subfolder folder -> (images, labels, class names).

    With ``class_names`` the subfolders must be among them and labels follow that order;
    otherwise classes are the sorted subfolder names.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    names = list(class_names) if class_names is not None else [p.name for p in subdirs]
    unknown = [p.name for p in subdirs if p.name not in names]
    if unknown:
        raise ValueError(f"class folder(s) {unknown} in {folder} are not among the classes {names}")
    paths, labels = [], []
    for sub in subdirs:
        files = sorted(f for f in sub.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [names.index(sub.name)] * len(files)
    images = decode_images(paths, image_size)
    return images, np.asarray(labels, dtype=np.int64), names


@SOURCES.register("folder")
def folder(root: Path | None, download: bool = False, *, image_size: int | None = None) -> RawDataset:
    """A user's own images: ``root/train/<class>/*`` and ``root/test/<class>/*``."""
    if root is None or not (root / "train").is_dir() or not (root / "test").is_dir():
        raise DataUnavailableError(
            f"folder source needs root/train/<class>/<image> and root/test/<class>/<image>; got root={root}"
        )
    xtr, ytr, names = read_image_folder(root / "train", None, image_size)
    xte, yte, _ = read_image_folder(root / "test", names, image_size)
    return RawDataset(_split(xtr, ytr), _split(xte, yte), names, "folder")


def _read_list(path: Path) -> tuple[list[str], np.ndarray]:
    rels, labels = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: expected 'relative/path label', got {line!r}")
        rels.append(parts[0])
        labels.append(int(parts[1]))
    return rels, np.asarray(labels, dtype=np.int64)


def _class_names_from_paths(rels: Sequence[str], labels: np.ndarray) -> list[str]:
    """Name each class by the folder of its first listed image (minus the top-level folder)."""
    names: dict[int, str] = {}
    for rel, lab in zip(rels, labels):
        if int(lab) not in names:
            parts = Path(rel).parent.parts
            names[int(lab)] = "/".join(parts[1:] or parts) or str(lab)
    return [names.get(i, f"class_{i}") for i in range(int(labels.max()) + 1)]


def _list_source(
    name: str, root: Path | None, lists: tuple[str, str], image_size: int, lists_dir: Path | None, workers: int
) -> RawDataset:
    if root is None:
        raise DataUnavailableError(f"{name} needs root= the image root the split lists refer to")
    lists_dir = Path(lists_dir) if lists_dir else root
    files = [lists_dir / f for f in lists]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataUnavailableError(
            f"{name}: split list(s) {missing} not found; put the standard files {list(lists)} in "
            f"{lists_dir} (or pass lists_dir=) and the images under {root}"
        )
    (tr_rel, ytr), (te_rel, yte) = _read_list(files[0]), _read_list(files[1])
    xtr = decode_images([root / r for r in tr_rel], image_size, workers)
    xte = decode_images([root / r for r in te_rel], image_size, workers)
    classes = _class_names_from_paths(tr_rel, ytr)
    return RawDataset(_split(xtr, ytr), _split(xte, yte), classes, name)


@SOURCES.register("places_lt")
def places_lt(
    root: Path | None, download: bool = False, *, image_size: int = 224,
    lists_dir: Path | None = None, workers: int = 4,
) -> RawDataset:  # fmt: skip
    """Places-LT from Places_LT_train.txt / Places_LT_test.txt and the Places-365 images under ``root``."""
    return _list_source("places_lt", root, ("Places_LT_train.txt", "Places_LT_test.txt"), image_size, lists_dir, workers)


@SOURCES.register("imagenet_lt")
def imagenet_lt(
    root: Path | None, download: bool = False, *, image_size: int = 224,
    lists_dir: Path | None = None, workers: int = 4,
) -> RawDataset:  # fmt: skip
    """ImageNet-LT from ImageNet_LT_train.txt / ImageNet_LT_test.txt and the ImageNet images under ``root``."""
    lists = ("ImageNet_LT_train.txt", "ImageNet_LT_test.txt")
    return _list_source("imagenet_lt", root, lists, image_size, lists_dir, workers)


def _read_inat(path: Path) -> tuple[list[str], np.ndarray, dict[int, str]]:
    try:
        doc = json.loads(path.read_text())
        label_of = {a["image_id"]: int(a["category_id"]) for a in doc["annotations"]}
        rels = [im["file_name"] for im in doc["images"]]
        labels = np.asarray([label_of[im["id"]] for im in doc["images"]], dtype=np.int64)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not an iNaturalist 2018 split file: {exc}") from exc
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in doc.get("categories", [])}
    return rels, labels, names


@SOURCES.register("inat2018")
def inat2018(
    root: Path | None, download: bool = False, *, image_size: int = 224,
    lists_dir: Path | None = None, workers: int = 4,
) -> RawDataset:  # fmt: skip
    """iNaturalist 2018 from train2018.json / val2018.json (the val split is the test set)."""
    if root is None:
        raise DataUnavailableError("inat2018 needs root= the folder holding train_val2018/")
    lists_dir = Path(lists_dir) if lists_dir else root
    files = [lists_dir / "train2018.json", lists_dir / "val2018.json"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataUnavailableError(f"inat2018: {missing} not found; put train2018.json and val2018.json in {lists_dir}")
    tr_rel, ytr, names = _read_inat(files[0])
    te_rel, yte, _ = _read_inat(files[1])
    xtr = decode_images([root / r for r in tr_rel], image_size, workers)
    xte = decode_images([root / r for r in te_rel], image_size, workers)
    classes = [names.get(i, f"class_{i}") for i in range(int(max(ytr.max(), yte.max())) + 1)]
    return RawDataset(_split(xtr, ytr), _split(xte, yte), classes, "inat2018")
