"""Dataset sources: registry, offline errors, and each on-disk format parsed from a fake."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lpt_core.data.sources import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    SOURCES,
    DataUnavailableError,
    load_corrupted_npy,
    load_source,
    read_idx,
)


def test_registry_lists_every_source_and_rejects_unknown_names() -> None:
    expected = {"fashion_mnist", "cifar10", "cifar100", "cifar10_c", "cifar100_c",
                "places_lt", "imagenet_lt", "inat2018", "folder"}
    assert set(SOURCES.names()) == expected
    with pytest.raises(KeyError, match="cifar100_c"):
        load_source("cifar1000", "/nonexistent")


def test_read_idx_plain_gzip_and_truncated(tmp_path: Path, dh) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    dh.write_idx(tmp_path / "a", arr, gz=False)
    dh.write_idx(tmp_path / "b", arr, gz=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), arr)
    (tmp_path / "c").write_bytes((tmp_path / "a").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "c")


def test_fashion_mnist_from_idx_files_is_rgb_uint8(fake_fashion_idx: Path) -> None:
    raw = load_source("fashion_mnist", fake_fashion_idx)
    assert raw.train.images.shape == (60, 28, 28, 3) and raw.test.images.shape == (20, 28, 28, 3)
    assert raw.train.images.dtype == np.uint8 and raw.train.labels.dtype == np.int64
    np.testing.assert_array_equal(raw.train.images[..., 0], raw.train.images[..., 2])
    assert raw.class_names == FASHION_MNIST_CLASSES and raw.class_names[9] == "Ankle boot"


def test_fashion_mnist_missing_offline_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match="dataset-fashion-mnist"):
        load_source("fashion_mnist", tmp_path)


@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package_loads_offline() -> None:
    raw = load_source("fashion_mnist")
    assert raw.train.images.shape == (60000, 28, 28, 3) and len(raw.test) == 10000
    assert np.bincount(raw.test.labels).tolist() == [1000] * 10


def test_cifar100_archive_is_nhwc_in_official_channel_order(tmp_path: Path, dh) -> None:
    dh.write_cifar100(tmp_path, 2, 1, archive=True)
    raw = load_source("cifar100", tmp_path)
    assert raw.train.images.shape == (200, 32, 32, 3) and len(raw.test) == 100
    assert raw.class_names[:2] == ["fine00", "fine01"]
    # b"data" rows are R plane, G plane, B plane (each 32x32 row-major).
    import pickle
    import tarfile

    with tarfile.open(tmp_path / "cifar-100-python.tar.gz") as tar:
        d = pickle.loads(tar.extractfile("cifar-100-python/train").read(), encoding="bytes")
    row = d[b"data"][0]
    assert raw.train.images[0, 0, 1, 0] == row[1] and raw.train.images[0, 2, 0, 1] == row[1024 + 64]
    assert raw.train.labels[0] == d[b"fine_labels"][0]


def test_cifar_missing_or_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match="cifar-100-python.tar.gz"):
        load_source("cifar100", tmp_path)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match="cannot read CIFAR archive"):
        load_source("cifar10", tmp_path)


def test_cifar100_c_slices_severity_rows(tmp_path: Path) -> None:
    n = 4
    x = np.repeat(np.arange(1, 6, dtype=np.uint8), n)[:, None, None, None] * np.ones((1, 32, 32, 3), np.uint8)
    np.save(tmp_path / "fog.npy", x)
    np.save(tmp_path / "labels.npy", np.tile(np.arange(n, dtype=np.uint8), 5))
    raw = load_source("cifar100_c", tmp_path, corruption="fog", severity=3)
    assert len(raw.train) == 0 and raw.test.images.shape == (n, 32, 32, 3)
    assert (raw.test.images == 3).all() and raw.test.labels.tolist() == [0, 1, 2, 3]
    mm, _ = load_corrupted_npy(tmp_path / "fog.npy")
    assert isinstance(mm, np.memmap)
    with pytest.raises(DataUnavailableError, match=r"fog"):
        load_source("cifar100_c", tmp_path, corruption="snow", severity=1)
    with pytest.raises(ValueError, match="severity"):
        load_corrupted_npy(tmp_path / "fog.npy", severity=6)


def _png(path: Path, value: int, size: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def test_folder_source_resizes_and_refuses_corrupt_images(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for c, v in (("cat", 10), ("dog", 200)):
            _png(tmp_path / split / c / "a.png", v)
    raw = load_source("folder", tmp_path, image_size=8)
    assert raw.class_names == ["cat", "dog"] and raw.train.images.shape == (2, 8, 8, 3)
    assert raw.train.images[raw.train.labels == 1].min() == 200
    (tmp_path / "train" / "cat" / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="bad.png"):
        load_source("folder", tmp_path, image_size=8)
    with pytest.raises(DataUnavailableError, match="root/train"):
        load_source("folder", tmp_path / "nothing")


def test_places_lt_lists_and_inat_json(tmp_path: Path) -> None:
    _png(tmp_path / "data_256/a/abbey/1.jpg", 5)
    _png(tmp_path / "data_256/b/bar/2.jpg", 9)
    (tmp_path / "Places_LT_train.txt").write_text("data_256/a/abbey/1.jpg 0\ndata_256/b/bar/2.jpg 1\n")
    (tmp_path / "Places_LT_test.txt").write_text("data_256/b/bar/2.jpg 1\n")
    raw = load_source("places_lt", tmp_path, image_size=12)
    assert raw.train.images.shape == (2, 12, 12, 3) and raw.class_names == ["a/abbey", "b/bar"]
    with pytest.raises(DataUnavailableError, match="ImageNet_LT_train.txt"):
        load_source("imagenet_lt", tmp_path)
    doc = {"images": [{"id": 7, "file_name": "data_256/a/abbey/1.jpg"}],
           "annotations": [{"image_id": 7, "category_id": 0}], "categories": [{"id": 0, "name": "Abies"}]}
    for f in ("train2018.json", "val2018.json"):
        (tmp_path / f).write_text(json.dumps(doc))
    raw = load_source("inat2018", tmp_path, image_size=12)
    assert raw.class_names == ["Abies"] and len(raw.train) == 1 and len(raw.test) == 1
