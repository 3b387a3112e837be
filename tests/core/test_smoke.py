"""End to end on a tiny ViT: `lpt train` (LPT phase 1 -> phase 2) -> artifact -> `lpt evaluate` -> result JSON."""

from __future__ import annotations

import json

import pytest
import yaml

from lpt_core.artifacts import load_artifact
from lpt_core.cli import main
from lpt_core.data.store import save_prepared
from lpt_core.sections import merge, resolve_model

PARAMS = {
    "recipe": {
        "seed": 0,
        "model": {"prompt": {"prompt_length": 3, "pool_size": 5, "top_k": 2, "group_start": 2}},
        "train": {"epochs": 2, "batch_size": 16, "lr_per_256": 0.5, "max_steps_per_epoch": 2, "eval_batch_size": 64,
                  "progress": False},
        "phases": {"phase2": {"epochs": 1, "select": "last", "val_every": 0}},
    },
    "models": {"lpt": {"method": "lpt"}, "ft": {"method": "full_ft", "train": {"lr_per_256": 0.05}}},
}


@pytest.fixture
def backbone_dir(tmp_path):
    from lpt_core.pretrain import PretrainConfig, save_random_backbone

    cfg = PretrainConfig(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)
    save_random_backbone(cfg, tmp_path / "backbone")
    return tmp_path / "backbone"


def test_train_then_evaluate_through_the_cli(tiny_prepared, tmp_path, backbone_dir) -> None:
    data = save_prepared(tmp_path / "data", tiny_prepared)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    art = tmp_path / "models" / "lpt"
    ckpt = tmp_path / "runs" / "lpt"
    assert main(["train", "--params", str(params), "--model", "lpt", "--data", str(data), "--backbone",
                 str(backbone_dir), "--out", str(art), "--checkpoints", str(ckpt), "--device", "cpu"]) == 0
    assert sorted(p.name.split("-")[0] for p in ckpt.iterdir() if p.is_dir()) == ["phase1", "phase2"]
    assert json.loads((ckpt / "fit.json").read_text())["phase1"]["seconds"] >= 0
    model, meta = load_artifact(art)
    assert meta["method"] == "lpt" and meta["phase"] == "phase2" and "created_at" not in meta
    assert meta["class_counts"] == [40, 24, 14, 8, 5, 3] and set(meta["fit"]) == {"phase1", "phase2"}
    assert meta["hyper_parameters"]["train"]["lr_per_256"] == 0.5 and meta["logit_scale"] == 20.0
    assert set(model.stored_state_dict()) >= {"shared_prompt.tokens", "group_pool.prompts", "head.weight"}

    out = tmp_path / "results" / "lpt" / "tiny-test.json"
    assert main(["evaluate", "--artifact", str(art), "--data", str(data), "--out", str(out), "--device", "cpu"]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"]["name"] == "lpt" and doc["model"]["method"] == "lpt"
    assert doc["model"]["trainable_params"] > 0 and len(doc["model"]["artifact_sha256"]) == 64
    assert doc["shift"]["id"] == "tiny-lt-test" and doc["shift"]["kind"] == "clean"
    top1 = next(m for m in doc["metrics"] if m["name"] == "top1" and m["group"] == "overall")
    assert top1["n"] == 48 and 0.0 <= top1["value"] <= 1.0


def test_a_rerun_gives_the_same_artifact_bytes(tiny_prepared, tmp_path, backbone_dir) -> None:
    """No times or devices in the artifact: the same inputs give the same bytes (DVC hashes them)."""
    data = save_prepared(tmp_path / "data", tiny_prepared)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    arts = []
    for run in ("a", "b"):
        art = tmp_path / run / "ft"
        assert main(["train", "--params", str(params), "--model", "ft", "--data", str(data), "--backbone",
                     str(backbone_dir), "--out", str(art), "--checkpoints", str(tmp_path / run / "ckpt"),
                     "--device", "cpu"]) == 0
        arts.append({p.relative_to(art).as_posix(): p.read_bytes() for p in art.rglob("*") if p.is_file()})
    assert "calibration/calibration.safetensors" in arts[0] and arts[0] == arts[1]


def test_recipe_merge_and_phase_overrides() -> None:
    spec = resolve_model(PARAMS, "lpt")
    assert spec.model.prompt.group_start == 2
    assert spec.phase_config("phase2").epochs == 1 and spec.phase_config("phase1").epochs == 2
    ft = resolve_model(PARAMS, "ft")
    assert ft.train.lr_per_256 == 0.05 and ft.train.batch_size == 16  # the entry overrides one key only
    assert merge({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}}
    with pytest.raises(KeyError, match="unknown model 'vit'; params.yaml models: lpt, ft"):
        resolve_model(PARAMS, "vit")
    bad = merge(PARAMS, {"recipe": {"phases": {"phase2": {"epochz": 1}}}})
    with pytest.raises(ValueError, match="epochz"):
        resolve_model(bad, "lpt").phase_config("phase2")
    with pytest.raises(ValueError, match="unknown key.*'lr'"):
        resolve_model(merge(PARAMS, {"recipe": {"train": {"lr": 0.1}}}), "lpt")
