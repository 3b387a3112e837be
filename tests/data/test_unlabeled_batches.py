"""Unlabeled shift batches (production images, labels later or never): each input format stored
without labels and with ids, validated by the same GX suite minus the label checks, hashed over
the images only, refused as duplicates and when the input's kind does not match --unlabeled."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lpt_core.cli import main
from lpt_core.data.batch_inputs import LabelsMismatchError
from lpt_core.data.batches import add_batch, list_batches, load_batch
from lpt_core.dvcutil import dvc_hash
from lpt_core.validation import DataValidationError


def _images(n: int = 6, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _flat_folder(path: Path, names: list[str], size: int = 16) -> Path:
    """Image files straight in ``path``; file i is filled with the value 10 * (i + 1)."""
    path.mkdir(parents=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((size, size, 3), 10 * (i + 1), np.uint8)).save(path / name)
    return path


@pytest.fixture
def shifts(tmp_path: Path, tiny_prepared_dir: Path) -> Path:
    """A shifts root holding one labelled and one unlabeled batch (so "untouched" is a real check)."""
    root = tmp_path / "shifts"
    np.savez(tmp_path / "seed.npz", x=_images(3, seed=1), y=np.arange(3))
    add_batch(tmp_path / "seed.npz", root, tiny_prepared_dir, use_dvc=False)
    np.savez(tmp_path / "seed-u.npz", x=_images(4, seed=2))
    add_batch(tmp_path / "seed-u.npz", root, tiny_prepared_dir, use_dvc=False, unlabeled=True)
    return root


def test_unlabeled_npz_is_stored_without_labels_and_hashed_over_images_only(shifts: Path, tmp_path: Path,
                                                                          tiny_prepared_dir: Path) -> None:
    x = _images()
    np.savez(tmp_path / "prod.npz", x=x)
    b = add_batch(tmp_path / "prod.npz", shifts, tiny_prepared_dir, use_dvc=False, unlabeled=True)
    assert sorted(p.name for p in b.path.iterdir()) == ["batch.json", "ids.csv", "images.npy", "validation.html",
                                                        "validation.json"]
    meta = json.loads((b.path / "batch.json").read_text())
    assert meta["labeled"] is False and meta["kind"] == "real" and meta["corruption"] == "unknown"
    assert meta["content_hash"] == hashlib.sha256(x.tobytes()).hexdigest() == meta["images_hash"]
    assert meta["validation"]["success"] and meta["size"] == 6
    loaded = load_batch(b.path)
    assert loaded.labels is None and loaded.label_set is None and not loaded.labeled
    assert np.array_equal(loaded.images, x) and loaded.ids.tolist() == [str(i) for i in range(6)]
    (listed,) = [m for m in list_batches(shifts) if m["id"] == b.id]
    assert listed["label_set"] is None


def test_unlabeled_folder_ids_are_the_sorted_file_names(tmp_path: Path, tiny_prepared_dir: Path) -> None:
    folder = _flat_folder(tmp_path / "prod", ["b.png", "a.png", "c.jpg"], size=24)  # resized to 16
    b = add_batch(folder, tmp_path / "s", tiny_prepared_dir, use_dvc=False, unlabeled=True)
    assert b.ids.tolist() == ["a.png", "b.png", "c.jpg"] and b.images.shape == (3, 16, 16, 3)
    assert b.images[:, 0, 0, 0].tolist()[:2] == [20, 10]  # a.png was written second, b.png first
    assert load_batch(b.path).ids.tolist() == ["a.png", "b.png", "c.jpg"]


def test_unlabeled_images_npy_ids_are_row_indices(tmp_path: Path, tiny_prepared_dir: Path) -> None:
    np.save(tmp_path / "prod.npy", _images(5))
    b = add_batch(tmp_path / "prod.npy", tmp_path / "s", tiny_prepared_dir, use_dvc=False, unlabeled=True)
    assert b.meta["labeled"] is False and b.ids.tolist() == ["0", "1", "2", "3", "4"]
    assert (b.path / "ids.csv").read_text().splitlines()[:2] == ["row,id", "0,0"]


# ----------------------------------------------------------------------------- refused, nothing written


@pytest.fixture
def refuse(shifts: Path, tiny_prepared_dir: Path, dh):
    """Assert that adding ``path`` raises ``exc`` matching ``match`` and leaves ``shifts`` byte-identical."""

    def check(exc: type[BaseException], match: str, path: Path, **kw) -> None:
        before = dh.tree(shifts)
        with pytest.raises(exc, match=match):
            add_batch(path, shifts, tiny_prepared_dir, use_dvc=False, **{"unlabeled": True, **kw})
        assert dh.tree(shifts) == before

    return check


@pytest.mark.parametrize("array, column", [
    (_images().astype(np.float32), "dtype"),                                         # float images
    (np.where(np.arange(6)[:, None, None, None] == 2, np.nan, _images().astype(np.float32)), "nan_count"),
    (_images(size=20), "height"),                                                    # wrong size
    (_images()[..., 0], "ndim"),                                                     # no channel axis
    (_images(0), "n_images"),                                                        # empty
])  # fmt: skip
def test_unlabeled_npy_bad_arrays_are_refused_with_the_reason(tmp_path: Path, refuse, array, column) -> None:
    np.save(tmp_path / "bad.npy", array)
    refuse(DataValidationError, column, tmp_path / "bad.npy")


def test_unlabeled_bad_npz_and_folder_are_refused(tmp_path: Path, refuse) -> None:
    with_nan = np.where(np.arange(6)[:, None, None, None] == 0, np.nan, _images().astype(np.float32))
    np.savez(tmp_path / "nan.npz", x=with_nan)
    refuse(DataValidationError, "nan_count", tmp_path / "nan.npz")
    np.save(tmp_path / "cut.npy", _images())
    (tmp_path / "cut.npy").write_bytes((tmp_path / "cut.npy").read_bytes()[:200])
    refuse(ValueError, "truncated or corrupt", tmp_path / "cut.npy")
    folder = _flat_folder(tmp_path / "broken", ["a.png"])
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    refuse(ValueError, "b.png", folder)


def test_same_images_again_are_a_duplicate_whatever_the_format(tmp_path: Path, refuse, shifts: Path) -> None:
    (seed,) = [m for m in list_batches(shifts) if not m["labeled"]]
    np.save(tmp_path / "again.npy", _images(4, seed=2))  # the unlabeled seed batch's images, as an .npy
    refuse(DataValidationError, f"already registered as {seed['id']}", tmp_path / "again.npy")


def test_images_of_a_labelled_batch_are_refused_as_unlabeled_and_vice_versa(tmp_path: Path, refuse,
                                                                          shifts: Path) -> None:
    by_kind = {m["labeled"]: m["id"] for m in list_batches(shifts)}
    np.savez(tmp_path / "x.npz", x=_images(3, seed=1))  # the labelled seed batch's images, without y
    refuse(DataValidationError, f"already registered as {by_kind[True]}", tmp_path / "x.npz")
    np.savez(tmp_path / "xy.npz", x=_images(4, seed=2), y=np.zeros(4, np.int64))  # the unlabeled one's, with y
    refuse(DataValidationError, rf"lpt shift label {by_kind[False]}", tmp_path / "xy.npz", unlabeled=False)


def test_unlabeled_mismatches_are_refused(tmp_path: Path, refuse) -> None:
    (tmp_path / "classes" / "c1").mkdir(parents=True)
    Image.fromarray(_images(1)[0]).save(tmp_path / "classes" / "c1" / "x.png")
    refuse(LabelsMismatchError, "class folders.*drop --unlabeled", tmp_path / "classes")
    np.savez(tmp_path / "xy.npz", x=_images(), y=np.arange(6) % 5)
    refuse(LabelsMismatchError, "holds labels", tmp_path / "xy.npz")
    np.save(tmp_path / "fog.npy", _images(5))
    np.save(tmp_path / "labels.npy", np.zeros(5, np.int64))
    refuse(LabelsMismatchError, "labelled -C layout", tmp_path / "fog.npy")
    (tmp_path / "other").mkdir()
    np.save(tmp_path / "other" / "p.npy", _images(5))
    refuse(LabelsMismatchError, "drop --labels or --unlabeled", tmp_path / "other" / "p.npy",
           labels_path=tmp_path / "labels.npy")


def test_labelled_add_of_unlabeled_input_names_unlabeled(tmp_path: Path, refuse) -> None:
    flat = _flat_folder(tmp_path / "flat", ["a.png"])
    refuse(LabelsMismatchError, "no class folders.*--unlabeled", flat, unlabeled=False)
    np.savez(tmp_path / "x.npz", x=_images())
    refuse(LabelsMismatchError, "lacks array y.*--unlabeled", tmp_path / "x.npz", unlabeled=False)
    np.save(tmp_path / "prod.npy", _images())
    refuse(LabelsMismatchError, "--unlabeled", tmp_path / "prod.npy", unlabeled=False, severity=1)
    mixed = _flat_folder(tmp_path / "mixed", ["a.png"])
    (mixed / "c0").mkdir()
    refuse(ValueError, "mixes class folders and loose image files", mixed, unlabeled=False)
    refuse(ValueError, "mixes class folders and loose image files", mixed)


# ----------------------------------------------------------------------------- CLI + DVC


def test_cli_add_unlabeled_versions_with_dvc_and_lists(dvc_repo: Path, tiny_prepared_dir: Path, monkeypatch,
                                                       capsys) -> None:
    monkeypatch.chdir(dvc_repo)
    np.savez(dvc_repo / "prod.npz", x=_images())
    data = str(tiny_prepared_dir)
    assert main(["shift", "add", "prod.npz", "--data", data]) == 2  # labelled by default: refused, one line
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--unlabeled" in err and not list(dvc_repo.glob("data/shifts/*"))
    assert main(["shift", "add", "prod.npz", "--data", data, "--unlabeled"]) == 0
    out = capsys.readouterr().out
    batch_id = re.search(r"registered shift batch (\S+)", out).group(1)
    assert "unlabeled" in out and (dvc_repo / "data" / "shifts" / f"{batch_id}.dvc").is_file()
    assert dvc_hash(dvc_repo / "data" / "shifts" / batch_id) in out
    assert main(["shift", "add", "prod.npz", "--data", data, "--unlabeled"]) == 2  # duplicate
    assert "already registered" in capsys.readouterr().err
    assert main(["shift", "list"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(batch_id) and "\tunlabeled\t" in line
    assert main(["validate", "--data", data, "--batch", f"data/shifts/{batch_id}", "--out", "r"]) == 0
