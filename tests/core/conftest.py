"""Shared fixtures for tests/core (model core + training).

Owned by the model-core engineer; other engineers may add fixtures by appending below, never by
overwriting. Every fixture builds tiny random timm ViTs (pretrained=False, no download).
"""

from __future__ import annotations

import pytest
import torch
from tiny_data import make_tiny_prepared

from lpt_core.models import MethodConfig, PromptConfig, create_backbone

TINY_VIT = "vit_tiny_patch16_224"
TINY_KWARGS = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)


@pytest.fixture
def tiny_backbone() -> torch.nn.Module:
    """A frozen, seeded, random-init 4-block ViT (img 32, patch 8, dim 48, 3 heads)."""
    return create_backbone(TINY_VIT, pretrained=False, seed=0, **TINY_KWARGS)


@pytest.fixture
def tiny_method_cfg() -> MethodConfig:
    """Method config sized for the tiny ViT: group prompts from block K=2 of 4, small pool."""
    return MethodConfig(prompt=PromptConfig(prompt_length=3, pool_size=5, top_k=2, group_start=2))


@pytest.fixture
def tiny_images() -> torch.Tensor:
    """A float batch (4, 3, 32, 32) from a seeded generator."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 32, 32, generator=gen)


# --- training-part fixtures (appended by the training engineer) ---------------------------------


@pytest.fixture
def tiny_prepared():
    """The toy long-tailed PreparedDataset of :func:`make_tiny_prepared` (94 train images)."""
    return make_tiny_prepared()
