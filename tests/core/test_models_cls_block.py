"""The partial blocks (prompts as keys/values only; the class-token-only last query block) equal
timm's whole block on the rows they keep, in value and in the prompt's gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lpt_core.models import build_classifier, create_backbone
from lpt_core.models.backbone import cls_only_supported, rows_only_supported, run_block, run_block_cls
from lpt_core.models.config import MethodConfig, PromptConfig

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)


VARIANTS = pytest.mark.parametrize(
    "extra",
    [{}, {"qkv_bias": False}, {"qk_norm": True}, {"init_values": 0.1}],
    ids=["default", "no-qkv-bias", "qk-norm", "layer-scale"],
)


@VARIANTS
def test_cls_block_matches_whole_block(extra: dict) -> None:
    bb = create_backbone("vit_tiny_patch16_224", seed=0, **TINY, **extra)
    for p in bb.parameters():  # non-trivial norms and biases
        nn.init.normal_(p, std=0.2) if p.dim() == 1 else None
    block = bb.blocks[-1]
    assert cls_only_supported(bb, block)
    x = torch.randn(3, 17, 48, generator=torch.Generator().manual_seed(1))
    prompt = torch.randn(5, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = run_block(block, x, prompt, whole=True)[:, :1]
        cls = run_block_cls(block, x, prompt)
    assert cls.shape == (3, 1, 48)
    torch.testing.assert_close(cls, whole, rtol=0, atol=1e-6)


def test_cls_block_not_used_where_it_would_be_wrong() -> None:
    avg = create_backbone("vit_tiny_patch16_224", seed=0, global_pool="avg", **TINY)
    assert not cls_only_supported(avg, avg.blocks[-1])
    tok = create_backbone("vit_tiny_patch16_224", seed=0, **TINY)
    tok.blocks[-1].train()
    assert not cls_only_supported(tok, tok.blocks[-1])


def test_lpt_reuse_with_avg_pool_still_equals_naive() -> None:
    """The fallback (whole last block) keeps avg-pooled backbones exact."""
    bb = create_backbone("vit_tiny_patch16_224", seed=0, global_pool="avg", class_token=False, **TINY)
    cfg = MethodConfig(prompt=PromptConfig(prompt_length=2, pool_size=4, group_start=2))
    model = build_classifier("lpt", bb, 5, cfg, seed=0)
    model.set_phase("phase2")
    model.eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_naive(x), rtol=0, atol=1e-6)


@VARIANTS
def test_prompt_rows_skipped_match_whole_block_value_and_gradient(extra: dict) -> None:
    """Prompt tokens as keys/values only: same patch-token outputs and same gradient to the prompt."""
    bb = create_backbone("vit_tiny_patch16_224", seed=0, **TINY, **extra)
    for p in bb.parameters():
        nn.init.normal_(p, std=0.2) if p.dim() == 1 else None
    block = bb.blocks[1]
    assert rows_only_supported(block)
    x = torch.randn(3, 17, 48, generator=torch.Generator().manual_seed(1))
    target = torch.randn(3, 17, 48, generator=torch.Generator().manual_seed(4))
    outs, grads = [], []
    for whole in (False, True):
        prompt = torch.randn(3, 5, 48, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        out = run_block(block, x, prompt, whole=whole)
        (out * target).sum().backward()
        outs.append(out.detach())
        grads.append(prompt.grad)
    assert outs[0].shape == x.shape
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)
    assert grads[0].abs().sum() > 0


def test_training_mode_blocks_run_whole() -> None:
    """A block in train mode (dropout, drop-path draws) never takes the partial path."""
    bb = create_backbone("vit_tiny_patch16_224", seed=0, **TINY)
    block = bb.blocks[0].train()
    assert not rows_only_supported(block)
    x = torch.randn(2, 17, 48, generator=torch.Generator().manual_seed(1))
    prompt = torch.randn(4, 48, generator=torch.Generator().manual_seed(2))
    assert torch.equal(run_block(block, x, prompt), run_block(block, x, prompt, whole=True))
