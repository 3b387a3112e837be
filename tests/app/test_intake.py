"""The incoming drop folder: labelled items at the top, unlabeled ones in ``incoming/unlabeled/``,
labels for stored batches in ``incoming/labels/<batch id>.npy|.csv``; each item handled once and
moved to ``.done/`` or ``.rejected/`` (with its reason) of its folder; refusals write nothing."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lpt_core.data.labels", reason="lpt_core.data.labels is not in this checkout yet")

from app_fakes import settings_for  # noqa: E402

from app.intake import discover_batches, intake_incoming, intake_labels  # noqa: E402
from lpt_core.data.batches import list_batches, load_batch  # noqa: E402
from lpt_core.data.store import ArraySplit, PreparedDataset, save_prepared  # noqa: E402
from lpt_core.dvcutil import dvc_hash  # noqa: E402


def _prepared(root: Path) -> Path:
    rng = np.random.default_rng(0)

    def split(per: int) -> ArraySplit:
        labels = np.repeat(np.arange(3), per).astype(np.int64)
        return ArraySplit(rng.integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8), labels)

    data = PreparedDataset(split(4), split(1), split(2), ["cat", "dog", "owl"], {"name": "tiny", "seed": 0})
    return save_prepared(root / "prepared", data)


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


@pytest.fixture
def settings(tmp_path: Path):
    _prepared(tmp_path)
    s = settings_for(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)
    (tmp_path / "incoming" / "unlabeled").mkdir(parents=True)
    (tmp_path / "incoming" / "labels").mkdir()
    return dataclasses.replace(s, use_dvc=0)


def test_unlabeled_items_come_through_the_unlabeled_subfolder(settings, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    np.savez(incoming / "unlabeled" / "night1.npz", x=_images(5, 1))
    np.save(incoming / "unlabeled" / "night2.npy", _images(4, 2))
    np.savez(incoming / "labelled.npz", x=_images(3, 3), y=np.array([0, 1, 2]))
    np.savez(incoming / "forgot.npz", x=_images(3, 4))  # unlabeled, but dropped at the top
    np.savez(incoming / "unlabeled" / "has-y.npz", x=_images(3, 5), y=np.array([0, 1, 2]))
    refused = intake_incoming(settings)
    assert sorted(refused) == ["forgot.npz", "unlabeled/has-y.npz"]
    assert "incoming/unlabeled/" in refused["forgot.npz"] and "--unlabeled" in refused["forgot.npz"]
    assert "goes into the incoming folder itself" in refused["unlabeled/has-y.npz"]
    metas = list_batches(settings.shifts_dir)
    assert sorted((m["labeled"], m["size"]) for m in metas) == [(False, 4), (False, 5), (True, 3)]
    assert sorted(p.name for p in (incoming / "unlabeled" / ".done").iterdir()) == ["night1.npz", "night2.npy"]
    assert (incoming / "unlabeled" / ".rejected" / "has-y.npz.reason.txt").is_file()
    assert (incoming / ".rejected" / "forgot.npz.reason.txt").read_text().startswith("LabelsMismatchError")
    assert sorted(p.name for p in incoming.iterdir()) == [".done", ".rejected", "labels", "unlabeled"]
    assert intake_incoming(settings) == {}  # handled once


def test_labels_from_the_drop_folder(settings, tmp_path: Path) -> None:
    np.savez(tmp_path / "incoming" / "unlabeled" / "n.npz", x=_images(4, 1))
    assert intake_incoming(settings) == {}
    (batch,) = list_batches(settings.shifts_dir)
    labels = tmp_path / "incoming" / "labels"
    (labels / f"{batch['id']}.csv").write_text("index,class\n0,owl\n2,cat\n")
    (labels / "20990101-real-unknown-s0-00000000.npy").write_bytes(b"")  # no such batch
    (labels / "notes.txt").write_text("hello")
    labelled, refused = intake_labels(settings)
    assert labelled == [batch["id"]] and sorted(refused) == ["labels/20990101-real-unknown-s0-00000000.npy",
                                                             "labels/notes.txt"]
    assert "no shift batch" in refused["labels/20990101-real-unknown-s0-00000000.npy"]
    assert load_batch(batch["path"]).labels.tolist() == [2, -1, 0, -1]
    assert (labels / ".done" / f"{batch['id']}.csv").is_file()
    assert sorted(p.name for p in Path(batch["path"]).iterdir()) == [  # nothing else lands in the batch
        "batch.json", "ids.csv", "images.npy", "labels", "validation.html", "validation.json"]
    np.save(labels / f"{batch['id']}.npy", np.array([1, 1, 1, 1]))
    before = (Path(batch["path"]) / "labels" / "labels.json").read_bytes()
    refused = intake_incoming(settings)  # the drop folder never replaces labels
    assert "already has labels" in refused[f"labels/{batch['id']}.npy"] and "--replace" in refused[
        f"labels/{batch['id']}.npy"]
    assert (Path(batch["path"]) / "labels" / "labels.json").read_bytes() == before


def test_discover_registers_an_unlabeled_batch_in_the_store(settings, tmp_path: Path, engine) -> None:
    np.save(tmp_path / "incoming" / "unlabeled" / "n.npy", _images(3, 7))
    added, refused = discover_batches(settings, engine)
    (batch,) = list_batches(settings.shifts_dir)
    assert added == [batch["id"]] and refused == {} and batch["labeled"] is False


def test_intake_labels_re_versions_with_dvc(settings, tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True)
    settings = dataclasses.replace(settings, use_dvc=1)
    np.savez(tmp_path / "incoming" / "unlabeled" / "n.npz", x=_images(4, 1))
    assert intake_incoming(settings) == {}
    (batch,) = list_batches(settings.shifts_dir)
    md5 = dvc_hash(batch["path"])
    np.save(tmp_path / "incoming" / "labels" / f"{batch['id']}.npy", np.array([0, 1, 2, 0]))
    assert intake_labels(settings) == ([batch["id"]], {})
    assert dvc_hash(batch["path"]) not in (None, md5)
    assert load_batch(batch["path"]).label_set.complete
