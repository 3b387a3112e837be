"""Import of the LPT authors' released phase-2 checkpoint (lpt_core.released, `lpt import released`).

The synthetic checkpoints here have the released layout (DongSky/LPT
phase2_test/PromptModels_pool_eval/structure.py: the whole VPT_ViT state dict under
``{"state_dict": ...}``, DataParallel's ``module.`` prefix) with random tensors on a tiny timm
ViT. The reference forward below is written from the released ``forward_query`` /
``forward_features`` / ``NormedLinear`` with plain torch ops, independent of lpt_core.models.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lpt_core.artifacts import load_artifact, read_meta
from lpt_core.models import PromptConfig, create_backbone
from lpt_core.released import (
    apply_layernorm_eps,
    import_released,
    load_released_artifact,
    read_checkpoint,
    read_classes,
)

TINY_VIT = "vit_tiny_patch16_224"
TINY_KWARGS = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)
HEADS, PATCH = 3, 8
PROMPT = PromptConfig(prompt_length=3, pool_size=5, top_k=2, group_start=2)
CLASSES = [f"scene_{i}" for i in range(7)]
COUNTS = [120, 90, 40, 21, 20, 19, 5]


def lpt_main(argv: list[str]) -> int:
    """``lpt`` with only the import command (the service's plugins stay out of these tests)."""
    import argparse

    from lpt_core.cli import CORE_MODULES, imports, run

    assert imports in CORE_MODULES
    parser = argparse.ArgumentParser(prog="lpt")
    parser.add_argument("-v", "--verbose", action="store_true")
    imports.register(parser.add_subparsers(dest="command", required=True))
    return run(parser, argv)


def _backbone() -> torch.nn.Module:
    return create_backbone(TINY_VIT, seed=0, **TINY_KWARGS)


def released_state(backbone: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """A released-layout state dict: the backbone's tensors plus random PromptLearner tensors."""
    g = torch.Generator().manual_seed(seed)
    d, depth, length, pool = 48, 4, PROMPT.prompt_length, PROMPT.pool_size
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    state["prompt_learner.Prompt_Tokens"] = torch.randn(depth, length, d, generator=g) * 0.5
    state["prompt_learner.Prompt_Tokens_pool"] = torch.randn(pool, depth - PROMPT.group_start, length, d, generator=g)
    state["prompt_learner.Prompt_Keys"] = torch.randn(pool, d, generator=g)
    state["prompt_learner.head.weight"] = torch.randn(d, len(CLASSES), generator=g)
    return state


def save_released(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """Save as the release did: a DataParallel state dict inside {"config", "state_dict", "val_acc"}."""
    torch.save({"config": {"dataset": "places365", "epochs": 90}, "state_dict": {f"module.{k}": v for k, v in
                state.items()}, "val_acc": np.float64(0.5)}, path)  # a numpy scalar still loads weights-only
    return path


def released_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The released VPT_ViT forward (query pass, top-2 selection, main pass, NormedLinear), eval mode."""
    return _released(sd, x, eps)[0]


def released_selection(sd: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(query, top-2 group indices) of the released forward."""
    return _released(sd, x, 1e-5)[1:]


def _released(sd: dict[str, torch.Tensor], x: torch.Tensor, eps: float) -> tuple[torch.Tensor, ...]:
    prompts, pool = sd["prompt_learner.Prompt_Tokens"], sd["prompt_learner.Prompt_Tokens_pool"]
    depth, length = prompts.shape[0], prompts.shape[1]
    share = depth - pool.shape[1]

    def ln(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.layer_norm(t, (t.shape[-1],), sd[f"{p}.weight"], sd[f"{p}.bias"], eps)

    def lin(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.linear(t, sd[f"{p}.weight"], sd[f"{p}.bias"])

    def block(t: torch.Tensor, i: int) -> torch.Tensor:  # AdaBlock + Attention + Mlp
        b, n, c = t.shape
        qkv = lin(ln(t, f"blocks.{i}.norm1"), f"blocks.{i}.attn.qkv").reshape(b, n, 3, HEADS, c // HEADS)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // HEADS) ** -0.5).softmax(dim=-1)
        t = t + lin((attn @ v).transpose(1, 2).reshape(b, n, c), f"blocks.{i}.attn.proj")
        hidden = F.gelu(lin(ln(t, f"blocks.{i}.norm2"), f"blocks.{i}.mlp.fc1"))
        return t + lin(hidden, f"blocks.{i}.mlp.fc2")

    def embed() -> torch.Tensor:
        t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=PATCH)
        t = t.flatten(2).transpose(1, 2)
        return torch.cat([sd["cls_token"].expand(len(x), -1, -1), t], dim=1) + sd["pos_embed"]

    t = embed()
    for i in range(depth):
        t = block(torch.cat([t, prompts[i].expand(len(x), -1, -1)], dim=1), i)[:, :-length]
    query = ln(t, "norm")[:, 0]
    sim = (F.normalize(sd["prompt_learner.Prompt_Keys"]) @ F.normalize(query).t()).t()
    top = sim.topk(2, 1, True, True).indices
    chosen = pool[top].mean(dim=1)
    t = embed()
    for i in range(depth):
        own = prompts[i].expand(len(x), -1, -1)
        if i >= share:
            t = block(torch.cat([t, own, chosen[:, i - share]], dim=1), i)[:, : -2 * length]
        else:
            t = block(torch.cat([t, own], dim=1), i)[:, :-length]
    feature = ln(t, "norm")[:, 0]
    return F.normalize(feature, dim=1).mm(F.normalize(sd["prompt_learner.head.weight"], dim=0)), query, top


@pytest.fixture
def classes_json(tmp_path: Path) -> Path:
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"class_names": CLASSES, "class_counts": COUNTS}))
    return path


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def test_imported_logits_match_the_released_forward(tmp_path: Path, classes_json: Path, images: torch.Tensor) -> None:
    backbone = _backbone()
    state = released_state(backbone)
    # keys = the released queries of five images, so the images select different groups
    state["prompt_learner.Prompt_Keys"] = released_selection(state, images[:5])[0]
    ckpt = save_released(tmp_path / "LPT_places.pth", state)
    out = import_released(ckpt, tmp_path / "art", backbone=TINY_VIT, classes=classes_json, prompt=PROMPT,
                          backbone_model=backbone)  # fmt: skip
    model, meta = load_released_artifact(out)  # backbone rebuilt from the recorded seed
    with torch.no_grad():
        ours, ref = model(images), released_forward(state, images)
        ours_naive = model.forward_naive(images)
        top = released_selection(state, images)[1]
    assert len({tuple(t) for t in top.tolist()}) >= 4 and top[:5, 0].tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(model.select(images).indices, top)
    assert (ours - ref).abs().max() < 1e-5 and (ours_naive - ref).abs().max() < 1e-5
    assert meta["method"] == "lpt" and meta["phase"] == "phase2" and meta["layernorm_eps"] == 1e-5
    # every load path (the pipeline's and the nightly job's too) applies the recorded eps ...
    plain, _ = load_artifact(out)
    with torch.no_grad():
        assert (plain(images) - ref).abs().max() < 1e-5
        # ... and it matters: timm's own 1e-6 gives measurably different logits here
        apply_layernorm_eps(plain.backbone, 1e-6)
        assert (plain(images) - ref).abs().max() > 1e-4
        assert (plain(images) - released_forward(state, images, eps=1e-6)).abs().max() < 1e-5


def test_provenance_classes_and_group_rule_in_meta(tmp_path: Path, classes_json: Path) -> None:
    backbone = _backbone()
    ckpt = save_released(tmp_path / "ckpt.pth", released_state(backbone))
    out = import_released(ckpt, tmp_path / "art", backbone=TINY_VIT, classes=classes_json, prompt=PROMPT,
                          backbone_model=backbone)  # fmt: skip
    meta = read_meta(out)
    prov = meta["provenance"]
    assert prov["kind"] == "released-checkpoint" and prov["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert prov["file"] == str(ckpt) and prov["module_prefix"] and prov["backbone_check"] == "equal"
    assert prov["saved_keys"] == ["config", "state_dict", "val_acc"] and prov["training_config"]["epochs"] == 90
    assert meta["class_names"] == CLASSES and meta["class_counts"] == COUNTS
    assert meta["group_rule"] == {"few_includes_20": True, "pooling": "pooled",
                                  "counts": "full long-tailed training counts"}  # fmt: skip


def _refused(tmp_path: Path, classes_json: Path, state: dict[str, torch.Tensor], match: str) -> None:
    ckpt = save_released(tmp_path / "bad.pth", state)
    with pytest.raises(ValueError, match=match):
        import_released(ckpt, tmp_path / "art", backbone=TINY_VIT, classes=classes_json, prompt=PROMPT,
                        backbone_model=_backbone())  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth", "classes.json"]  # nothing written


def test_missing_key_is_refused(tmp_path: Path, classes_json: Path) -> None:
    state = released_state(_backbone())
    del state["prompt_learner.Prompt_Keys"]
    _refused(tmp_path, classes_json, state, r"missing keys \[prompt_learner\.Prompt_Keys\], unknown keys \[\]")


def test_unknown_key_is_refused(tmp_path: Path, classes_json: Path) -> None:
    state = released_state(_backbone()) | {"prompt_learner.adapter.weight": torch.zeros(3)}
    _refused(tmp_path, classes_json, state, r"missing keys \[\], unknown keys \[prompt_learner\.adapter\.weight\]")


def test_wrong_shape_is_refused(tmp_path: Path, classes_json: Path) -> None:
    state = released_state(_backbone())
    state["prompt_learner.Prompt_Tokens_pool"] = state["prompt_learner.Prompt_Tokens_pool"].transpose(1, 2)
    shapes = r"prompt_learner\.Prompt_Tokens_pool \(5, 3, 2, 48\) \(expected \(5, 2, 3, 48\)\)"
    _refused(tmp_path, classes_json, state, shapes)


def test_a_head_for_other_classes_and_a_different_backbone_are_refused(tmp_path: Path, classes_json: Path) -> None:
    state = released_state(_backbone())
    state["prompt_learner.head.weight"] = torch.randn(48, 9)
    _refused(tmp_path, classes_json, state, r"prompt_learner\.head\.weight \(48, 9\) \(expected \(48, 7\)\)")
    state = released_state(_backbone())
    state["blocks.1.attn.qkv.weight"] = state["blocks.1.attn.qkv.weight"] + 1e-3
    _refused(tmp_path, classes_json, state, r"differs from 'vit_tiny_patch16_224' \(random\) in 1 of .*blocks\.1\.attn")


def test_checkpoint_needing_a_full_unpickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # noqa: ANN204 -- what a crafted checkpoint does
            return os.system, (f"touch {marker}",)

    torch.save({"state_dict": {"x": torch.zeros(1)}, "args": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=r"weights_only=True"):
        read_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


def test_classes_from_split_list_and_prepared_dataset(tmp_path: Path) -> None:
    lines = [f"train/{name}/{i}.jpg {c}" for c, (name, n) in enumerate([("airfield", 3), ("bar/indoor", 1)])
             for i in range(n)]  # fmt: skip
    (tmp_path / "Places_LT_train.txt").write_text("\n".join(lines) + "\n")
    info = read_classes(tmp_path / "Places_LT_train.txt")
    assert info.names == ["airfield", "bar/indoor"] and info.counts == [3, 1]
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "dataset.json").write_text(json.dumps({"class_names": ["a", "b"], "train_class_counts": [9, 1],
                                                        "full_train_class_counts": [10, 2], "protocol": "heldout"}))
    assert read_classes(prepared).counts == [10, 2]  # the full counts, not those after the hold-out


def test_cli_imports_with_the_checkpoints_own_backbone(tmp_path: Path, images: torch.Tensor, capsys) -> None:
    state = released_state(_backbone())
    ckpt = save_released(tmp_path / "LPT_places.pth", state)
    lines = [f"train/{name}/{i}.jpg {c}" for c, name in enumerate(CLASSES) for i in range(COUNTS[c])]
    (tmp_path / "Places_LT_train.txt").write_text("\n".join(lines) + "\n")
    args = ["import", "released", str(ckpt), "--backbone", TINY_VIT, "--timm-kwargs", json.dumps(TINY_KWARGS),
            "--classes", str(tmp_path / "Places_LT_train.txt"), "--extract-backbone", str(tmp_path / "bb.safetensors")]
    # the default (released) prompt sizes do not fit the tiny checkpoint: one clear line, nothing written
    assert lpt_main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "wrong shape" in err and "Prompt_Tokens_pool" in err
    assert not (tmp_path / "bb.safetensors").exists() and not (tmp_path / "a").exists()
    prompt = json.dumps({"prompt_length": 3, "pool_size": 5, "top_k": 2, "group_start": 2})
    assert lpt_main([*args, "--prompt-config", prompt, "--out", str(tmp_path / "art")]) == 0
    assert "backbone equal" in capsys.readouterr().out
    model, meta = load_released_artifact(tmp_path / "art")
    assert meta["backbone"]["source"].startswith("file:") and meta["backbone"]["source"].endswith("bb.safetensors")
    assert meta["class_counts"] == COUNTS and meta["class_names"] == CLASSES
    with torch.no_grad():
        assert (model(images) - released_forward(state, images)).abs().max() < 1e-5


def test_cli_evaluate_reports_released_groups(tmp_path: Path, capsys) -> None:
    from lpt_core.data.prepare import PrepareConfig, build_prepared
    from lpt_core.data.sources import RawDataset
    from lpt_core.data.store import ArraySplit, save_prepared
    from lpt_core.data.transforms import BatchPreprocessor

    rng = np.random.default_rng(0)
    tr_y = np.repeat(np.arange(7), COUNTS)
    te_y = np.repeat(np.arange(7), [3, 3, 3, 3, 3, 2, 1])  # unbalanced: pooled != class mean
    split = lambda y: ArraySplit(rng.integers(0, 256, (len(y), 32, 32, 3), dtype=np.uint8), y)  # noqa: E731
    raw = RawDataset(split(tr_y), split(te_y), CLASSES, "synthetic")
    data = build_prepared(raw, PrepareConfig(source="synthetic", protocol="released"))
    save_prepared(tmp_path / "prepared", data)
    state = released_state(_backbone())
    ckpt = save_released(tmp_path / "LPT_places.pth", state)
    prompt = json.dumps({"prompt_length": 3, "pool_size": 5, "top_k": 2, "group_start": 2})
    assert lpt_main(["import", "released", str(ckpt), "--backbone", TINY_VIT, "--timm-kwargs", json.dumps(TINY_KWARGS),
                     "--extract-backbone", str(tmp_path / "bb.safetensors"), "--prompt-config", prompt,
                     "--classes", str(tmp_path / "prepared"), "--out", str(tmp_path / "art"),
                     "--evaluate", str(tmp_path / "prepared")]) == 0  # fmt: skip
    printed = {line.split()[0]: float(line.split()[1].rstrip("%")) for line in capsys.readouterr().out.splitlines()
               if "(README" in line}  # fmt: skip
    model, _ = load_released_artifact(tmp_path / "art")
    x = BatchPreprocessor.from_data_config(model.data_config(), train=False)(torch.from_numpy(data.test.images))
    with torch.no_grad():
        hit = (released_forward(state, x).argmax(1).numpy() == te_y)
    counts = np.asarray(COUNTS)[te_y]  # pooled groups as eval_phase2.py: many > 100, 20 < medium <= 100, few <= 20
    for group, members in (("overall", counts > 0), ("many", counts > 100), ("medium", (counts > 20) & (counts <= 100)),
                           ("few", counts <= 20)):  # fmt: skip
        assert printed[group] == pytest.approx(100 * hit[members].mean(), abs=1e-4)
    class_mean = 100 * np.mean([hit[te_y == c].mean() for c in (4, 5, 6)])
    assert printed["few"] != pytest.approx(class_mean)  # pooled, not the mean of per-class accuracies
