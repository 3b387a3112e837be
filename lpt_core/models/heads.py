"""Cosine classifier head (LPT, Dong et al., ICLR 2023): logits are cos(feature, class weight)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CosineHead(nn.Module):
    """Weight (D, C), no bias, columns initialised to unit norm; logits in [-1, 1]."""

    def __init__(self, dim: int, num_classes: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        weight = torch.empty(dim, num_classes)
        nn.init.normal_(weight, generator=generator)
        self.weight = nn.Parameter(F.normalize(weight, dim=0))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """Feature (B, D) -> cosine logits (B, C)."""
        return F.normalize(feature, dim=-1) @ F.normalize(self.weight, dim=0)
