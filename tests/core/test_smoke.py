"""End to end on a tiny ViT: `lpt train` (LPT phase 1 -> phase 2) -> artifact -> `lpt evaluate` -> result JSON."""

from __future__ import annotations

import json

import pytest
import yaml

from lpt_core.artifacts import load_artifact
from lpt_core.cli import main
from lpt_core.sections import TrainSection
from lpt_core.config import load_section
from lpt_core.data.store import save_prepared

SECTION = {
    "method": "lpt",
    "seed": 0,
    "backbone": {"name": "vit_tiny_patch16_224", "img_size": 32, "seed": 0,
                 "timm_kwargs": {"patch_size": 8, "embed_dim": 48, "depth": 4, "num_heads": 3}},
    "model": {"prompt": {"prompt_length": 3, "pool_size": 5, "top_k": 2, "group_start": 2}},
    "train": {"epochs": 2, "batch_size": 16, "lr": 0.5, "max_steps_per_epoch": 2, "eval_batch_size": 64,
              "progress": False},
    "phase_train": {"phase2": {"epochs": 1, "select": "last", "val_every": 0}},
}


def test_train_then_evaluate_through_the_cli(tiny_prepared, tmp_path) -> None:
    data = save_prepared(tmp_path / "data", tiny_prepared)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train_lpt": SECTION}))
    art = tmp_path / "models" / "lpt"
    assert main(["train", "--params", str(params), "--section", "train_lpt", "--data", str(data),
                 "--out", str(art), "--device", "cpu"]) == 0
    assert (tmp_path / "models" / "lpt.ckpt" / "phase1" / "checkpoint.pt").is_file()
    model, meta = load_artifact(art)
    assert meta["method"] == "lpt" and meta["phase"] == "phase2"
    assert meta["class_counts"] == [40, 24, 14, 8, 5, 3] and set(meta["fit"]) == {"phase1", "phase2"}
    assert set(model.stored_state_dict()) >= {"shared_prompt.tokens", "group_pool.prompts", "head.weight"}

    out = tmp_path / "results" / "lpt" / "tiny-test.json"
    assert main(["evaluate", "--artifact", str(art), "--data", str(data), "--out", str(out), "--device", "cpu"]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"]["name"] == "lpt" and doc["model"]["method"] == "lpt"
    assert doc["model"]["trainable_params"] > 0 and len(doc["model"]["artifact_sha256"]) == 64
    assert doc["shift"]["id"] == "tiny-lt-test" and doc["shift"]["kind"] == "clean"
    top1 = next(m for m in doc["metrics"] if m["name"] == "top1" and m["group"] == "overall")
    assert top1["n"] == 48 and 0.0 <= top1["value"] <= 1.0


def test_section_shape_and_phase_overrides() -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "params.yaml"
        p.write_text(yaml.safe_dump({"s": SECTION}))
        section = load_section(p, "s", TrainSection)
    assert section.model.prompt.group_start == 2
    assert section.phase_config("phase2").epochs == 1 and section.phase_config("phase1").epochs == 2
    bad = {"s": {**SECTION, "phase_train": {"phase2": {"epochz": 1}}}}
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "params.yaml"
        p.write_text(yaml.safe_dump(bad))
        with pytest.raises(ValueError, match="epochz"):
            load_section(p, "s", TrainSection).phase_config("phase2")
