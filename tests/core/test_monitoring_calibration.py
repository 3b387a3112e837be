"""Calibration files (exact, byte-deterministic round trip), monitor_batch's result and its checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from monitoring_synth import class_logits, longtail_counts, lpt_outputs

from lpt_core.monitoring import Calibration, ModelOutputs, fit_calibration, monitor_batch

C, POOL = 6, 5
MU = np.linspace(0.5, 0.3, C)
COUNTS = np.array([400, 150, 60, 30, 12, 4])


def _fit(seed: int = 0, lpt: bool = True) -> tuple[Calibration, np.random.Generator]:
    """A calibration fitted on seeded synthetic outputs (identical seeds: identical inputs)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(C), longtail_counts(C, 120, 20))
    if not lpt:
        return fit_calibration(ModelOutputs(class_logits(labels, MU, rng)), labels, COUNTS), rng
    cal = fit_calibration(lpt_outputs(labels, MU, POOL, rng), labels, COUNTS, pool_size=POOL, min_group_images=30,
                          info={"artifact_sha256": "ab" * 32, "reference": "val"})
    return cal, rng


def _assert_same(a: Calibration, b: Calibration) -> None:
    assert a.metadata() == b.metadata()
    arrays_a, arrays_b = a.arrays(), b.arrays()
    assert sorted(arrays_a) == sorted(arrays_b)
    for name, value in arrays_a.items():
        assert value.dtype == arrays_b[name].dtype and np.array_equal(value, arrays_b[name]), name


@pytest.mark.parametrize("lpt", [True, False])
def test_save_load_round_trip_is_exact_and_byte_deterministic(tmp_path, lpt: bool) -> None:
    cal, rng = _fit(lpt=lpt)
    again, _ = _fit(lpt=lpt)  # refitted from identical inputs
    folders = [cal.save(tmp_path / "a"), cal.save(tmp_path / "b"), again.save(tmp_path / "c")]
    for name in ("calibration.json", "calibration.safetensors"):
        assert len({(folder / name).read_bytes() for folder in folders}) == 1, name
    loaded = Calibration.load(folders[0])
    _assert_same(cal, loaded)
    assert (loaded.selection is not None) == lpt and loaded.info == cal.info
    labels = rng.integers(0, C, 200)
    batch = lpt_outputs(labels, MU, POOL, rng) if lpt else ModelOutputs(class_logits(labels, MU, rng))
    assert monitor_batch(cal, batch).to_dict() == monitor_batch(loaded, batch).to_dict()
    assert "created_at" not in (folders[0] / "calibration.json").read_text()


def test_load_refuses_other_folders_and_schemas(tmp_path) -> None:
    cal, _ = _fit()
    with pytest.raises(FileNotFoundError, match="not a calibration folder"):
        Calibration.load(tmp_path)
    folder = cal.save(tmp_path / "c")
    doc = json.loads((folder / "calibration.json").read_text())
    (folder / "calibration.json").write_text(json.dumps({**doc, "schema": "other/9"}))
    with pytest.raises(ValueError, match="other/9"):
        Calibration.load(folder)


def test_monitor_result_is_json_ready_and_complete() -> None:
    cal, rng = _fit()
    labels = rng.integers(0, C, 300)
    outputs = lpt_outputs(labels, MU, POOL, rng)
    result = monitor_batch(cal, outputs, labels=labels, top_classes=3)
    doc = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert doc["schema"] == "lpt-monitor/1" and doc["n_images"] == 300
    assert {d["name"] for d in doc["detectors"]} == {"bbsd", "prompt_selection", "key_cosine"}
    assert set(result.pvalues()) == {"bbsd", "prompt_selection", "key_cosine"}
    assert all(0.0 <= p <= 1.0 for p in result.pvalues().values())
    groups = {e["group"] for e in doc["estimates"]}
    assert "overall" in groups and groups <= {"overall", "predicted:many", "predicted:medium", "predicted:few"}
    assert all(e["estimator"] in ("atc_max_conf", "atc_neg_entropy", "doc", "avg_conf") for e in doc["estimates"])
    top1 = float(np.mean(outputs.logits.argmax(1) == labels))
    assert doc["measured"][0] == {"name": "top1", "group": "overall", "value": top1, "n": 300}
    assert len(doc["estimate_errors"]) == len(doc["estimates"])
    assert len(doc["label_shift"]["largest_changes"]) == 3 and len(doc["label_shift"]["prior"]) == C
    assert monitor_batch(cal, outputs).measured == () and monitor_batch(cal, outputs).estimate_errors() == []


def test_monitor_batch_refuses_mismatched_outputs() -> None:
    cal, rng = _fit()
    plain = ModelOutputs(class_logits(rng.integers(0, C, 50), MU, rng))
    with pytest.raises(ValueError, match="lack prompt selections"):
        monitor_batch(cal, plain)
    with pytest.raises(ValueError, match="classes"):
        monitor_batch(cal, ModelOutputs(np.zeros((10, C + 1), np.float32)))
    with pytest.raises(ValueError, match="at least 2 images"):
        monitor_batch(cal, lpt_outputs(np.array([0]), MU, POOL, rng))
    with pytest.raises(ValueError, match="labels must lie"):
        monitor_batch(cal, lpt_outputs(np.arange(C), MU, POOL, rng), labels=np.arange(C) + 1)


def test_fit_calibration_refuses_bad_inputs() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, C, 100)
    outputs = ModelOutputs(class_logits(labels, MU, rng))
    with pytest.raises(ValueError, match="pool_size=5 given"):
        fit_calibration(outputs, labels, COUNTS, pool_size=5)
    with pytest.raises(ValueError, match="target_prior='uniform'"):
        fit_calibration(outputs, labels, COUNTS, target_prior="uniform")
    with pytest.raises(ValueError, match="target_prior must be 6"):
        fit_calibration(outputs, labels, COUNTS, target_prior=np.ones(3))
    with pytest.raises(ValueError, match="class_counts must have 6"):
        fit_calibration(outputs, labels, COUNTS[:4])
    with pytest.raises(ValueError, match="labels must be 100 integers"):
        fit_calibration(outputs, labels[:50], COUNTS)
    with pytest.raises(ValueError, match="selected prompt index is 4"):
        fit_calibration(lpt_outputs(labels, MU, POOL, rng), labels, COUNTS, pool_size=3)
    with pytest.raises(ValueError, match="given together"):
        ModelOutputs(outputs.logits, selected=np.zeros((100, 2), np.int64))
    with pytest.raises(ValueError, match="NaN"):
        ModelOutputs(np.full((3, 4), np.nan, np.float32))
