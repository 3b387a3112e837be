"""Unit tests of the pipeline's own logic: backbone files, shift plan, summaries, leakage check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lpt_core.pipeline.shifts import ShiftsConfig, shift_plan
from lpt_core.pipeline.summarize import class_frequency, severity_curves, summary, top1_table
from lpt_core.pipeline.validate import check_disjoint_classes
from lpt_core.pretrain import (
    PretrainConfig,
    as_rgb,
    load_backbone,
    load_base_split,
    preprocessors,
    save_random_backbone,
)

TINY = PretrainConfig(depth=2, embed_dim=48, num_heads=3, patch_size=8)


def test_random_backbone_round_trips_through_timm(tmp_path: Path) -> None:
    import timm

    meta = save_random_backbone(TINY, tmp_path / "bb", seed=3)
    model, loaded = load_backbone(tmp_path / "bb")
    assert loaded["fingerprint"] == meta["fingerprint"]
    assert meta["timm_kwargs"] == {"img_size": 32, "patch_size": 8, "embed_dim": 48, "depth": 2, "num_heads": 3,
                                   "num_classes": 0}  # fmt: skip
    plain = timm.create_model(TINY.model_name, pretrained=True, num_classes=0,
                              pretrained_cfg_overlay={"file": str(tmp_path / "bb" / "model.safetensors")},
                              **{k: v for k, v in meta["timm_kwargs"].items() if k != "num_classes"})  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(plain.eval()(x), model(x))


def test_edited_backbone_weights_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    save_random_backbone(TINY, tmp_path / "bb")
    path = tmp_path / "bb" / "model.safetensors"
    state = load_file(str(path))
    state["cls_token"] = state["cls_token"] + 1e-3
    save_file(state, str(path))
    with pytest.raises(ValueError, match="fingerprint"):
        load_backbone(tmp_path / "bb")


def test_pretraining_augmentation_is_the_trainers_seeded_and_normalised() -> None:
    from lpt_core.data.transforms import BatchPreprocessor

    x = as_rgb(torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8))
    assert x.shape == (4, 28, 28, 3)
    cfg = PretrainConfig(crop_scale=(0.6, 1.0))
    a = preprocessors(cfg, torch.Generator().manual_seed(0))[0](x)
    b = preprocessors(cfg, torch.Generator().manual_seed(0))[0](x)
    c = preprocessors(cfg, torch.Generator().manual_seed(1))[0](x)
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1.0 and a.max() <= 1.0
    train, evaluation = preprocessors(cfg, torch.Generator())
    assert isinstance(train, BatchPreprocessor) and train.scale == (0.6, 1.0) and not evaluation.train
    boxes = train.sample(2000, 28, 28).boxes
    share = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (28 * 28)
    assert share.min() >= 0.5  # scale (0.6, 1) up to rounding, never the default 0.08


def test_base_split_refuses_unknown_class(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Sweater"):
        load_base_split(tmp_path, "train", ("Sweater",))


def test_shift_plan_orders_clean_first_and_refuses_bad_values() -> None:
    plan = shift_plan(ShiftsConfig(corruptions=("contrast",), severities=(1, 5)))
    assert plan == [("clean", "none", 0), ("contrast-s1", "contrast", 1), ("contrast-s5", "contrast", 5)]
    with pytest.raises(KeyError, match="unknown corruption"):
        shift_plan(ShiftsConfig(corruptions=("contrastt",)))
    with pytest.raises(ValueError, match="1..5"):
        shift_plan(ShiftsConfig(corruptions=("contrast",), severities=(6,)))


def test_disjoint_class_check() -> None:
    check_disjoint_classes(["Dress", "Coat"], ["Bag", "Trouser"], "base")
    with pytest.raises(ValueError, match=r"\['Coat'\]"):
        check_disjoint_classes(["Dress", "Coat"], ["Coat"], "base")


def _result(model: str, corruption: str, severity: int, top1: float, many: float) -> dict:
    return {
        "model": {"name": model, "method": "lpt"},
        "shift": {"id": "clean" if corruption == "none" else f"{corruption}-s{severity}",
                  "corruption": corruption, "severity": severity},
        "metrics": [{"name": "top1", "group": "overall", "value": top1},
                    {"name": "top1", "group": "many", "value": many},
                    {"name": "macro_f1", "group": "overall", "value": 0.0}],
        "per_class": {"class_ids": [0, 1], "train_counts": [500, 5], "accuracy": [many, 0.25]},
    }  # fmt: skip


def test_summary_means_over_corrupted_sets_only() -> None:
    results = [_result("m", "none", 0, 0.9, 1.0), _result("m", "fog", 1, 0.7, 0.8), _result("m", "fog", 5, 0.5, 0.6)]
    table = top1_table(results)
    out = summary(table)["m"]
    assert out["clean_top1"] == 0.9 and out["shifted_top1"] == pytest.approx(0.6)
    assert out["clean_top1_many"] == 1.0 and out["shifted_top1_many"] == pytest.approx(0.7)
    assert out["robustness_gap"] == pytest.approx(0.3)
    assert "clean_top1_few" not in out
    curves = severity_curves(table)
    assert curves[["severity", "top1"]].values.tolist() == [[0, 0.9], [1, 0.7], [5, 0.5]]
    freq = class_frequency(results)
    assert freq["train_count"].tolist() == [500, 5] and freq["accuracy"].tolist() == [1.0, 0.25]
    assert isinstance(freq, pd.DataFrame) and np.isfinite(freq["accuracy"]).all()
    json.dumps(out)
