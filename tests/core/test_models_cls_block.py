"""The class-token-only last query block equals timm's whole block at the class token."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lpt_core.models import build_classifier, create_backbone
from lpt_core.models.backbone import cls_only_supported, run_block, run_block_cls
from lpt_core.models.config import MethodConfig, PromptConfig

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)


@pytest.mark.parametrize(
    "extra",
    [{}, {"qkv_bias": False}, {"qk_norm": True}, {"init_values": 0.1}],
    ids=["default", "no-qkv-bias", "qk-norm", "layer-scale"],
)
def test_cls_block_matches_whole_block(extra: dict) -> None:
    bb = create_backbone("vit_tiny_patch16_224", seed=0, **TINY, **extra)
    for p in bb.parameters():  # non-trivial norms and biases
        nn.init.normal_(p, std=0.2) if p.dim() == 1 else None
    block = bb.blocks[-1]
    assert cls_only_supported(bb, block)
    x = torch.randn(3, 17, 48, generator=torch.Generator().manual_seed(1))
    prompt = torch.randn(5, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = run_block(block, x, prompt)[:, :1]
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
