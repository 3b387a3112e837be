"""Great Expectations suites: a good prepared set passes; each kind of bad data fails by name."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from lpt_core.cli import main
from lpt_core.data.store import ArraySplit, load_prepared
from lpt_core.validation import DataValidationError, validate_batch, validate_prepared


@pytest.fixture(scope="module")
def tiny(tiny_prepared_dir: Path):
    return load_prepared(tiny_prepared_dir, mmap=False)


def _failed(report) -> dict[str, dict]:
    return {f"{f['expectation']}:{next(iter(f['target'].values()), '')}": f for f in report.failures}


def test_good_prepared_set_passes_and_writes_offline_html(tiny, tmp_path: Path) -> None:
    report = validate_prepared(tiny, tmp_path)
    assert report.success, report.summary()
    doc = json.loads((tmp_path / "validation.json").read_text())
    assert doc["success"] and "prepared_class_counts" in doc["gx"]["tables"]
    page = (tmp_path / "validation.html").read_text()
    assert "PASSED" in page and "http" not in page and "<script" not in page


def _with_train(tiny, train: ArraySplit):
    return dataclasses.replace(tiny, train=train)


def test_label_out_of_range_and_count_mismatch(tiny) -> None:
    labels = tiny.train.labels.copy()
    labels[0] = 9
    report = validate_prepared(_with_train(tiny, ArraySplit(tiny.train.images, labels, tiny.train.ids)))
    failed = _failed(report)
    assert failed["expect_column_values_to_be_between:label"]["offending"]["values"] == [9]
    assert "expect_column_pair_values_to_be_equal:observed" in failed
    with pytest.raises(DataValidationError, match="label"):
        report.raise_for_failure()


def test_duplicate_ids_and_train_test_overlap(tiny) -> None:
    ids = tiny.train.ids.copy()
    ids[1] = ids[0]
    images = tiny.train.images.copy()
    images[2] = tiny.test.images[0]
    report = validate_prepared(_with_train(tiny, ArraySplit(images, tiny.train.labels, ids)))
    failed = _failed(report)
    assert failed["expect_column_values_to_be_unique:id"]["offending"]["values"] == [ids[0], ids[0]]
    assert failed["expect_column_values_to_not_be_in_set:train_sha256"]["offending"]["unexpected_count"] == 1


def test_wrong_image_shape_against_profile(tiny) -> None:
    meta = {**tiny.meta, "image_shape": [32, 32, 3]}
    report = validate_prepared(dataclasses.replace(tiny, meta=meta))
    assert "expect_column_values_to_be_in_set:height" in _failed(report)


def _batch(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8), np.arange(n) % 5


def test_good_batch_passes_and_each_fault_is_named() -> None:
    x, y = _batch()
    assert validate_batch(x, y, num_classes=5, image_shape=(16, 16), severity=2).success
    cases = {
        "label": (x, np.r_[y[:-1], 5], None),
        "severity": (x, y, 6),
        "n_images": (x, y[:-1], None),
        "nan_count": (np.where(np.arange(6)[:, None, None, None] == 0, np.nan, x.astype(np.float32)), y, None),
        "height": (x[:, :8], y, None),
    }
    for column, (xx, yy, sev) in cases.items():
        report = validate_batch(xx, yy, num_classes=5, image_shape=(16, 16), severity=sev)
        targets = [v for f in report.failures for v in f["target"].values()]
        assert column in targets, (column, report.summary())


def test_empty_and_duplicate_batches_fail() -> None:
    x, y = _batch()
    empty = validate_batch(x[:0], y[:0], num_classes=5, image_shape=(16, 16))
    assert not empty.success and "n_images" in empty.summary()
    from lpt_core.validation import batch_content_hash

    dup = validate_batch(x, y, num_classes=5, image_shape=(16, 16), registered_hashes={batch_content_hash(x, y)})
    assert [f["target"] for f in dup.failures] == [{"column": "content_hash"}]


def test_cli_validate_exit_codes(tiny_prepared_dir: Path, tmp_path: Path, tiny) -> None:
    assert main(["validate", "--data", str(tiny_prepared_dir), "--out", str(tmp_path / "ok")]) == 0
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(tiny_prepared_dir, bad)
    labels = np.load(bad / "train" / "labels.npy")
    labels[-3:] = 0  # the last rows belong to the rarest class
    np.save(bad / "train" / "labels.npy", labels)
    assert main(["validate", "--data", str(bad), "--out", str(tmp_path / "bad-report")]) == 1
    assert not json.loads((tmp_path / "bad-report" / "validation.json").read_text())["success"]


def test_unlabeled_batch_runs_the_same_checks_without_the_label_ones() -> None:
    import hashlib

    from lpt_core.validation import batch_content_hash

    x, y = _batch()
    ok = validate_batch(x, None, num_classes=5, image_shape=(16, 16))
    checked = {v for t in ok.result["tables"].values() for r in t["results"]
               for v in r["expectation_config"]["kwargs"].values() if isinstance(v, str)}
    assert ok.success and {"dtype", "height", "nan_count", "content_hash"} <= checked
    assert not {"label", "labels_ndim", "n_labels"} & checked
    assert batch_content_hash(x, None) == hashlib.sha256(x.tobytes()).hexdigest() != batch_content_hash(x, y)
    for bad, column in ((x.astype(np.float32), "dtype"), (x[:0], "n_images"), (x[..., :2], "channels")):
        report = validate_batch(bad, None, num_classes=5, image_shape=(16, 16))
        assert column in [v for f in report.failures for v in f["target"].values()], report.summary()
    dup = validate_batch(x, None, num_classes=5, image_shape=(16, 16), registered_image_hashes={batch_content_hash(x, None)})
    assert [f["target"] for f in dup.failures] == [{"column": "images_hash"}]


def test_the_same_batch_gives_the_same_report_bytes(tmp_path) -> None:
    """No run time, run id or random expectation id in a stored report (DVC hashes it)."""
    x, y = _batch()
    texts = []
    for i in range(2):
        validate_batch(x, y, num_classes=5, image_shape=(16, 16), severity=2).write(tmp_path / str(i))
        texts.append((tmp_path / str(i) / "validation.json").read_bytes())
    assert texts[0] == texts[1]
