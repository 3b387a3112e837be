"""The model variants whose costs are compared, built from the project's real classifiers.

LPT (Dong et al., "LPT: Long-tailed Prompt Tuning for Image Classification", ICLR 2023) runs
a query pass (the phase-1 model) and a main pass per image. The variants:

- ``plain``: the frozen backbone + cosine head (``linear`` method), one pass;
- ``phase1``: LPT in phase 1 (shared prompt in every block);
- ``lpt_naive``: LPT phase 2, query pass then a full main pass (``forward_naive``);
- ``lpt_reuse``: LPT phase 2 with blocks 1..K computed once for both passes (``forward``);
- ``full_ft``: full fine-tuning (own backbone copy, since its backbone is trainable).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

INFERENCE_VARIANTS: tuple[str, ...] = ("plain", "phase1", "lpt_naive", "lpt_reuse")


@dataclass(frozen=True)
class BenchBackbone:
    """A timm backbone to benchmark: name, input size, extra timm kwargs and LPT's K."""

    label: str  # human-readable, e.g. "ViT-B/16 @224"
    name: str  # timm model name
    img_size: int
    group_start: int  # LPT's K: blocks before group prompts
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 100


VIT_B16 = BenchBackbone("ViT-B/16 @224", "vit_base_patch16_224", 224, 6)
VIT_S16 = BenchBackbone("ViT-S/16 @224", "vit_small_patch16_224", 224, 6)
TINY = BenchBackbone("tiny ViT (32 px, patch 8, dim 48, depth 4)", "vit_tiny_patch16_224", 32, 2,
                     {"patch_size": 8, "embed_dim": 48, "depth": 4, "num_heads": 3})


def quickstart_backbone(params: dict[str, Any] | None = None) -> BenchBackbone:
    """The quickstart backbone's shape (``pretrain`` section of params.yaml, else its defaults)."""
    from lpt_core.config import from_mapping
    from lpt_core.pretrain import PretrainConfig

    cfg = from_mapping(PretrainConfig, (params or {}).get("pretrain"), where="pretrain")
    kwargs = {"patch_size": cfg.patch_size, "embed_dim": cfg.embed_dim, "depth": cfg.depth,
              "num_heads": cfg.num_heads}
    label = f"quickstart ViT ({cfg.img_size} px, patch {cfg.patch_size}, dim {cfg.embed_dim}, depth {cfg.depth})"
    return BenchBackbone(label, cfg.model_name, cfg.img_size, cfg.depth // 2, kwargs, num_classes=5)


def make_backbone(spec: BenchBackbone, device: str = "cpu", seed: int = 0) -> nn.Module:
    """The frozen, randomly initialised (seeded) backbone of ``spec`` on ``device``.

    ``device="meta"`` builds it without storage (instant; enough to count FLOPs).
    """
    from lpt_core.models.backbone import create_backbone

    if device == "meta":
        with torch.device("meta"):
            return create_backbone(spec.name, pretrained=False, img_size=spec.img_size, **spec.timm_kwargs)
    return create_backbone(spec.name, pretrained=False, img_size=spec.img_size, seed=seed,
                           **spec.timm_kwargs).to(device)


def build_variants(spec: BenchBackbone, names: tuple[str, ...], device: str = "cpu",
                   seed: int = 0) -> dict[str, nn.Module]:
    """Classifiers for the requested variants; all but ``full_ft`` share one frozen backbone.

    ``lpt_naive`` and ``lpt_reuse`` are the same phase-2 LPT module (they differ in the forward
    that is called: see :func:`inference_fn`).
    """
    from lpt_core.models.config import MethodConfig, PromptConfig
    from lpt_core.models.methods import build_classifier

    unknown = sorted(set(names) - set(INFERENCE_VARIANTS) - {"full_ft"})
    if unknown:
        raise KeyError(f"unknown bench variant(s) {unknown}; valid: {list(INFERENCE_VARIANTS) + ['full_ft']}")
    backbone = make_backbone(spec, device, seed)
    cfg = MethodConfig(prompt=PromptConfig(group_start=spec.group_start))
    out: dict[str, nn.Module] = {}
    lpt = None
    for name in names:
        if name == "plain":
            out[name] = build_classifier("linear", backbone, spec.num_classes, cfg, seed=seed)
        elif name == "phase1":
            out[name] = build_classifier("lpt", backbone, spec.num_classes, cfg, seed=seed)
        elif name == "full_ft":
            out[name] = build_classifier("full_ft", copy.deepcopy(backbone), spec.num_classes, cfg, seed=seed)
        else:
            if lpt is None:
                lpt = build_classifier("lpt", backbone, spec.num_classes, cfg, seed=seed)
                lpt.set_phase("phase2")
            out[name] = lpt
    return out


def inference_fn(name: str, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The inference forward of variant ``name`` (``lpt_naive`` calls the two-pass reference)."""
    if name == "lpt_naive":
        return model.forward_naive
    if name in INFERENCE_VARIANTS or name == "full_ft":
        return model.forward
    raise KeyError(f"unknown bench variant {name!r}; valid: {list(INFERENCE_VARIANTS) + ['full_ft']}")
