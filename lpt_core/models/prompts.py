"""Prompt parameters of LPT (Dong et al., "LPT: Long-tailed Prompt Tuning for Image
Classification", ICLR 2023): the VPT-deep shared prompt and the group prompt pool with keys.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def _trunc_normal(shape: tuple[int, ...], std: float, generator: torch.Generator | None) -> nn.Parameter:
    param = nn.Parameter(torch.empty(shape))
    nn.init.trunc_normal_(param, std=std, a=-2 * std, b=2 * std, generator=generator)
    return param


class SharedPrompt(nn.Module):
    """One (depth, L, D) prompt: L tokens appended in every block (VPT-deep)."""

    def __init__(
        self, depth: int, length: int, dim: int, init_std: float = 0.02, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.tokens = _trunc_normal((depth, length, dim), init_std, generator)

    def at(self, block: int) -> torch.Tensor:
        """Tokens (L, D) of ``block`` (a method, not forward: no module hooks on a parameter view)."""
        return self.tokens[block]


class Selection(NamedTuple):
    """Result of group-prompt selection for one batch."""

    prompts: torch.Tensor  # (B, depth-K, L, D): the averaged selected group prompts
    indices: torch.Tensor  # (B, k) int64: selected groups, best first
    similarity: torch.Tensor  # (B, k): cos(query, selected key); carries gradient into the keys only


class GroupPromptPool(nn.Module):
    """M group prompts of shape (depth-K, L, D) for the last depth-K blocks, and M keys (D,)."""

    def __init__(
        self,
        pool_size: int,
        depth: int,
        length: int,
        dim: int,
        top_k: int,
        init_std: float = 0.02,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= pool_size:
            raise ValueError(f"top_k must be in 1..{pool_size}, got {top_k}")
        self.top_k = top_k
        self.prompts = _trunc_normal((pool_size, depth, length, dim), init_std, generator)
        self.keys = _trunc_normal((pool_size, dim), init_std, generator)

    def select(self, query: torch.Tensor) -> Selection:
        """Top-k keys by cosine similarity with ``query`` (B, D); average their prompts.

        The query is detached (no gradient flows into the query pass). The averaged prompt is
        gathered by integer indices, so it carries gradient into the prompts but never into the
        keys; the keys get gradient only through ``similarity`` (the matching loss).
        """
        q = F.normalize(query.detach(), dim=-1)
        k = F.normalize(self.keys, dim=-1)
        sim = q @ k.t()  # (B, M)
        indices = sim.detach().topk(self.top_k, dim=-1).indices
        chosen = self.prompts[indices]  # (B, k, depth-K, L, D)
        return Selection(chosen.mean(dim=1), indices, sim.gather(1, indices))


def matching_loss(similarity: torch.Tensor) -> torch.Tensor:
    """LPT's key-query matching loss: -0.5 * (sum of selected cosines over the batch) / B."""
    return -0.5 * similarity.sum() / similarity.shape[0]
