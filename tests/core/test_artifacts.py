"""Artifacts: round trip, refusal of a wrong backbone, of truncated and of edited files."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from lpt_core.artifacts import ArtifactError, artifact_sha256, load_artifact, save_artifact
from lpt_core.models import build_classifier, create_backbone

META = {"class_names": ["a", "b", "c", "d", "e"], "class_counts": [50, 20, 9, 4, 2],
        "hyper_parameters": {"lr": 0.02}, "data_version": "md5:abc"}


def _trained(method, backbone, cfg, images):
    """A model whose stored tensors differ from a fresh build (a few SGD steps)."""
    model = build_classifier(method, backbone, 5, cfg, seed=0)
    for phase in model.phases:
        model.set_phase(phase)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        out = model.forward_train(images)
        loss = -out.logits[:, 0].mean() + (out.match_loss if out.match_loss is not None else 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("method", ["lpt", "vpt", "linear", "full_ft"])
def test_round_trip_predictions_equal(tmp_path, tiny_backbone, tiny_method_cfg, tiny_images, method):
    backbone = copy.deepcopy(tiny_backbone) if method == "full_ft" else tiny_backbone
    model = _trained(method, backbone, tiny_method_cfg, tiny_images)
    art = save_artifact(tmp_path / "art", model, META)
    assert sorted(p.name for p in art.iterdir()) == ["SHA256SUMS", "meta.json", "tensors.safetensors"]
    loaded, meta = load_artifact(art)  # backbone rebuilt from meta (seeded random init)
    with torch.no_grad():
        assert torch.equal(loaded(tiny_images), model(tiny_images))
    assert meta["method"] == method and meta["class_counts"] == META["class_counts"]
    assert meta["param_counts"]["stored"] == sum(v.numel() for v in model.stored_state_dict().values())
    assert loaded.phase == model.phase and not loaded.training
    assert len(artifact_sha256(art)) == 64


def test_lpt_meta_counts_both_phases(tmp_path, tiny_backbone, tiny_method_cfg, tiny_images):
    model = _trained("lpt", tiny_backbone, tiny_method_cfg, tiny_images)
    meta = json.loads((save_artifact(tmp_path / "a", model, META) / "meta.json").read_text())
    shared = model.shared_prompt.tokens.numel()
    pool = model.group_pool.prompts.numel() + model.group_pool.keys.numel()
    head = model.head.weight.numel()
    assert meta["param_counts"]["per_phase"] == {"phase1": shared + head, "phase2": pool + head}
    assert meta["param_counts"]["trainable"] == shared + pool + head == meta["param_counts"]["stored"]
    assert meta["backbone"]["name"] == "vit_tiny_patch16_224" and meta["backbone"]["timm_kwargs"]["depth"] == 4
    assert set(meta["versions"]) >= {"torch", "timm", "lpt_core"}


def test_wrong_backbone_is_refused(tmp_path, tiny_backbone, tiny_method_cfg, tiny_images):
    art = save_artifact(tmp_path / "art", _trained("lpt", tiny_backbone, tiny_method_cfg, tiny_images), META)
    other = create_backbone("vit_tiny_patch16_224", seed=1, img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)
    with pytest.raises(ArtifactError, match="fingerprint mismatch.*trained on [0-9a-f]{64}.*has [0-9a-f]{64}"):
        load_artifact(art, backbone=other)
    model, _ = load_artifact(art, backbone=tiny_backbone)
    assert model.backbone is tiny_backbone


def test_truncated_file_is_refused(tmp_path, tiny_backbone, tiny_method_cfg, tiny_images):
    art = save_artifact(tmp_path / "art", _trained("vpt", tiny_backbone, tiny_method_cfg, tiny_images), META)
    data = (art / "tensors.safetensors").read_bytes()
    (art / "tensors.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="tensors.safetensors is corrupted or edited"):
        load_artifact(art)
    with pytest.raises(ArtifactError):
        artifact_sha256(art)


def test_edited_meta_is_refused(tmp_path, tiny_backbone, tiny_method_cfg, tiny_images):
    art = save_artifact(tmp_path / "art", _trained("linear", tiny_backbone, tiny_method_cfg, tiny_images), META)
    meta = json.loads((art / "meta.json").read_text())
    meta["num_classes"] = 6
    (art / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="meta.json is corrupted or edited"):
        load_artifact(art)
    (art / "SHA256SUMS").unlink()
    with pytest.raises(ArtifactError, match="SHA256SUMS is missing"):
        load_artifact(art)


def test_save_is_atomic_and_overwrites_cleanly(tmp_path, tiny_backbone, tiny_method_cfg, tiny_images):
    model = _trained("linear", tiny_backbone, tiny_method_cfg, tiny_images)
    save_artifact(tmp_path / "art", model, META)
    first = artifact_sha256(tmp_path / "art")
    with torch.no_grad():
        model.head.weight.mul_(2)
    save_artifact(tmp_path / "art", model, META)
    assert artifact_sha256(tmp_path / "art") != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no temp dirs left behind
    with pytest.raises(FileExistsError):
        save_artifact(tmp_path / "art", model, META, overwrite=False)
    with pytest.raises(ArtifactError, match="meta keys \\['method'\\]"):
        save_artifact(tmp_path / "b", model, META | {"method": "lpt"})
    assert not (tmp_path / "b").exists()


def test_modified_frozen_backbone_is_refused_at_save(tmp_path, tiny_backbone, tiny_method_cfg, tiny_images):
    model = _trained("vpt", copy.deepcopy(tiny_backbone), tiny_method_cfg, tiny_images)
    with torch.no_grad():
        model.backbone.norm.weight.add_(1)
    with pytest.raises(ArtifactError, match="frozen backbone of this 'vpt' model changed"):
        save_artifact(tmp_path / "art", model, META)
