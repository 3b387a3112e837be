"""Labels that arrive later: .npy and .csv (by index, by id, by class name, a subset) stored in the
batch folder and re-versioned with DVC; every refusal writes nothing; --replace needs a reason and
records the replaced label set; load_batch returns the -1 array and the label set's identity."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lpt_core.cli import main
from lpt_core.data import labels as labels_mod
from lpt_core.data.batches import add_batch, label_set_hash, list_batches, load_batch
from lpt_core.data.labels import AlreadyLabeledError, find_batch, label_batch
from lpt_core.dvcutil import DvcError, dvc_hash

NAMES = [f"img{i}.png" for i in range(6)]  # the unlabeled batch's image ids


@pytest.fixture
def shifts(tmp_path: Path, tiny_prepared_dir: Path) -> Path:
    """A shifts root with an unlabeled batch (a folder of 6 images) and a labelled one (an .npz)."""
    folder = tmp_path / "prod"
    folder.mkdir()
    for i, name in enumerate(NAMES):
        Image.fromarray(np.full((16, 16, 3), 30 * i, np.uint8)).save(folder / name)
    root = tmp_path / "shifts"
    add_batch(folder, root, tiny_prepared_dir, use_dvc=False, unlabeled=True)
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "lab.npz", x=rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8), y=np.array([0, 1, 2, 3]))
    add_batch(tmp_path / "lab.npz", root, tiny_prepared_dir, use_dvc=False)
    return root


def _batch(root: Path, labeled: bool) -> Path:
    (m,) = [m for m in list_batches(root) if m["labeled"] is labeled]
    return Path(m["path"])


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_npy_labels_for_every_image(shifts: Path, tmp_path: Path, tiny_prepared_dir: Path) -> None:
    folder = _batch(shifts, labeled=False)
    before = json.loads((folder / "batch.json").read_text())
    np.save(tmp_path / "y.npy", np.array([4, 3, 2, 1, 0, 0]))
    done = label_batch(folder, tmp_path / "y.npy", dataset_dir=tiny_prepared_dir, use_dvc=False)
    assert (done.n_labeled, done.size, done.origin, done.complete) == (6, 6, "late", True)
    b = load_batch(folder)
    assert b.labels.dtype == np.int64 and b.labels.tolist() == [4, 3, 2, 1, 0, 0]
    assert b.label_set.sha256 == label_set_hash(np.array([4, 3, 2, 1, 0, 0])) == done.sha256
    assert json.loads((folder / "batch.json").read_text()) == before  # the batch itself is unchanged
    doc = json.loads((folder / "labels" / "labels.json").read_text())
    assert doc["schema"] == "lpt-label-set/1" and doc["batch_id"] == before["id"] and doc["n_labeled"] == 6
    assert doc["source"] == str((tmp_path / "y.npy").resolve()) and doc["replaced_sha256"] is None
    assert doc["created_at"] and doc["format"] == "npy" and sorted(p.name for p in (folder / "labels").iterdir()) == [
        "labels.json", "labels.npy"]


def test_csv_subset_by_index_by_id_and_by_class_name(shifts: Path, tmp_path: Path, tiny_prepared_dir: Path,
                                                     capsys) -> None:
    folder = _batch(shifts, labeled=False)
    label_batch(folder, _csv(tmp_path / "a.csv", "index,label\n3,2\n0,4\n"), dataset_dir=tiny_prepared_dir,
                use_dvc=False)
    b = load_batch(folder)
    assert b.labels.tolist() == [4, -1, -1, 2, -1, -1] and b.label_set.n_labeled == 2 and not b.label_set.complete
    assert b.labeled_rows.tolist() == [0, 3]
    assert main(["shift", "list", "--shifts-root", str(shifts)]) == 0
    assert "\t2 of 6 labelled\t" in capsys.readouterr().out
    by_id = _csv(tmp_path / "b.csv", "id,class\nimg5.png,c1\nimg1.png,c3\nimg2.png,c0\n")
    label_batch(folder, by_id, dataset_dir=tiny_prepared_dir, use_dvc=False, replace=True, reason="full review")
    assert load_batch(folder).labels.tolist() == [-1, 3, 0, -1, -1, 1]
    assert list(load_batch(folder).ids) == NAMES


def test_replace_records_the_replaced_label_set_and_reason(shifts: Path, tmp_path: Path,
                                                           tiny_prepared_dir: Path) -> None:
    folder = _batch(shifts, labeled=True)
    given = load_batch(folder)
    assert given.label_set.origin == "batch" and given.label_set.sha256 == label_set_hash(np.array([0, 1, 2, 3]))
    np.save(tmp_path / "fix.npy", np.array([0, 1, 2, 4]))
    done = label_batch(folder, tmp_path / "fix.npy", dataset_dir=tiny_prepared_dir, use_dvc=False, replace=True,
                       reason="row 3 was mislabelled")
    assert done.meta["replaced_sha256"] == given.label_set.sha256 and done.meta["replaced_origin"] == "batch"
    assert done.meta["reason"] == "row 3 was mislabelled" and done.meta["history"][0]["origin"] == "batch"
    again = load_batch(folder)
    assert again.labels.tolist() == [0, 1, 2, 4] and again.meta["content_hash"] == given.meta["content_hash"]
    assert again.labeled  # given with the batch; the late set overrides them
    assert np.load(folder / "labels.npy").tolist() == [0, 1, 2, 3]  # what the content hash covers, untouched


def test_load_batch_detects_an_edited_label_set(shifts: Path, tmp_path: Path, tiny_prepared_dir: Path) -> None:
    folder = _batch(shifts, labeled=False)
    label_batch(folder, _csv(tmp_path / "a.csv", "index,label\n1,1\n"), dataset_dir=tiny_prepared_dir, use_dvc=False)
    np.save(folder / "labels" / "labels.npy", np.array([0, 1, -1, -1, -1, -1]))
    with pytest.raises(ValueError, match="labels/labels.npy differs"):
        load_batch(folder)


# ----------------------------------------------------------------------------- refusals write nothing

REFUSALS = {
    "wrong length": ("y.npy", np.arange(5) % 5, "holds 5 labels.*6 images"),
    "npy out of range": ("y.npy", np.array([0, 1, 2, 3, 4, 5]), r"out of range 0\.\.4; first: 5 at row 5"),
    "negative npy label": ("y.npy", np.array([0, 1, -1, 3, 4, 0]), "out of range"),
    "float labels": ("y.npy", np.array([0.5, 1, 2, 3, 4, 0]), "must be integers"),
    "csv out of range": ("y.csv", "index,label\n0,1\n1,9\n", r"out of range 0\.\.4; first: 9 at line 3"),
    "unknown id": ("y.csv", "id,label\nimg1.png,1\nimg9.png,2\n", "does not have; first: line 3 \\(id 'img9.png'\\)"),
    "index out of range": ("y.csv", "index,label\n6,1\n", "not a row 0..5"),
    "duplicate ids": ("y.csv", "id,label\nimg1.png,1\nimg1.png,2\n", r"name the same image \(id \['img1.png'\]\)"),
    "duplicate index": ("y.csv", "index,label\n2,1\n02,3\n", "name the same image"),
    "unknown class": ("y.csv", "id,class\nimg1.png,dog\n", "unknown class name.*'dog'.*'c0'"),
    "both keys": ("y.csv", "index,id,label\n0,img0.png,1\n", r"exactly one of the columns \['index', 'id'\]"),
    "no value column": ("y.csv", "index,score\n0,1\n", r"exactly one of the columns \['label', 'class'\]"),
    "empty label": ("y.csv", "index,label\n0,\n", "without a label"),
    "not an integer": ("y.csv", "index,label\n0,two\n", "'two' at line 2"),
    "no rows": ("y.csv", "index,label\n", "no rows"),
    "other format": ("y.txt", "0 1 2", "expected an .npy"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_labels_are_refused_and_nothing_is_written(case: str, shifts: Path, tmp_path: Path,
                                                      tiny_prepared_dir: Path, dh) -> None:
    name, content, match = REFUSALS[case]
    path = tmp_path / name
    np.save(path, content) if isinstance(content, np.ndarray) else path.write_text(content)
    before = dh.tree(shifts)
    with pytest.raises(ValueError, match=match):
        label_batch(_batch(shifts, labeled=False), path, dataset_dir=tiny_prepared_dir, use_dvc=False)
    assert dh.tree(shifts) == before


def test_state_refusals_write_nothing(shifts: Path, tmp_path: Path, tiny_prepared_dir: Path, dh) -> None:
    np.save(tmp_path / "y.npy", np.zeros(4, np.int64))
    labelled, unlabeled = _batch(shifts, labeled=True), _batch(shifts, labeled=False)
    ok = _csv(tmp_path / "ok.csv", "index,label\n0,1\n")
    label_batch(unlabeled, ok, dataset_dir=tiny_prepared_dir, use_dvc=False)
    before = dh.tree(shifts)
    cases = [
        (AlreadyLabeledError, "already has labels \\(4 of 4 labelled, given with the batch", labelled, {}),
        (AlreadyLabeledError, "already has labels \\(1 of 6 labelled, added later", unlabeled, {}),
        (ValueError, "needs a non-empty reason", labelled, {"replace": True}),
        (ValueError, "needs a non-empty reason", labelled, {"replace": True, "reason": "   "}),
        (ValueError, "pass --replace, or drop --reason", labelled, {"reason": "why"}),
        (ValueError, "holds the labels batch .* has already", unlabeled, {"replace": True, "reason": "same"}),
    ]
    for exc, match, folder, kw in cases:
        path = ok if folder == unlabeled else tmp_path / "y.npy"
        with pytest.raises(exc, match=match):
            label_batch(folder, path, dataset_dir=tiny_prepared_dir, use_dvc=False, **kw)
    with pytest.raises(FileNotFoundError, match="no shift batch 'nope'"):
        find_batch(shifts, "nope")
    with pytest.raises(ValueError, match="is not a batch id"):
        find_batch(shifts, "../shifts")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        label_batch(unlabeled, tmp_path / "missing.csv", dataset_dir=tiny_prepared_dir, use_dvc=False)
    with pytest.raises(DvcError, match="--no-dvc"):
        label_batch(unlabeled, ok, dataset_dir=tiny_prepared_dir, replace=True, reason="r")  # no DVC repo
    assert dh.tree(shifts) == before


def test_labels_of_another_dataset_are_refused(shifts: Path, tmp_path: Path, tiny_prepared_dir: Path, dh) -> None:
    other = tmp_path / "other"
    other.mkdir()
    meta = json.loads((tiny_prepared_dir / "dataset.json").read_text())
    (other / "dataset.json").write_text(json.dumps({**meta, "name": "another"}))
    before = dh.tree(shifts)
    with pytest.raises(ValueError, match="refers to dataset 'tiny-lt'.*dataset 'another'"):
        label_batch(_batch(shifts, labeled=False), _csv(tmp_path / "a.csv", "index,label\n0,1\n"), dataset_dir=other,
                    use_dvc=False)
    assert dh.tree(shifts) == before


def test_a_failed_dvc_add_restores_the_previous_labels(shifts: Path, tmp_path: Path, tiny_prepared_dir: Path,
                                                      monkeypatch, dh) -> None:
    folder = _batch(shifts, labeled=False)
    label_batch(folder, _csv(tmp_path / "a.csv", "index,label\n0,1\n"), dataset_dir=tiny_prepared_dir, use_dvc=False)
    dvc_file = folder.with_name(folder.name + ".dvc")
    dvc_file.write_text("outs:\n- md5: abc.dir\n  path: x\n")  # as if versioned
    before = dh.tree(shifts)

    def broken(path):
        raise DvcError("dvc add failed (injected)")

    monkeypatch.setattr(labels_mod.dvcutil, "require_dvc_root", lambda path: path)
    monkeypatch.setattr(labels_mod.dvcutil, "dvc_add", broken)
    with pytest.raises(DvcError, match="injected"):
        label_batch(folder, _csv(tmp_path / "b.csv", "index,label\n1,2\n"), dataset_dir=tiny_prepared_dir,
                    replace=True, reason="recount")
    assert dh.tree(shifts) == before and load_batch(folder).labels.tolist() == [1, -1, -1, -1, -1, -1]


# ----------------------------------------------------------------------------- CLI + DVC


def test_cli_label_re_versions_the_batch_with_dvc(dvc_repo: Path, tiny_prepared_dir: Path, monkeypatch, capsys,
                                                  dh) -> None:
    monkeypatch.chdir(dvc_repo)
    data = str(tiny_prepared_dir)
    np.save(dvc_repo / "prod.npy", np.random.default_rng(5).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8))
    assert main(["shift", "add", "prod.npy", "--data", data, "--unlabeled"]) == 0
    batch_id = re.search(r"registered shift batch (\S+)", capsys.readouterr().out).group(1)
    folder = dvc_repo / "data" / "shifts" / batch_id
    md5, content_hash = dvc_hash(folder), load_batch(folder).meta["content_hash"]
    _csv(dvc_repo / "y.csv", "index,label\n0,1\n5,4\n")
    assert main(["shift", "label", batch_id, "y.csv", "--data", data]) == 0
    out = capsys.readouterr().out
    assert f"labelled shift batch {batch_id}: 2 of 6 images" in out and dvc_hash(folder) in out
    assert dvc_hash(folder) != md5 and load_batch(folder).meta["content_hash"] == content_hash
    status = subprocess.run(["dvc", "status", f"data/shifts/{batch_id}.dvc"], cwd=dvc_repo, capture_output=True,
                            text=True, check=True).stdout
    assert "up to date" in status  # the .dvc file describes the folder as it is now
    before = dh.tree(dvc_repo / "data")
    assert main(["shift", "label", batch_id, "y.csv", "--data", data]) == 2  # labelled already
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already has labels" in err and "--replace" in err
    assert main(["shift", "label", "20990101-nope", "y.csv", "--data", data]) == 2
    assert "no shift batch '20990101-nope'" in capsys.readouterr().err
    assert dh.tree(dvc_repo / "data") == before
    assert main(["shift", "label", batch_id, "y.csv", "--data", data, "--replace", "--reason", "recheck"]) == 2
    assert "holds the labels" in capsys.readouterr().err  # the same labels again are no replacement
    _csv(dvc_repo / "z.csv", "index,label\n0,2\n")
    assert main(["shift", "label", batch_id, "z.csv", "--data", data, "--replace", "--reason", "recheck"]) == 0
    assert "replaced:" in capsys.readouterr().out
    assert main(["shift", "list"]) == 0
    assert "\t1 of 6 labelled (replaced)\t" in capsys.readouterr().out
