"""``lpt ingest``: pipeline artifacts, shift sets and result files, idempotently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_fakes import FakeEvaluator, make_artifact, make_batch, result_dict, tree_sha256

from app.db import registry
from app.db import repository as repo
from app.db.session import session_scope
from app.ingest import ingest
from app.jobs import PairSpec, run_job


def _pipeline(tmp_path: Path) -> tuple[Path, Path, Path]:
    models, shifts, results = tmp_path / "models", tmp_path / "shifts", tmp_path / "results"
    arts = {name: make_artifact(models, name, method) for name, method in (("lpt", "lpt"), ("full_ft", "full_ft"))}
    make_batch(shifts, "fog3", corruption="fog", severity=3)
    for name, art in arts.items():
        for shift_id, corruption, sev, kind in (("fog3", "fog", 3, "generated"), ("clean", "none", 0, "clean")):
            spec = PairSpec(name, name, str(art), tree_sha256(art), shift_id, "", kind, "tiny", corruption, sev,
                            100, "h", None, "pipe-1")
            res = result_dict(spec, 0.5)
            res["shift"] = {"id": shift_id, "kind": kind, "dataset": "tiny", "corruption": corruption,
                            "severity": sev, "size": 100, "content_hash": f"hash-{shift_id}", "dvc_hash": None}
            if shift_id == "fog3":
                res["shift"]["content_hash"] = json.loads((shifts / "fog3" / "batch.json").read_text())["content_hash"]
            out = results / name / f"{shift_id}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res))
    return models, shifts, results


def test_ingest_twice_adds_rows_once(engine, tmp_path: Path) -> None:
    models, shifts, results = _pipeline(tmp_path)
    first = ingest(engine, results_dir=results, models_dir=models, shift_dirs=[shifts], hasher=tree_sha256)
    assert (sorted(first.models_added), first.batches_added, first.results_added) == (
        ["full_ft@1", "lpt@1"], ["fog3"], 4)
    with session_scope(engine) as s:
        before = repo.count_rows(s)
        states = {v.label: v.stage for v in registry.list_versions(s)}
    assert states == {"lpt@1": "candidate", "full_ft@1": "baseline"}
    assert (before["shift_batches"], before["eval_runs"], before["job_runs"]) == (2, 4, 1)
    second = ingest(engine, results_dir=results, models_dir=models, shift_dirs=[shifts], hasher=tree_sha256)
    assert (second.models_added, second.batches_added, second.results_added, second.results_present) == ([], [], 0, 4)
    with session_scope(engine) as s:
        assert repo.count_rows(s) == before


def test_job_skips_pairs_the_pipeline_already_evaluated(engine, settings, tmp_path: Path) -> None:
    models, shifts, results = _pipeline(tmp_path)
    ingest(engine, results_dir=results, models_dir=models, shift_dirs=[shifts], hasher=tree_sha256)
    ev = FakeEvaluator()
    summary = run_job(settings.replace(code_version="pipe-1", shifts_dir=str(shifts)), evaluator=ev,
                      hasher=tree_sha256, engine=engine)
    assert (summary.pairs_evaluated, ev.calls) == (0, []), "the clean set has no batch folder; fog3 is done"


def test_ingest_refuses_an_unknown_method_and_a_bad_result(engine, tmp_path: Path) -> None:
    art = make_artifact(tmp_path / "models", "odd", "lpt")
    meta = json.loads((art / "meta.json").read_text())
    meta["method"] = "mystery"
    (art / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown method 'mystery'"):
        ingest(engine, results_dir=None, models_dir=tmp_path / "models", hasher=tree_sha256)
    (tmp_path / "results" / "m").mkdir(parents=True)
    (tmp_path / "results" / "m" / "x.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(ValueError, match="schema 'other'"):
        ingest(engine, results_dir=tmp_path / "results", models_dir=None, hasher=tree_sha256)
    with session_scope(engine) as s:
        assert repo.count_rows(s)["models"] == 0


def test_intermediate_phase_skipped_and_random_backbone_is_a_baseline(tmp_path: Path) -> None:
    """LPT's phase-1 artifact is not a model of its own; a random-backbone model is never a candidate."""
    from app.ingest import is_intermediate, model_values

    def artifact(name: str, phase: str, source: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        meta = {"method": "lpt", "phase": phase, "backbone": {"name": "vit", "fingerprint": "f", "source": source},
                "param_counts": {"trainable": 1, "stored": 1}}
        (d / "meta.json").write_text(json.dumps(meta))
        return d

    phase1 = artifact("lpt_phase1", "phase1", "file:/w.safetensors")
    final = artifact("lpt", "phase2", "file:/w.safetensors")
    rand = artifact("lpt_random", "phase2", "random")
    assert is_intermediate(phase1) and not is_intermediate(final)
    fake_hash = lambda p: "h" + p.name  # noqa: E731
    assert model_values(final, "lpt", fake_hash)["stage"] == "candidate"
    assert model_values(rand, "lpt_random", fake_hash)["stage"] == "baseline"


def test_a_retrained_model_is_ingested_as_its_next_version(engine, tmp_path: Path) -> None:
    """Artifacts are immutable: the same name with another artifact is version 2, and the results
    of each version stay with that version."""
    models, shifts, results = _pipeline(tmp_path)
    ingest(engine, results_dir=results, models_dir=models, shift_dirs=[shifts], hasher=tree_sha256)
    (models / "lpt" / "tensors.bin").write_bytes(b"retrained")
    for res in (results / "lpt").glob("*.json"):
        doc = json.loads(res.read_text())
        doc["model"]["artifact_sha256"] = tree_sha256(models / "lpt")
        doc["metrics"][0]["value"] = 0.75
        res.write_text(json.dumps(doc))
    second = ingest(engine, results_dir=results, models_dir=models, shift_dirs=[shifts], hasher=tree_sha256)
    assert (second.models_added, second.results_added) == (["lpt@2"], 2)
    with session_scope(engine) as s:
        assert [(v.label, v.stage) for v in registry.list_versions(s, current=False) if v.model.name == "lpt"] == [
            ("lpt@1", "retired"), ("lpt@2", "candidate")]
        by_version = {}
        for row in repo.scores(s, groups=("overall",)):
            by_version.setdefault((row.model, row.version), set()).add(row.value)
    assert by_version[("lpt", 1)] == {0.5} and by_version[("lpt", 2)] == {0.75}
