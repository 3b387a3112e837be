"""A shrunk run of the real dvc.yaml in a throw-away repository (see conftest.py): the outputs, and
what reruns when a parameter or the inference code changes (exactly the affected stages, through
ingest, with no manual step)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

RESULT_KEYS = {"schema", "model", "shift", "metrics", "per_class", "code_version", "labels"}  # no run details
MODEL_KEYS = {"name", "method", "artifact", "artifact_sha256", "backbone", "backbone_fingerprint",
              "trainable_params", "stored_params", "data_version"}  # fmt: skip
SHIFT_KEYS = {"id", "kind", "dataset", "corruption", "severity", "size", "content_hash", "dvc_hash"}


def _params(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text())


def _stale(sh) -> set[str]:
    return set(json.loads(sh("dvc", "status", "--json").stdout))


def test_repro_writes_every_result_in_schema(pipeline_repo: Path, repro) -> None:
    params = _params(pipeline_repo)
    models = [("results", m) for m in params["models"]] + [("metrics/baselines", "pixel_logreg")]
    shifts = ["clean"] + [f"{c}-s{s}" for c in params["shifts"]["corruptions"] for s in params["shifts"]["severities"]]
    for folder, model in models:
        for shift in shifts:
            data = json.loads((pipeline_repo / folder / model / f"{shift}.json").read_text())
            assert set(data) - {"monitoring"} == RESULT_KEYS and data["schema"] == "lpt-result/2"
            # every trained model carries a calibration (its validation split): label-free estimates too
            assert ("monitoring" in data) == (folder == "results"), (model, shift)
            assert set(data["model"]) == MODEL_KEYS and data["model"]["name"] == model
            assert set(data["shift"]) == SHIFT_KEYS and data["shift"]["id"] == shift
            assert data["shift"]["size"] == params["shifts"]["size"]
            top1 = [m for m in data["metrics"] if m["name"] == "top1" and m["group"] == "overall"]
            assert len(top1) == 1 and 0.0 <= top1[0]["value"] <= 1.0
    clean = json.loads((pipeline_repo / "results" / "lpt" / "clean.json").read_text())
    assert clean["shift"]["kind"] == "clean" and clean["shift"]["corruption"] == "none"
    assert clean["shift"]["severity"] == 0
    assert "created_at" not in json.loads((pipeline_repo / "data/shifts/eval/clean/batch.json").read_text())


def test_models_use_the_backbone_they_claim(pipeline_repo: Path, repro) -> None:
    fingerprint = json.loads((pipeline_repo / "models/backbone/backbone.json").read_text())["fingerprint"]
    lpt = json.loads((pipeline_repo / "results/lpt/clean.json").read_text())["model"]
    rnd = json.loads((pipeline_repo / "results/lpt_random/clean.json").read_text())["model"]
    assert lpt["backbone_fingerprint"] == fingerprint
    assert rnd["backbone_fingerprint"] != fingerprint
    meta = json.loads((pipeline_repo / "models/lpt/meta.json").read_text())
    assert meta["phase"] == "phase2" and meta["method"] == "lpt" and set(meta["fit"]) == {"phase1", "phase2"}
    assert meta["backbone"]["source"] == "file:models/backbone/model.safetensors"  # not this clone's absolute path
    assert not (pipeline_repo / "models" / "lpt_phase1").exists()


def test_summary_metrics_and_plots(pipeline_repo: Path, sh, repro) -> None:
    from lpt_core.pipeline.summarize import METRIC_COLUMNS

    params = _params(pipeline_repo)
    files = sorted(p.stem for p in (pipeline_repo / "metrics/models").glob("*.json"))
    assert files == sorted([*params["models"], "pixel_logreg"])
    for stem in files:
        entry = json.loads((pipeline_repo / "metrics/models" / f"{stem}.json").read_text())
        assert set(entry) <= set(METRIC_COLUMNS) and {"clean_top1", "shifted_top1", "robustness_gap"} <= set(entry)
        assert entry["robustness_gap"] == pytest.approx(entry["clean_top1"] - entry["shifted_top1"], abs=1e-3)
    shown = sh("dvc", "metrics", "show").stdout.splitlines()
    assert len(shown) == 1 + len(files)  # a header, then one row per model
    assert all(len(line.split()) <= 1 + len(METRIC_COLUMNS) for line in shown)
    table = pd.read_csv(pipeline_repo / "plots/summary.csv")
    assert sorted(table["model"]) == files and "clean_top1_few" in table.columns
    curves = pd.read_csv(pipeline_repo / "plots/severity.csv")
    assert list(curves.columns) == ["model", "corruption", "severity", "top1"]
    assert set(curves["severity"]) == {0, 3}
    validation = json.loads((pipeline_repo / "metrics/validation/summary.json").read_text())
    assert validation["success"] is True and validation["base_novel_disjoint"] == "passed"


def test_ingest_stage_loaded_every_result(pipeline_repo: Path, repro) -> None:
    receipt = json.loads((pipeline_repo / "metrics/ingest.json").read_text())
    params = _params(pipeline_repo)
    sets = 1 + len(params["shifts"]["corruptions"]) * len(params["shifts"]["severities"])
    assert receipt["results_added"] + receipt["results_present"] == len(params["models"]) * sets
    assert sorted(receipt["models_added"]) == sorted(f"{m}@1" for m in params["models"])


def test_monitoring_measure_on_the_pipeline_models(pipeline_repo: Path, sh, repro, tmp_path: Path) -> None:
    report = tmp_path / "MON.md"
    report.write_text("# Monitoring\n\n<!-- monitoring:start -->\nold\n<!-- monitoring:end -->\n", encoding="utf-8")
    sh("lpt", "monitoring", "measure", "--methods", "lpt,linear", "--clean-batches", "2", "--per-class", "3", "--reference-per-class", "2",
       "--out", str(report), "--json", str(tmp_path / "mon.json"))
    doc = json.loads((tmp_path / "mon.json").read_text())
    errors = pd.DataFrame(doc["errors"])
    assert set(errors["method"]) == {"lpt", "linear"}
    assert set(errors["reference"]) == {"validation split, weighted (the service's)", "validation split, unweighted",
                                        "held-out sample, 2 per class"}
    assert (errors["abs_error"] - (errors["estimate"] - errors["measured"]).abs()).abs().max() < 1e-9
    alarms = pd.DataFrame(doc["alarms"])
    assert (alarms[alarms["kind"] == "clean"].groupby(["method", "reference"]).size() == 2).all()
    assert set(doc["settings"]["effective_reference_size"]) == {"lpt", "linear"}
    text = report.read_text()
    assert "old" not in text and "What the reference does" in text and "lpt monitoring measure" in text


def test_status_clean_and_second_repro_is_a_no_op(sh, repro) -> None:
    assert "up to date" in sh("dvc", "status").stdout
    out = sh("dvc", "repro").stdout
    assert "Running stage" not in out


def test_lpt_train_by_hand_gives_the_stage_artifact(pipeline_repo: Path, sh, repro, tmp_path: Path) -> None:
    sh("lpt", "train", "--params", "params.yaml", "--model", "linear", "--data", "data/prepared/target",
       "--backbone", "models/backbone", "--out", str(tmp_path / "linear"), "--checkpoints", str(tmp_path / "ckpt"))
    for name in ("tensors.safetensors", "meta.json", "SHA256SUMS"):
        assert (tmp_path / "linear" / name).read_bytes() == (pipeline_repo / "models/linear" / name).read_bytes()


def test_evaluation_param_touches_only_evaluate_stages(pipeline_repo: Path, sh, repro) -> None:
    path = pipeline_repo / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["batch_size"] = 7
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        changed = _stale(sh)
    finally:
        path.write_text(original)
    assert changed == {f"evaluate@{m}" for m in params["models"]}


def test_inference_code_change_makes_the_evaluate_stages_stale(pipeline_repo: Path, sh, repro) -> None:
    path = pipeline_repo / "lpt_core/models/heads.py"
    original = path.read_text()
    path.write_text(original + "\n# edited\n")
    try:
        changed = _stale(sh)
    finally:
        path.write_text(original)
    models = _params(pipeline_repo)["models"]
    assert {f"evaluate@{m}" for m in models} <= changed and {f"train@{m}" for m in models} <= changed
    assert "shifts" not in changed and "prepare" not in changed


def test_a_training_param_reruns_exactly_its_stages_and_adds_a_version(pipeline_repo: Path, sh, repro) -> None:
    """Edit one model's recipe, `dvc repro` with no manual step: exactly its stages rerun (its old
    checkpoint is another run's and is not resumed), ingest adds version 2 of it, and `dvc metrics
    diff` names the change. Restored, the retrained artifact is version 1's bytes again."""
    from sqlalchemy import create_engine, text

    sh("git", "add", "-A")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "after the first repro")
    path = pipeline_repo / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    params["models"]["full_ft"]["train"]["lr_per_256"] = 0.05
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert _stale(sh) == {"train@full_ft"}  # DVC lists a stage once its own inputs changed
        proc = sh("dvc", "repro", timeout=600)
        assert "belongs to another run" in proc.stdout + proc.stderr  # the old checkpoint is not resumed
        ran = {line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")}
        assert ran == {"train@full_ft", "evaluate@full_ft", "summarize", "ingest"}
        diff = sh("dvc", "metrics", "diff", "--json").stdout
        assert "metrics/models/full_ft.json" in json.loads(diff)
    finally:
        path.write_text(original)
    engine = create_engine(f"sqlite:///{pipeline_repo / 'lpt_store.db'}")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT m.name, v.version, v.stage FROM model_versions v JOIN models m "
                                 "ON m.id = v.model_id WHERE m.name = 'full_ft' ORDER BY v.version")).all()
    assert [tuple(r) for r in rows] == [("full_ft", 1, "retired"), ("full_ft", 2, "baseline")]
    sh("dvc", "repro", timeout=600)
    receipt = json.loads((pipeline_repo / "metrics/ingest.json").read_text())
    assert receipt["models_added"] == []  # deterministic training: the same bytes as version 1 ...
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT v.version, v.stage FROM model_versions v JOIN models m "
                                 "ON m.id = v.model_id WHERE m.name = 'full_ft' ORDER BY v.version")).all()
    assert [tuple(r) for r in rows] == [(1, "baseline"), (2, "retired")]  # ... so version 1 is current again
    assert "up to date" in sh("dvc", "status").stdout


def test_dvc_exp_run_with_a_profiles_overrides(pipeline_repo: Path, sh, repro) -> None:
    """A profile's overrides, printed by `lpt pipeline use --print-overrides`, run as a DVC experiment."""
    import shlex

    (pipeline_repo / "profiles" / "tiny_eval.yaml").write_text("# Test profile: another evaluation batch size\n"
                                                               "evaluate:\n  batch_size: 5\n")
    printed = sh("lpt", "pipeline", "use", "tiny_eval", "--print-overrides").stdout.strip().splitlines()[-1]
    assert printed == "dvc exp run -S evaluate.batch_size=5"
    sh(*shlex.split(printed.replace("dvc exp run", "dvc exp run --temp -n tiny-eval")), timeout=900)
    shown = json.loads(sh("dvc", "exp", "show", "--json").stdout)
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    runs = [r for e in exps for r in e.get("revs", [])]
    assert any(r.get("name") == "tiny-eval" for r in runs), shown
    assert yaml.safe_load((pipeline_repo / "params.yaml").read_text())["evaluate"]["batch_size"] != 5  # untouched
