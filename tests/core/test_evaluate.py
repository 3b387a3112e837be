"""Evaluation: batched predict, the result-file schema, shift metadata checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lpt_core.evaluate import RESULT_SCHEMA, EvalConfig, clean_shift_meta, evaluate_arrays, predict
from lpt_core.models import MethodConfig, PromptConfig, build_classifier, create_backbone

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)


@pytest.fixture
def lpt_model():
    backbone = create_backbone("vit_tiny_patch16_224", pretrained=False, seed=0, **TINY)
    cfg = MethodConfig(prompt=PromptConfig(prompt_length=3, pool_size=5, top_k=2, group_start=2))
    model = build_classifier("lpt", backbone, 6, cfg, seed=0)
    model.set_phase("phase2")
    return model


def test_predict_matches_manual_forward_and_batch_size(lpt_model, tiny_prepared) -> None:
    images = tiny_prepared.test.images
    a = predict(lpt_model, images, batch_size=7, device="cpu")
    b = predict(lpt_model, images, batch_size=48, device="cpu")
    assert a.shape == (48, 6) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5)
    x = torch.from_numpy(images[:4]).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(36, 36), mode="bilinear", antialias=True)[:, :, 2:34, 2:34]
    with torch.no_grad():
        ref = lpt_model.eval()((x - 0.5) / 0.5)
    mean, std = lpt_model.data_config()["mean"], lpt_model.data_config()["std"]
    assert tuple(mean) == (0.5, 0.5, 0.5) and tuple(std) == (0.5, 0.5, 0.5)
    np.testing.assert_allclose(a[:4], ref.numpy(), atol=1e-4)
    assert lpt_model.training is False


def test_predict_restores_training_mode(lpt_model, tiny_prepared) -> None:
    lpt_model.train()
    predict(lpt_model, tiny_prepared.test.images[:3], batch_size=2)
    assert lpt_model.training and not lpt_model.backbone.training


def test_result_json_schema(lpt_model, tiny_prepared, tmp_path) -> None:
    test = tiny_prepared.test
    shift = clean_shift_meta(test.images, test.labels, shift_id="tiny-test", dataset="tiny-lt")
    res = evaluate_arrays(
        lpt_model, test.images, test.labels, tiny_prepared.class_counts, cfg=EvalConfig(batch_size=16, device="cpu"),
        model_info={"name": "m"}, shift_meta=shift,
    )
    doc = json.loads(res.write(tmp_path / "r.json").read_text())
    assert doc["schema"] == RESULT_SCHEMA == "lpt-result/2"
    assert set(doc) == {"schema", "model", "shift", "metrics", "per_class", "code_version", "run", "labels"}
    assert doc["labels"] == {"n_images": 48, "n_labeled": 48, "hash": None}
    assert set(doc["run"]) == {"eval_seconds", "images_per_second", "device", "created_at"}
    stable = res.write(tmp_path / "a.json", with_run=False).read_bytes()
    assert "run" not in json.loads(stable) and stable == res.write(tmp_path / "b.json", with_run=False).read_bytes()
    assert doc["shift"] == {**shift, "severity": 0}
    names = {(m["name"], m["group"]) for m in doc["metrics"]}
    for group in ("overall", "medium", "few"):  # train counts 40,24,14,8,5,3: no class has > 100
        assert ("top1", group) in names and ("error", group) in names
    assert ("top1", "many") not in names  # an empty group is left out, never NaN
    assert {("macro_f1", "overall"), ("nll", "overall"), ("ece", "overall"), ("top1", "class:5")} <= names
    assert all(set(m) == {"name", "group", "value", "ci_low", "ci_high", "n"} for m in doc["metrics"])
    assert doc["per_class"]["train_counts"] == [40, 24, 14, 8, 5, 3] and sum(doc["per_class"]["n"]) == 48
    assert doc["run"]["images_per_second"] > 0 and "+src." in doc["code_version"]
    assert res.metric("top1") == pytest.approx(1 - res.metric("error"))


def test_shift_meta_is_checked(lpt_model, tiny_prepared) -> None:
    test = tiny_prepared.test
    with pytest.raises(ValueError, match="lacks"):
        evaluate_arrays(lpt_model, test.images, test.labels, tiny_prepared.class_counts, shift_meta={"id": "x"})
    bad = dict(clean_shift_meta(test.images, test.labels, shift_id="x", dataset="d"), size=3)
    with pytest.raises(ValueError, match="size 3"):
        evaluate_arrays(lpt_model, test.images, test.labels, tiny_prepared.class_counts, shift_meta=bad)
    with pytest.raises(ValueError, match="uint8"):
        predict(lpt_model, test.images.astype(np.float32))


def test_eval_config_checks_and_resolves_the_device() -> None:
    assert EvalConfig().resolved_device() in ("cpu", "cuda")
    assert EvalConfig(device="cpu").resolved_device() == "cpu"
    with pytest.raises(ValueError, match="amp"):
        EvalConfig(amp="fp16")
    with pytest.raises(ValueError, match="batch_size"):
        EvalConfig(batch_size=0)


def test_evaluate_artifact_uses_the_artifacts_shot_group_rule(lpt_model, tiny_prepared, tmp_path) -> None:
    """A model trained under the released protocol counts exactly 20 training images as few."""
    from lpt_core.artifacts import save_artifact
    from lpt_core.evaluate import evaluate_artifact, load_for_evaluation

    counts = [120, 100, 40, 20, 19, 3]
    meta = {"class_names": [f"c{i}" for i in range(6)], "class_counts": counts, "shot_groups": {"few_includes_20": True}}
    save_artifact(tmp_path / "a", lpt_model, meta)
    test = tiny_prepared.test
    cfg = EvalConfig(device="cpu")
    assert load_for_evaluation(tmp_path / "a", cfg).few_includes_20 is True
    released = evaluate_artifact(tmp_path / "a", test.images, test.labels, cfg)
    common = evaluate_artifact(tmp_path / "a", test.images, test.labels, EvalConfig(device="cpu", few_includes_20=False))
    n = {r["group"]: r["n"] for r in released.metrics if r["name"] == "top1"}
    m = {r["group"]: r["n"] for r in common.metrics if r["name"] == "top1"}
    assert n["few"] == 3 * 8 and m["few"] == 2 * 8  # class 3 (20 images) moves from medium to few
    assert released.metric("top1") == common.metric("top1")
