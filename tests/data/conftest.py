"""Fixtures for the data tests: fake sources in their official on-disk formats, a tiny prepared
dataset and throw-away git+DVC repositories (always under tmp_path, never in the project)."""

from __future__ import annotations

import gzip
import pickle
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lpt_core.data.prepare import PrepareConfig, build_prepared
from lpt_core.data.sources import RawDataset
from lpt_core.data.store import ArraySplit, save_prepared


def write_cifar100(root: Path, train_per_class: int, test_per_class: int, *, archive: bool, seed: int = 0) -> Path:
    """A fake CIFAR-100 in the official python format: pickled dicts, b"data" (N, 3072) row-major CHW."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, per in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(100), per)
        rng.shuffle(labels)
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        blob = {b"data": data, b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist()}
        (folder / name).write_bytes(pickle.dumps(blob))
    meta = {b"fine_label_names": [f"fine{i:02d}".encode() for i in range(100)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    if archive:
        with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname="cifar-100-python")
        shutil.rmtree(folder)
    return root


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> None:
    """Write ``array`` (uint8) as an IDX file, gzip-compressed when ``gz``."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


@pytest.fixture(scope="session")
def fake_cifar100_full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Extracted fake CIFAR-100 with 500 training images per class (the CIFAR-100-LT head needs all 500)."""
    return write_cifar100(tmp_path_factory.mktemp("c100"), 500, 3, archive=False)


@pytest.fixture
def fake_fashion_idx(tmp_path: Path) -> Path:
    """Tiny Fashion-MNIST IDX files (gzip): 60 train and 20 test 28x28 images over 10 classes."""
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 60), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    return tmp_path


def synthetic_raw(num_classes: int = 5, train_per_class: int = 60, test_per_class: int = 8,
                  size: int = 16, seed: int = 0) -> RawDataset:
    """Random-pixel images (distinct with overwhelming probability) with balanced labels."""
    rng = np.random.default_rng(seed)

    def split(per: int) -> ArraySplit:
        labels = np.repeat(np.arange(num_classes), per).astype(np.int64)
        images = rng.integers(0, 256, size=(len(labels), size, size, 3), dtype=np.uint8)
        return ArraySplit(images, labels, None, np.arange(len(labels)))

    return RawDataset(split(train_per_class), split(test_per_class), [f"c{i}" for i in range(num_classes)], "synthetic")


TINY_CFG = PrepareConfig(source="synthetic", name="tiny-lt", n_max=40, rho=10, val_fraction=0.25, seed=3)


@pytest.fixture(scope="session")
def tiny_prepared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved long-tailed prepared dataset: 5 classes, 16 px, counts 40..4 before the hold-out."""
    out = tmp_path_factory.mktemp("prep") / "tiny"
    save_prepared(out, build_prepared(synthetic_raw(), TINY_CFG))
    return out


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    """A throw-away git + DVC repository in tmp_path (never inside /work/main)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _run(["git", "init", "-q"], repo)
    _run(["dvc", "init", "-q"], repo)
    return repo


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (to prove refused input left stored data untouched)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def dh() -> SimpleNamespace:
    """The helpers above for test modules (conftest modules are not importable by name)."""
    return SimpleNamespace(write_cifar100=write_cifar100, write_idx=write_idx, synthetic_raw=synthetic_raw,
                           tree=tree, tiny_cfg=TINY_CFG)
