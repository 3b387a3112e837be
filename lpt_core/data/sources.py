"""Dataset sources: raw train/test arrays from files a user already has, never downloading unasked.

Each source is a factory in :data:`SOURCES`; :func:`load_source` returns a :class:`RawDataset`
of uint8 NHWC images (grayscale replicated to 3 channels) and int64 labels. When files are
missing and ``download`` is false, a :class:`DataUnavailableError` says how to supply them.
"""

from __future__ import annotations

import gzip
import pickle
import tarfile
from collections.abc import Callable, Sequence
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


class DataUnavailableError(RuntimeError):
    """The requested data is not on disk (and downloading was not allowed or failed)."""


@dataclass(frozen=True)
class RawDataset:
    """A source's full train and test splits with class names; ``source_index`` = row in the source.

    ``val`` is the source's official validation split where it has one (Places-LT's and
    ImageNet-LT's ``*_val.txt`` lists), else ``None``.
    """

    train: ArraySplit
    test: ArraySplit
    class_names: list[str]
    source: str = ""
    val: ArraySplit | None = None

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


class RefusedPickleGlobal(pickle.UnpicklingError):
    """A pickle asked for a global (class or function) outside the CIFAR allow-list."""


# The official CIFAR pickles (Python 2 cPickle, protocol 2) hold dicts, lists, byte strings and
# ints, which need no globals, and numpy arrays, rebuilt by numpy.core.multiarray._reconstruct
# + numpy.ndarray + numpy.dtype. numpy 2 names the module numpy._core, and a file re-saved by
# Python 3 at protocol 5 uses numpy's _frombuffer instead. Nothing else is ever looked up.
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy", "ndarray"): (None, "ndarray"),
    ("numpy", "dtype"): (None, "dtype"),
}


def _numpy_attr(submodule: str | None, name: str) -> Any:
    """numpy's own reconstruction helper, from numpy._core (numpy 2) or numpy.core (numpy 1)."""
    import importlib

    if submodule is None:
        return getattr(np, name)
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise RefusedPickleGlobal(f"numpy has no {submodule}.{name} to rebuild arrays with")


class CifarUnpickler(pickle.Unpickler):
    """An unpickler for the CIFAR python files: builtin containers and numpy arrays only.

    Any other global (``os.system``, ``builtins.eval``, any class) is refused before it is
    resolved, so a crafted file cannot run code while it is read.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only the allow-listed numpy globals; refuse everything else by name."""
        target = _NUMPY_GLOBALS.get((module, name))
        if target is None:
            raise RefusedPickleGlobal(
                f"refused pickle global {module}.{name}: CIFAR files may only use builtin containers "
                f"and numpy array reconstruction ({', '.join(sorted({f'{m}.{n}' for m, n in _NUMPY_GLOBALS}))})"
            )
        return _numpy_attr(*target)


def restricted_loads(blob: bytes) -> Any:
    """Unpickle ``blob`` like ``pickle.loads(blob, encoding="bytes")`` through :class:`CifarUnpickler`."""
    import io

    return CifarUnpickler(io.BytesIO(blob), encoding="bytes").load()


def _unpickle(blob: bytes, what: str) -> dict:
    try:
        d = restricted_loads(blob)
    except RefusedPickleGlobal as exc:
        raise ValueError(f"unsafe pickle {what}: {exc}") from exc
    except Exception as exc:  # pickle raises many types on corrupt input
        raise ValueError(f"cannot unpickle {what}: {exc}") from exc
    if not isinstance(d, dict):
        raise ValueError(f"{what} is not a CIFAR batch: unpickled a {type(d).__name__}, expected a dict")
    return d


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


# The image-file sources (folder, places_lt, imagenet_lt, inat2018) register themselves from their
# own module; importing it here keeps SOURCES complete wherever load_source is used.
from lpt_core.data import image_sources as _image_sources  # noqa: E402,F401
