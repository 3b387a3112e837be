"""A shrunk run of the real dvc.yaml in a throw-away repository (see conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

RESULT_KEYS = {"schema", "model", "shift", "metrics", "per_class", "eval_seconds", "images_per_second",
               "device", "code_version", "created_at"}  # fmt: skip
MODEL_KEYS = {"name", "method", "artifact", "artifact_sha256", "backbone", "backbone_fingerprint",
              "trainable_params", "stored_params", "data_version"}  # fmt: skip
SHIFT_KEYS = {"id", "kind", "dataset", "corruption", "severity", "size", "content_hash", "dvc_hash"}


def _params(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text())


def test_repro_writes_every_result_in_schema(pipeline_repo: Path, repro) -> None:
    params = _params(pipeline_repo)
    models = [("results", m) for m in params["evaluate"]["models"]] + [("metrics/baselines", "pixel_logreg")]
    shifts = ["clean"] + [f"{c}-s{s}" for c in params["shifts"]["corruptions"] for s in params["shifts"]["severities"]]
    for folder, model in models:
        for shift in shifts:
            data = json.loads((pipeline_repo / folder / model / f"{shift}.json").read_text())
            assert set(data) == RESULT_KEYS
            assert data["schema"] == "lpt-result/1"
            assert set(data["model"]) == MODEL_KEYS and data["model"]["name"] == model
            assert set(data["shift"]) == SHIFT_KEYS and data["shift"]["id"] == shift
            assert data["shift"]["size"] == params["shifts"]["size"]
            top1 = [m for m in data["metrics"] if m["name"] == "top1" and m["group"] == "overall"]
            assert len(top1) == 1 and 0.0 <= top1[0]["value"] <= 1.0
    clean = json.loads((pipeline_repo / "results" / "lpt" / "clean.json").read_text())
    assert clean["shift"]["kind"] == "clean" and clean["shift"]["corruption"] == "none"
    assert clean["shift"]["severity"] == 0


def test_models_use_the_backbone_they_claim(pipeline_repo: Path, repro) -> None:
    fingerprint = json.loads((pipeline_repo / "models/backbone/backbone.json").read_text())["fingerprint"]
    lpt = json.loads((pipeline_repo / "results/lpt/clean.json").read_text())["model"]
    rnd = json.loads((pipeline_repo / "results/lpt_random/clean.json").read_text())["model"]
    assert lpt["backbone_fingerprint"] == fingerprint
    assert rnd["backbone_fingerprint"] != fingerprint
    phase2 = json.loads((pipeline_repo / "models/lpt/meta.json").read_text())
    assert phase2["phase"] == "phase2" and phase2["method"] == "lpt"


def test_summary_metrics_and_plots(pipeline_repo: Path, repro) -> None:
    summary = json.loads((pipeline_repo / "metrics/summary.json").read_text())
    assert set(summary) == set(_params(pipeline_repo)["evaluate"]["models"]) | {"pixel_logreg"}
    for entry in summary.values():
        assert {"clean_top1", "shifted_top1", "robustness_gap"} <= set(entry)
        assert entry["robustness_gap"] == pytest.approx(entry["clean_top1"] - entry["shifted_top1"], abs=1e-3)
    curves = pd.read_csv(pipeline_repo / "plots/severity.csv")
    assert list(curves.columns) == ["model", "corruption", "severity", "top1"]
    assert set(curves["severity"]) == {0, 3}
    freq = pd.read_csv(pipeline_repo / "plots/class_frequency.csv")
    assert list(freq.columns) == ["model", "class_id", "train_count", "accuracy"]
    validation = json.loads((pipeline_repo / "metrics/validation/summary.json").read_text())
    assert validation["success"] is True and validation["base_novel_disjoint"] == "passed"


def test_ingest_stage_loaded_every_result(pipeline_repo: Path, repro) -> None:
    receipt = json.loads((pipeline_repo / "metrics/ingest.json").read_text())
    params = _params(pipeline_repo)
    sets = 1 + len(params["shifts"]["corruptions"]) * len(params["shifts"]["severities"])
    assert receipt["results_added"] + receipt["results_present"] == len(params["evaluate"]["models"]) * sets


def test_status_clean_and_second_repro_is_a_no_op(sh, repro) -> None:
    assert "up to date" in sh("dvc", "status").stdout
    out = sh("dvc", "repro").stdout
    assert "Running stage" not in out


def test_evaluation_param_touches_only_evaluate_stages(pipeline_repo: Path, sh, repro) -> None:
    path = pipeline_repo / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["batch_size"] = 7
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        changed = set(json.loads(sh("dvc", "status", "--json").stdout))
    finally:
        path.write_text(original)
    assert changed == {f"evaluate@{m}" for m in params["evaluate"]["models"]}
