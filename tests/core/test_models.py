"""The prompted ViT against plain timm, frozen weights, trainable sets, LPT selection and reuse."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from lpt_core.models import (
    METHODS,
    BackboneUnavailableError,
    MethodConfig,
    PromptConfig,
    backbone_fingerprint,
    backbone_spec,
    build_classifier,
    create_backbone,
)
from lpt_core.models.backbone import embed_tokens, pooled_feature, run_block


def test_no_prompt_path_equals_timm_bitwise(tiny_backbone, tiny_images):
    model = build_classifier("linear", tiny_backbone, 5, seed=0)
    with torch.no_grad():
        ref = tiny_backbone.forward_head(tiny_backbone.forward_features(tiny_images), pre_logits=True)
        ours = model.features(tiny_images)
        tokens = embed_tokens(tiny_backbone, tiny_images)
        for block in tiny_backbone.blocks:
            tokens = run_block(block, tokens, None)
        ours_blockwise = pooled_feature(tiny_backbone, tokens)
    assert torch.equal(ours, ref)
    assert torch.equal(ours_blockwise, ref)


def test_prompts_are_appended_and_dropped(tiny_backbone, tiny_images):
    tokens = embed_tokens(tiny_backbone, tiny_images)
    block = tiny_backbone.blocks[0]
    prompt = torch.randn(3, tokens.shape[-1])
    out = run_block(block, tokens, prompt)
    expected = block(torch.cat([tokens, prompt.expand(tokens.shape[0], -1, -1)], dim=1))[:, : tokens.shape[1]]
    assert out.shape == tokens.shape
    assert torch.equal(run_block(block, tokens, prompt, whole=True), expected)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)  # prompts give keys/values only
    assert not torch.allclose(out, block(tokens))  # the prompt does change the patch tokens


EXPECTED_TRAINABLE = {
    ("lpt", "phase1"): ["head.weight", "shared_prompt.tokens"],
    ("lpt", "phase2"): ["group_pool.keys", "group_pool.prompts", "head.weight"],
    ("vpt", "phase1"): ["head.weight", "shared_prompt.tokens"],
    ("linear", "train"): ["head.weight"],
}


@pytest.mark.parametrize(("method", "phase"), sorted(EXPECTED_TRAINABLE))
def test_trainable_names_per_method_and_phase(tiny_backbone, tiny_method_cfg, method, phase):
    model = build_classifier(method, tiny_backbone, 5, tiny_method_cfg, seed=0)
    model.set_phase(phase)
    assert sorted(model.trainable_names()) == EXPECTED_TRAINABLE[(method, phase)]


def test_full_ft_trains_every_backbone_weight(tiny_backbone, tiny_method_cfg):
    model = build_classifier("full_ft", copy.deepcopy(tiny_backbone), 5, tiny_method_cfg, seed=0)
    names = set(model.trainable_names())
    assert names == {n for n, _ in model.named_parameters()}
    model.train()
    assert model.backbone.training


def test_unknown_method_and_phase_raise(tiny_backbone, tiny_method_cfg):
    with pytest.raises(KeyError, match="valid names: full_ft, linear, lpt, vpt"):
        build_classifier("lpt2", tiny_backbone, 5, tiny_method_cfg)
    model = build_classifier("vpt", tiny_backbone, 5, tiny_method_cfg)
    with pytest.raises(ValueError, match="phase2"):
        model.set_phase("phase2")
    with pytest.raises(ValueError, match="group_start K=4"):
        build_classifier("lpt", tiny_backbone, 5, MethodConfig(prompt=PromptConfig(group_start=4)))


@pytest.mark.parametrize("phase", ["phase1", "phase2"])
def test_frozen_weights_bitwise_unchanged_after_steps(tiny_backbone, tiny_method_cfg, tiny_images, phase):
    model = build_classifier("lpt", tiny_backbone, 5, tiny_method_cfg, seed=0)
    model.set_phase(phase)
    before_backbone = backbone_fingerprint(model.backbone)
    before_shared = model.shared_prompt.tokens.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9, weight_decay=0.01)
    model.train()
    assert not model.backbone.training and model.head_drop.training
    targets = torch.tensor([0, 1, 2, 3])
    for _ in range(3):
        out = model.forward_train(tiny_images)
        loss = F.cross_entropy(20 * out.logits, targets) + (out.match_loss if out.match_loss is not None else 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert backbone_fingerprint(model.backbone) == before_backbone
    if phase == "phase2":
        assert torch.equal(model.shared_prompt.tokens, before_shared)
    else:
        assert not torch.equal(model.shared_prompt.tokens, before_shared)


def test_selection_top2_average_by_hand(tiny_backbone, tiny_method_cfg):
    model = build_classifier("lpt", tiny_backbone, 5, tiny_method_cfg, seed=0)
    pool = model.group_pool
    query = torch.randn(3, pool.keys.shape[1])
    sel = pool.select(query)
    for b in range(3):
        cos = [F.cosine_similarity(query[b], pool.keys[m], dim=0).item() for m in range(pool.keys.shape[0])]
        order = sorted(range(len(cos)), key=lambda m: -cos[m])[:2]
        assert sel.indices[b].tolist() == order
        assert sel.similarity[b].tolist() == pytest.approx([cos[m] for m in order], abs=1e-6)
        expected = (pool.prompts[order[0]] + pool.prompts[order[1]]) / 2
        torch.testing.assert_close(sel.prompts[b], expected, rtol=0, atol=1e-7)


def test_keys_get_gradient_only_from_matching_loss(tiny_backbone, tiny_method_cfg, tiny_images):
    model = build_classifier("lpt", tiny_backbone, 5, tiny_method_cfg, seed=0)
    model.set_phase("phase2")
    out = model.forward_train(tiny_images)
    out.logits.sum().backward(retain_graph=True)
    assert model.group_pool.keys.grad is None  # classification term: no gradient into the keys
    assert model.group_pool.prompts.grad is not None and model.group_pool.prompts.grad.abs().sum() > 0
    prompt_grad = model.group_pool.prompts.grad.clone()
    head_grad = model.head.weight.grad.clone()
    out.match_loss.backward()
    assert model.group_pool.keys.grad is not None and model.group_pool.keys.grad.abs().sum() > 0
    assert torch.equal(model.group_pool.prompts.grad, prompt_grad)  # matching term: keys only
    assert torch.equal(model.head.weight.grad, head_grad)


def test_matching_loss_value(tiny_backbone, tiny_method_cfg, tiny_images):
    model = build_classifier("lpt", tiny_backbone, 5, tiny_method_cfg, seed=0)
    model.set_phase("phase2")
    sel = model.select(tiny_images)
    out = model.forward_train(tiny_images)
    expected = -0.5 * sel.similarity.sum() / tiny_images.shape[0]
    torch.testing.assert_close(out.match_loss, expected)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_block_reuse_equals_naive_two_pass(tiny_backbone, tiny_method_cfg, tiny_images, mode):
    model = build_classifier("lpt", tiny_backbone, 5, tiny_method_cfg, seed=0)
    model.set_phase("phase2")
    model.head_drop.p = 0.0 if mode == "train" else model.head_drop.p
    model.train(mode == "train")
    reuse = model.forward_train(tiny_images).logits
    naive = model.forward_naive(tiny_images)
    torch.testing.assert_close(reuse, naive, rtol=0, atol=1e-6)
    # and the selection really changes the output relative to the phase-1 model
    assert not torch.allclose(reuse, model.classify(model.features(tiny_images)))


def test_phase2_backward_touches_no_block_before_k(tiny_backbone, tiny_method_cfg, tiny_images):
    model = build_classifier("lpt", tiny_backbone, 5, tiny_method_cfg, seed=0)
    model.set_phase("phase2")
    records: list[tuple[int, bool]] = []
    hooks = [
        block.mlp.register_forward_hook(lambda _m, _i, out, i=i: records.append((i, out.requires_grad)))
        for i, block in enumerate(model.backbone.blocks)
    ]  # on the MLP: prompted blocks run through their sub-modules (run_block_rows), not block()
    model.forward_train(tiny_images).logits.sum().backward()
    for h in hooks:
        h.remove()
    k = tiny_method_cfg.prompt.group_start
    # reuse path: blocks 0..K-1 once (no grad), query branch K..end (no grad; its last block
    # class-token-only), main branch K..end (grad)
    assert [i for i, _ in records] == [0, 1, 2, 3, 2, 3]
    assert [g for i, g in records if i < k] == [False] * k
    assert [g for _, g in records[-2:]] == [True, True]


def test_offline_without_weights_names_the_options(monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackboneUnavailableError, match="--backbone-weights PATH.*HF_HUB_OFFLINE=0.*pretrained: false"):
        create_backbone("vit_tiny_patch16_224", pretrained=True, img_size=32)


def test_unknown_backbone_names_close_timm_models():
    with pytest.raises(ValueError, match="unknown timm model 'vit_base_patch16_244'.*vit_base_patch16_224"):
        create_backbone("vit_base_patch16_244")
    with pytest.raises(ValueError, match="unknown timm model 'resnet_nonsense_zz'; see timm.list_models"):
        create_backbone("resnet_nonsense_zz")


def test_local_weights_load_strictly_and_fingerprint(tmp_path, tiny_backbone):
    from safetensors.torch import save_file

    spec = backbone_spec(tiny_backbone)
    kwargs = {k: v for k, v in spec["timm_kwargs"].items() if k != "num_classes"}
    state = {k: v.contiguous() for k, v in tiny_backbone.state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file(state | {"head.weight": torch.zeros(7, 48), "head.bias": torch.zeros(7)}, str(path))
    loaded = create_backbone(spec["name"], weights=path, seed=123, **kwargs)
    assert backbone_fingerprint(loaded) == backbone_fingerprint(tiny_backbone)
    assert backbone_spec(loaded)["source"] == f"file:{path.resolve()}"
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    other = create_backbone(spec["name"], seed=1, **kwargs)
    assert backbone_fingerprint(other) != backbone_fingerprint(tiny_backbone)
    del state["norm.weight"]
    save_file(state, str(path))
    with pytest.raises(ValueError, match="missing keys \\['norm.weight'\\]"):
        create_backbone(spec["name"], weights=path, **kwargs)
    with pytest.raises(BackboneUnavailableError, match="does not exist"):
        create_backbone(spec["name"], weights=tmp_path / "nope.pth", **kwargs)


def test_seeded_backbone_is_reproducible_and_leaves_global_rng(tiny_backbone):
    kwargs = {k: v for k, v in backbone_spec(tiny_backbone)["timm_kwargs"].items() if k != "num_classes"}
    state = torch.random.get_rng_state()
    again = create_backbone("vit_tiny_patch16_224", seed=0, **kwargs)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert backbone_fingerprint(again) == backbone_fingerprint(tiny_backbone)


def test_data_config_uses_the_real_input_size(tiny_backbone):
    cfg = build_classifier("linear", tiny_backbone, 5).data_config()
    assert cfg["input_size"] == (3, 32, 32)
    assert len(cfg["mean"]) == 3 and len(cfg["std"]) == 3


@pytest.mark.parametrize("method", METHODS.names())
def test_forward_shapes_and_cosine_range(tiny_backbone, tiny_method_cfg, tiny_images, method):
    model = build_classifier(method, copy.deepcopy(tiny_backbone), 5, tiny_method_cfg, seed=0).eval()
    for phase in model.phases:
        model.set_phase(phase)
        with torch.no_grad():
            logits = model(tiny_images)
        assert logits.shape == (4, 5)
        assert logits.abs().max() <= 1.0 + 1e-6
    head = model.head.weight
    assert head.shape == (48, 5)


def test_head_columns_start_at_unit_norm(tiny_backbone):
    head = build_classifier("linear", tiny_backbone, 7, seed=3).head.weight
    torch.testing.assert_close(head.norm(dim=0), torch.ones(7))
