"""Shift batches: make/add/load/list, DVC versioning in a throw-away repo, and refusal of bad input
with the stored data left untouched (one test per kind of bad input)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lpt_core.cli import main
from lpt_core.data.batches import add_batch, list_batches, load_batch, make_batch
from lpt_core.dvcutil import DvcError, dvc_hash
from lpt_core.validation import DataValidationError


def _npz(path: Path, n: int = 6, size: int = 16, label_max: int = 4, **over) -> Path:
    rng = np.random.default_rng(n)
    arrays = {"x": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), "y": np.arange(n) % (label_max + 1)}
    arrays.update(over)
    np.savez(path, **arrays)
    return path


@pytest.fixture
def shifts(tmp_path: Path, tiny_prepared_dir: Path) -> Path:
    """A shifts root already holding one registered batch (so "untouched" is a real check)."""
    root = tmp_path / "shifts"
    add_batch(_npz(tmp_path / "seed.npz", n=3), root, tiny_prepared_dir, use_dvc=False)
    return root


def test_make_batch_stores_format_and_is_reproducible(tiny_prepared_dir: Path, tmp_path: Path) -> None:
    b = make_batch(tiny_prepared_dir, tmp_path / "a", "gaussian_noise", 3, 10, seed=7, use_dvc=False)
    files = sorted(p.name for p in b.path.iterdir())
    assert files == ["batch.json", "conditions.csv", "ids.csv", "images.npy", "labels.npy", "validation.html",
                     "validation.json"]
    meta = json.loads((b.path / "batch.json").read_text())
    assert meta["schema"] == "lpt-shift-batch/1" and meta["kind"] == "generated" and meta["severity"] == 3
    assert meta["labeled"] is True and meta["images_hash"] != meta["content_hash"]
    ids = __import__("pandas").read_csv(b.path / "ids.csv", dtype=str)
    assert ids.columns.tolist() == ["row", "id"] and ids["id"].str.startswith("synthetic:test:").all()
    assert meta["id"].endswith(f"-generated-gaussian_noise-s3-{meta['content_hash'][:8]}")
    assert meta["validation"] == {"success": True, "result_path": "validation.json"} and meta["dataset"] == "tiny-lt"
    again = make_batch(tiny_prepared_dir, tmp_path / "b", "gaussian_noise", 3, 10, seed=7, use_dvc=False)
    assert again.meta["content_hash"] == meta["content_hash"]
    loaded = load_batch(b.path)
    assert loaded.images.shape == (10, 16, 16, 3) and loaded.labels.dtype == np.int64


def test_mixture_batch_has_per_image_conditions(tiny_prepared_dir: Path, tmp_path: Path) -> None:
    b = make_batch(tiny_prepared_dir, tmp_path, "mixture", None, 12, seed=1, use_dvc=False)
    cond = __import__("pandas").read_csv(b.path / "conditions.csv")
    assert b.meta["severity"] == 0 and cond["severity"].between(1, 5).all()
    assert cond["corruption"].nunique() > 1 and len(cond) == 12


def test_make_batch_refuses_bad_arguments(tiny_prepared_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="gaussian_noise"):
        make_batch(tiny_prepared_dir, tmp_path, "gausian", 3, 5, seed=0, use_dvc=False)
    with pytest.raises(ValueError, match="severity"):
        make_batch(tiny_prepared_dir, tmp_path, "gaussian_noise", 7, 5, seed=0, use_dvc=False)
    with pytest.raises(ValueError, match="batch size"):
        make_batch(tiny_prepared_dir, tmp_path, "gaussian_noise", 1, 10_000, seed=0, use_dvc=False)
    assert list_batches(tmp_path) == []


def test_add_folder_and_c_pair(tiny_prepared_dir: Path, tmp_path: Path) -> None:
    for c, v in (("c0", 1), ("c4", 250)):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        Image.fromarray(np.full((30, 30, 3), v, np.uint8)).save(tmp_path / "imgs" / c / "x.png")
    b = add_batch(tmp_path / "imgs", tmp_path / "s", tiny_prepared_dir, use_dvc=False)
    assert b.images.shape == (2, 16, 16, 3) and b.labels.tolist() == [0, 4] and b.meta["corruption"] == "unknown"
    x = np.repeat(np.arange(1, 6, dtype=np.uint8), 4)[:, None, None, None] * np.ones((1, 16, 16, 3), np.uint8)
    np.save(tmp_path / "fog.npy", x)
    np.save(tmp_path / "labels.npy", np.tile(np.arange(4), 5))
    c = add_batch(tmp_path / "fog.npy", tmp_path / "s", tiny_prepared_dir, severity=2, use_dvc=False)
    assert c.meta["kind"] == "published" and c.meta["corruption"] == "fog" and (c.images == 2).all()
    assert {m["id"] for m in list_batches(tmp_path / "s")} == {b.id, c.id}


# ----------------------------------------------------------------------------- bad input, one each


@pytest.fixture
def refuse(shifts: Path, tiny_prepared_dir: Path, dh):
    """Assert that ingesting ``path`` raises ``exc`` matching ``match`` and leaves ``shifts`` byte-identical."""

    def check(exc: type[BaseException], match: str, path: Path, **kw) -> None:
        before = dh.tree(shifts)
        assert before  # the seed batch is there
        with pytest.raises(exc, match=match):
            add_batch(path, shifts, tiny_prepared_dir, use_dvc=False, **kw)
        assert dh.tree(shifts) == before

    return check


def test_refuses_truncated_npy(tmp_path: Path, refuse) -> None:
    np.save(tmp_path / "snow.npy", np.zeros((10, 16, 16, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(10, np.int64))
    raw = (tmp_path / "snow.npy").read_bytes()
    (tmp_path / "snow.npy").write_bytes(raw[: len(raw) // 2])
    refuse(ValueError, "cannot read -C arrays", tmp_path / "snow.npy", severity=1)


def test_refuses_corrupt_npz(tmp_path: Path, refuse) -> None:
    raw = _npz(tmp_path / "b.npz").read_bytes()
    (tmp_path / "b.npz").write_bytes(raw[:100])
    refuse(ValueError, "truncated or corrupt", tmp_path / "b.npz")


def test_refuses_corrupt_image(tmp_path: Path, refuse) -> None:
    (tmp_path / "imgs" / "c1").mkdir(parents=True)
    (tmp_path / "imgs" / "c1" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    refuse(ValueError, "x.png", tmp_path / "imgs")


def test_refuses_wrong_shapes(tmp_path: Path, refuse) -> None:
    refuse(DataValidationError, "height", _npz(tmp_path / "b.npz", size=20))


def test_refuses_labels_out_of_range(tmp_path: Path, refuse) -> None:
    refuse(DataValidationError, r"label.*\[5\]", _npz(tmp_path / "b.npz", label_max=5))


def test_refuses_mismatched_lengths(tmp_path: Path, refuse) -> None:
    refuse(DataValidationError, "n_labels", _npz(tmp_path / "b.npz", y=np.arange(4)))


def test_refuses_empty_batch(tmp_path: Path, refuse) -> None:
    empty = {"x": np.zeros((0, 16, 16, 3), np.uint8), "y": np.zeros(0, np.int64)}
    refuse(DataValidationError, "n_images", _npz(tmp_path / "b.npz", **empty))


def test_refuses_already_ingested(tmp_path: Path, refuse) -> None:
    refuse(DataValidationError, "already registered as", tmp_path / "seed.npz")


def test_refuses_missing_path(tmp_path: Path, refuse) -> None:
    refuse(FileNotFoundError, "does not exist", tmp_path / "nope.npz")


# ----------------------------------------------------------------------------- DVC


def test_refuses_to_store_outside_a_dvc_repo_without_no_dvc(tmp_path: Path, tiny_prepared_dir: Path) -> None:
    with pytest.raises(DvcError, match="--no-dvc"):
        add_batch(_npz(tmp_path / "b.npz"), tmp_path / "shifts", tiny_prepared_dir)
    assert not (tmp_path / "shifts").exists()


def test_cli_make_add_list_version_with_dvc(dvc_repo: Path, tiny_prepared_dir: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(dvc_repo)
    data = str(tiny_prepared_dir)
    assert main(["shift", "make", "--data", data, "--corruption", "contrast", "--severity", "2",
                 "--size", "8", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "seed 0 (again: lpt shift make --data" in out  # how to make the same batch again comes first
    batch_id = re.search(r"registered shift batch (\S+)", out).group(1)
    folder = dvc_repo / "data" / "shifts" / batch_id
    md5 = dvc_hash(folder)
    assert md5 and md5.endswith(".dir") and md5 in out and (folder.parent / f"{batch_id}.dvc").is_file()
    npz = _npz(dvc_repo / "real.npz")
    assert main(["shift", "add", str(npz), "--data", data, "--corruption", "night"]) == 0
    assert main(["shift", "add", str(npz), "--data", data]) == 2  # a duplicate is refused
    assert main(["shift", "list"]) == 0
    listed = capsys.readouterr().out
    assert batch_id in listed and "night" in listed and listed.count("dvc=") == 2


def test_load_batch_detects_edits_and_cli_revalidates(shifts: Path, tiny_prepared_dir: Path, tmp_path: Path) -> None:
    (folder,) = [Path(m["path"]) for m in list_batches(shifts)]
    assert main(["validate", "--data", str(tiny_prepared_dir), "--batch", str(folder), "--out", str(tmp_path / "r")]) == 0
    labels = np.load(folder / "labels.npy")
    np.save(folder / "labels.npy", labels + 7)
    with pytest.raises(ValueError, match="content hash differs"):
        load_batch(folder)
    assert main(["validate", "--data", str(tiny_prepared_dir), "--batch", str(folder), "--out", str(tmp_path / "r")]) == 1
