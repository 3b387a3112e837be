"""The methods compared by the project, behind the ``METHODS`` registry.

- ``lpt``: Long-tailed Prompt Tuning (Dong et al., "LPT: Long-tailed Prompt Tuning for Image
  Classification", ICLR 2023): phase 1 trains a VPT-deep shared prompt + cosine head; phase 2
  trains a group prompt pool selected by a query from the phase-1 model, + keys + head.
- ``vpt``: VPT-deep shared prompt + LPT's cosine head (Jia et al., ECCV 2022), one phase.
- ``linear``: cosine head on frozen features.
- ``full_ft``: every backbone weight + cosine head.

LPT reuses blocks 1..K: the query pass and the main pass see the same tokens there, so they
are computed once and the two passes branch at block K+1 (see docs/METHOD.md for FLOPs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lpt_core.models.backbone import cls_only_supported, embed_tokens, pooled_feature, run_block, run_block_cls
from lpt_core.models.classifier import Classifier, TrainOutput, make_head
from lpt_core.models.config import MethodConfig
from lpt_core.models.prompts import GroupPromptPool, Selection, SharedPrompt, matching_loss
from lpt_core.registry import Registry

METHODS: Registry[Callable[..., Classifier]] = Registry("method")  # classes taking (backbone, C, cfg, generator)


@METHODS.register("linear")
class LinearClassifier(Classifier):
    """Cosine head on the frozen backbone's features."""

    method = "linear"
    phases = ("train",)
    trainable_prefixes = {"train": ("head.",)}
    stored_prefixes = ("head.",)

    def __init__(
        self, backbone: nn.Module, num_classes: int, cfg: MethodConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(backbone, num_classes, cfg)
        self.head = make_head(self.embed_dim, num_classes, generator)
        self.set_phase(self.phases[0])


@METHODS.register("full_ft")
class FullFineTuneClassifier(LinearClassifier):
    """Every backbone weight and the cosine head are trained; the backbone follows train()."""

    method = "full_ft"
    trainable_prefixes = {"train": ("backbone.", "head.")}
    stored_prefixes = ("backbone.", "head.")
    trains_backbone = True


@METHODS.register("vpt")
class VPTClassifier(Classifier):
    """VPT-deep: a shared prompt of L tokens in every block, cosine head."""

    method = "vpt"
    phases = ("phase1",)
    trainable_prefixes = {"phase1": ("shared_prompt.", "head.")}
    stored_prefixes = ("shared_prompt.", "head.")

    def __init__(
        self, backbone: nn.Module, num_classes: int, cfg: MethodConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(backbone, num_classes, cfg)
        pc = cfg.prompt
        self.shared_prompt = SharedPrompt(self.depth, pc.prompt_length, self.embed_dim, pc.init_std, generator)
        self.head = make_head(self.embed_dim, num_classes, generator)
        self.set_phase(self.phases[0])

    def run_shared(self, tokens: torch.Tensor, start: int, stop: int, whole: bool = False) -> torch.Tensor:
        """Blocks ``start``..``stop-1`` (0-based) with the shared prompt only (``whole``: see run_block)."""
        for i in range(start, stop):
            tokens = run_block(self.backbone.blocks[i], tokens, self.shared_prompt.at(i), whole)
        return tokens

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Phase-1 model: shared prompt in every block, no group prompts."""
        tokens = self.run_shared(embed_tokens(self.backbone, x), 0, self.depth)
        return pooled_feature(self.backbone, tokens)


@METHODS.register("lpt")
class LPTClassifier(VPTClassifier):
    """LPT: shared prompt (phase 1), then group prompts chosen per image by a query (phase 2)."""

    method = "lpt"
    phases = ("phase1", "phase2")
    trainable_prefixes = {
        "phase1": ("shared_prompt.", "head."),
        "phase2": ("group_pool.", "head."),
    }
    stored_prefixes = ("shared_prompt.", "group_pool.", "head.")

    def __init__(
        self, backbone: nn.Module, num_classes: int, cfg: MethodConfig, generator: torch.Generator | None = None
    ) -> None:
        cfg.prompt.check_depth(len(backbone.blocks))
        super().__init__(backbone, num_classes, cfg, generator)
        pc = cfg.prompt
        self.group_start = pc.group_start
        self.group_pool = GroupPromptPool(
            pc.pool_size, self.depth - pc.group_start, pc.prompt_length, self.embed_dim, pc.top_k, pc.init_std, generator
        )
        self.set_phase(self.phases[0])  # again: the pool did not exist when VPT set it

    def forward_train(self, x: torch.Tensor) -> TrainOutput:
        """Phase 1: the VPT path. Phase 2: shared blocks once, query branch, prompted main branch."""
        if self.phase == "phase1":
            return super().forward_train(x)
        logits, selection = self._grouped_forward(x)
        return TrainOutput(logits, matching_loss(selection.similarity))

    def forward_with_selection(self, x: torch.Tensor) -> tuple[torch.Tensor, Selection | None]:
        """Logits equal to ``forward(x)`` and the group selection that produced them, in one pass.

        Phase 1 uses no group prompt, so its selection is None. For label-free monitoring
        (``lpt_core.monitoring``): ``selection.indices`` (B, k) and ``selection.similarity`` (B, k).
        """
        if self.phase == "phase1":
            return self.forward(x), None
        return self._grouped_forward(x)

    def _grouped_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Selection]:
        """Phase 2: shared blocks once, query branch, prompted main branch -> (logits, selection)."""
        with torch.no_grad():  # blocks 1..K and the query branch never need gradient
            shared = self.run_shared(embed_tokens(self.backbone, x), 0, self.group_start)
            query = self.query_from(shared)
        selection = self.group_pool.select(query)
        feature = pooled_feature(self.backbone, self.run_grouped(shared, selection))
        return self.classify(feature), selection

    def query_from(self, shared: torch.Tensor) -> torch.Tensor:
        """The phase-1 query (B, D) from the tokens after blocks 1..K.

        Blocks K+1..end-1 run whole with the shared prompt; the last block computes the class
        token only (:func:`run_block_cls`), since the query is the pooled class token.
        """
        last = self.depth - 1
        tokens = self.run_shared(shared, self.group_start, last)
        block = self.backbone.blocks[last]
        if cls_only_supported(self.backbone, block):
            tokens = run_block_cls(block, tokens, self.shared_prompt.at(last))
        else:
            tokens = run_block(block, tokens, self.shared_prompt.at(last))
        return pooled_feature(self.backbone, tokens)

    def run_grouped(self, tokens: torch.Tensor, selection: Selection, whole: bool = False) -> torch.Tensor:
        """Blocks K+1..end with the shared prompt and the averaged group prompt (2L tokens)."""
        batch = tokens.shape[0]
        for j, i in enumerate(range(self.group_start, self.depth)):
            shared = self.shared_prompt.at(i).unsqueeze(0).expand(batch, -1, -1)
            prompt = torch.cat([shared, selection.prompts[:, j]], dim=1)
            tokens = run_block(self.backbone.blocks[i], tokens, prompt, whole)
        return tokens

    def select(self, x: torch.Tensor) -> Selection:
        """The group selection the phase-1 query makes for images ``x`` (no gradient)."""
        with torch.no_grad():
            query = super().features(x)
            return self.group_pool.select(query)

    def forward_naive(self, x: torch.Tensor) -> torch.Tensor:
        """Reference LPT as the released code computes it: a whole query pass, then a whole main
        pass, every block run on every token (prompts included). For tests and FLOP counts."""
        with torch.no_grad():
            query = pooled_feature(self.backbone, self.run_shared(embed_tokens(self.backbone, x), 0, self.depth, True))
        selection = self.group_pool.select(query)
        tokens = self.run_shared(embed_tokens(self.backbone, x), 0, self.group_start, True)
        return self.classify(pooled_feature(self.backbone, self.run_grouped(tokens, selection, True)))


def build_classifier(
    method: str,
    backbone: nn.Module,
    num_classes: int,
    cfg: MethodConfig | None = None,
    *,
    seed: int | None = None,
) -> Classifier:
    """Build ``method`` (a ``METHODS`` name) on ``backbone``; ``seed`` fixes the prompt/head init.

    The classifier starts in its first phase (``lpt``: phase1). For ``full_ft`` the backbone is
    unfrozen by that phase; for every other method it stays frozen.
    """
    factory = METHODS.get(method)
    cfg = cfg if cfg is not None else MethodConfig()
    on_meta = any(p.device.type == "meta" for p in backbone.parameters())
    generator = None if (seed is None or on_meta) else torch.Generator().manual_seed(int(seed))
    model = factory(backbone, num_classes, cfg, generator)
    device = next(backbone.parameters()).device
    return model.to(device)
