"""Frozen configuration of the prompt-tuning methods (params.yaml section ``method``).

Defaults are LPT's (Dong et al., ICLR 2023) for a 12-block ViT-B/16: 10 prompt tokens, a pool of
20 group prompts, top-2 selection, group prompts from block K+1 = 7 on. Shallower ViTs need a
smaller ``group_start``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PromptConfig:
    """Prompt sizes: L tokens per block, M groups, top-k selection, K blocks before group prompts."""

    prompt_length: int = 10
    pool_size: int = 20
    top_k: int = 2
    group_start: int = 6
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.prompt_length < 1:
            raise ValueError(f"prompt_length must be >= 1, got {self.prompt_length}")
        if not 1 <= self.top_k <= self.pool_size:
            raise ValueError(f"top_k must be in 1..pool_size={self.pool_size}, got {self.top_k}")
        if self.group_start < 1:
            raise ValueError(f"group_start (K) must be >= 1, got {self.group_start}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")

    def check_depth(self, depth: int) -> None:
        """Raise unless 1 <= K < depth, so both the shared-only and the group stage exist."""
        if not 1 <= self.group_start < depth:
            raise ValueError(
                f"group_start K={self.group_start} must be in 1..{depth - 1} for a {depth}-block backbone"
            )


@dataclass(frozen=True)
class MethodConfig:
    """Everything a method needs beyond the backbone and the class count."""

    prompt: PromptConfig = field(default_factory=PromptConfig)
    head_dropout: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
