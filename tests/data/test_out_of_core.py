"""Image sources decoded to memory-mapped files (``decode_dir``) and prepare streaming them:
same prepared bytes as the in-memory path, cache reuse and invalidation, no leftovers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lpt_core.data import image_sources, store
from lpt_core.data import prepare as prepare_mod
from lpt_core.data.prepare import PrepareConfig, prepare
from lpt_core.data.sources import load_source
from lpt_core.data.store import file_backed, load_prepared, take_rows


def _write(path: Path, rng: np.random.Generator, size: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def _folder_dataset(root: Path, counts: dict[str, int], test_per_class: int = 6) -> None:
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        for i in range(n):
            _write(root / "train" / name / f"{i:03d}.png", rng)
        for i in range(test_per_class):
            _write(root / "test" / name / f"{i:03d}.png", rng)


def test_take_rows_to_a_file_in_chunks_equals_fancy_indexing(tmp_path: Path, monkeypatch) -> None:
    images = np.random.default_rng(1).integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    monkeypatch.setattr(store, "ROW_CHUNK_BYTES", 3 * images[:1].nbytes)  # 3 rows per step
    index = np.array([7, 3, 3, 49, 0, 12, 30])
    rows = take_rows(images, index, tmp_path / "rows.npy")
    assert file_backed(rows) and np.array_equal(rows, images[index])
    mask = np.zeros(50, bool)
    mask[[1, 5, 40]] = True
    assert np.array_equal(take_rows(images, mask), images[[1, 5, 40]])
    assert np.array_equal(np.load(tmp_path / "rows.npy"), images[index])


def test_decode_dir_caches_and_redecodes_when_an_image_changes(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(2)
    root, cache = tmp_path / "places", tmp_path / "decoded"
    for rel in ("data_256/a/abbey/1.jpg", "data_256/b/bar/2.jpg", "data_256/b/bar/3.jpg"):
        _write(root / rel, rng)
    (root / "Places_LT_train.txt").write_text("data_256/a/abbey/1.jpg 0\ndata_256/b/bar/2.jpg 1\n")
    (root / "Places_LT_test.txt").write_text("data_256/b/bar/3.jpg 1\n")
    in_ram = load_source("places_lt", root, image_size=12)
    first = load_source("places_lt", root, image_size=12, decode_dir=cache)
    assert not file_backed(in_ram.train.images) and file_backed(first.train.images)
    assert np.array_equal(first.train.images, in_ram.train.images)
    assert np.array_equal(first.test.images, in_ram.test.images)
    assert sorted(p.name for p in cache.iterdir()) == [
        "places_lt-test-12.json", "places_lt-test-12.npy", "places_lt-train-12.json", "places_lt-train-12.npy"]

    def no_decoding(path: Path, size: int | None) -> np.ndarray:
        raise AssertionError(f"decoded {path} although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(image_sources, "_decode_one", no_decoding)
        again = load_source("places_lt", root, image_size=12, decode_dir=cache)
    assert np.array_equal(again.train.images, first.train.images)

    changed = root / "data_256/a/abbey/1.jpg"
    Image.fromarray(np.full((24, 24, 3), 255, np.uint8)).save(changed)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    fresh = load_source("places_lt", root, image_size=12, decode_dir=cache)
    assert fresh.train.images[0].min() == 255 and np.array_equal(fresh.train.images[1], first.train.images[1])
    assert not list(cache.glob(".*"))  # no temporary file left
    (cache / "places_lt-train-12.json").write_text("{not json")  # a damaged record: decode again
    assert np.array_equal(load_source("places_lt", root, image_size=12, decode_dir=cache).train.images,
                          fresh.train.images)


def test_streamed_prepare_writes_what_the_in_memory_prepare_writes(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "imgs"
    _folder_dataset(root, {"ant": 30, "bee": 14, "cat": 6, "dog": 9})
    base = dict(source="folder", root=str(root), classes=("ant", "bee", "cat"), rho=5.0, n_max=25,
                val_fraction=0.2, test_per_class=4, seed=3, image_size=16)
    seen: list[bool] = []
    real_save = prepare_mod.save_prepared

    def spy(out, data):  # noqa: ANN001, ANN202 -- the arrays handed to save_prepared
        seen.append(all(file_backed(getattr(data, s).images) for s in ("train", "val", "test")))
        return real_save(out, data)

    def no_resize(images, size):  # noqa: ANN001, ANN202
        raise AssertionError("the source should decode at image_size directly")

    monkeypatch.setattr(prepare_mod, "save_prepared", spy)
    monkeypatch.setattr(prepare_mod, "resize_images", no_resize)
    monkeypatch.setattr(store, "ROW_CHUNK_BYTES", 5 * 16 * 16 * 3)
    prepare(PrepareConfig(**base), tmp_path / "out" / "ram")
    prepare(PrepareConfig(**base, options={"decode_dir": str(tmp_path / "decoded")}), tmp_path / "out" / "disk")
    assert seen == [False, True]
    ram, disk = load_prepared(tmp_path / "out" / "ram"), load_prepared(tmp_path / "out" / "disk")
    for name in ("train", "val", "test"):
        a, b = getattr(ram, name), getattr(disk, name)
        assert a.images.shape[1:] == (16, 16, 3) and len(a) > 0
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "ram" / name / "manifest.csv"),
                                      pd.read_csv(tmp_path / "out" / "disk" / name / "manifest.csv"))
    assert ram.meta["content_hashes"] == disk.meta["content_hashes"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["disk", "ram"]  # scratch removed


def test_streamed_prepare_leaves_no_scratch_when_it_fails(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "imgs"
    _folder_dataset(root, {"ant": 8, "bee": 5})
    monkeypatch.setattr(prepare_mod, "save_prepared", lambda out, data: (_ for _ in ()).throw(OSError("disk full")))
    cfg = PrepareConfig(source="folder", root=str(root), val_fraction=0.2, image_size=8,
                        options={"decode_dir": str(tmp_path / "decoded")})
    with pytest.raises(OSError, match="disk full"):
        prepare(cfg, tmp_path / "out" / "p")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_center_crop_keeps_the_aspect_and_squash_keeps_the_whole_image(tmp_path: Path) -> None:
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :10, 0] = 255  # red left quarter
    wide[:, 10:30, 1] = 255  # green middle half
    wide[:, 30:, 2] = 255  # blue right quarter
    for split in ("train", "test"):
        (tmp_path / split / "c").mkdir(parents=True)
        Image.fromarray(wide).save(tmp_path / split / "c" / "wide.png")
    squash = load_source("folder", tmp_path, image_size=10).train.images[0]
    crop = load_source("folder", tmp_path, image_size=10, resize="center_crop",
                       decode_dir=tmp_path / "dec").train.images[0]
    assert squash.shape == crop.shape == (10, 10, 3)
    assert squash[5, 0, 0] > 200 and squash[5, 9, 2] > 200  # both ends survive, squeezed
    assert crop[:, 1:-1, 1].min() > 200 and crop[:, 1:-1, 0].max() < 60 and crop[:, 1:-1, 2].max() < 60
    assert (tmp_path / "dec" / "folder-train-10-center_crop.npy").is_file()
    with pytest.raises(ValueError, match="resize must be one of"):
        load_source("folder", tmp_path, image_size=10, resize="stretch")
