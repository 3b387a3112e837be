"""Parameter and FLOP accounting for LPT (Dong et al., ICLR 2023) and its baselines.

Both reports build the models on PyTorch's ``meta`` device (shapes only, no memory, no weights,
no download), so ViT-B/16 takes well under a second and the numbers are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from lpt_core.models import METHODS, Classifier, MethodConfig, build_classifier, create_backbone
from lpt_core.models.backbone import embed_tokens, pooled_feature, run_block, run_block_cls

META = torch.device("meta")


def meta_classifier(method: str, backbone_name: str, num_classes: int, cfg: MethodConfig, **kw: Any) -> Classifier:
    """A classifier whose every tensor lives on the meta device (exact shapes, no data)."""
    with META:
        backbone = create_backbone(backbone_name, pretrained=False, **kw)
        return build_classifier(method, backbone, num_classes, cfg)


def default_config_for(backbone_name: str, **kw: Any) -> MethodConfig:
    """LPT's defaults, with K = depth // 2 (6 for the 12-block ViT-B/16) for other depths."""
    with META:
        depth = len(create_backbone(backbone_name, pretrained=False, **kw).blocks)
    base = MethodConfig()
    if depth == 12:
        return base
    prompt = base.prompt.__class__(**{**base.prompt.__dict__, "group_start": max(1, depth // 2)})
    return MethodConfig(prompt=prompt, head_dropout=base.head_dropout)


def parameter_report(
    backbone_name: str, num_classes: int, cfg: MethodConfig | None = None, **timm_kwargs: Any
) -> dict[str, Any]:
    """Trainable and stored parameter counts per method and phase, and their ratio to the backbone."""
    cfg = cfg if cfg is not None else default_config_for(backbone_name, **timm_kwargs)
    rows: list[dict[str, Any]] = []
    backbone_params = 0
    for method in METHODS.names():
        model = meta_classifier(method, backbone_name, num_classes, cfg, **timm_kwargs)
        backbone_params = model.parameter_counts()["backbone"]
        stored = model.parameter_counts()["stored"]
        trained: set[str] = set()
        for phase in model.phases:
            model.set_phase(phase)
            trained |= set(model.trainable_names())
            rows.append(_row(method, phase, model.parameter_counts()["trainable"], stored, backbone_params))
        if len(model.phases) > 1:
            total = sum(p.numel() for n, p in model.named_parameters() if n in trained)
            rows.append(_row(method, "all", total, stored, backbone_params))
    return {
        "backbone": backbone_name,
        "num_classes": num_classes,
        "backbone_params": backbone_params,
        "method_config": {"prompt": dict(cfg.prompt.__dict__), "head_dropout": cfg.head_dropout},
        "rows": rows,
    }


def _row(method: str, phase: str, trainable: int, stored: int, backbone: int) -> dict[str, Any]:
    return {
        "method": method,
        "phase": phase,
        "trainable": trainable,
        "trainable_ratio": trainable / backbone,
        "stored": stored,
        "stored_ratio": stored / backbone,
    }


def count_flops(fn: Any, *args: Any) -> int:
    """Total FLOPs of ``fn(*args)`` as torch's FlopCounterMode counts them (matmul, conv, SDPA)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args)
    return int(counter.get_total_flops())


def flops_report(
    backbone_name: str = "vit_base_patch16_224",
    num_classes: int = 100,
    cfg: MethodConfig | None = None,
    batch: int = 1,
    **timm_kwargs: Any,
) -> dict[str, Any]:
    """Inference FLOPs of a plain ViT forward, the phase-1 (VPT) model, LPT two-pass, LPT with reuse.

    Between the two-pass reference (``lpt_naive``) and ``lpt_reuse`` (LPT's forward), the steps
    of :func:`reuse_with_whole_blocks`: reuse alone, then with the class-token-only last query
    block; ``phase1_whole_blocks`` is the phase-1 model with its prompts computed in full. Counted on the meta device, so the figures are exact and need no weights. Ratios are
    to the plain backbone forward (features, no head).
    """
    cfg = cfg if cfg is not None else default_config_for(backbone_name, **timm_kwargs)
    model = meta_classifier("lpt", backbone_name, num_classes, cfg, **timm_kwargs).eval()
    size = model.data_config()["input_size"]
    x = torch.empty(batch, *size, device=META)
    plain = count_flops(model.backbone, x)
    model.set_phase("phase1")
    phase1 = count_flops(model, x)
    phase1_whole = count_flops(
        lambda t: model.classify(pooled_feature(model.backbone, model.run_shared(embed_tokens(model.backbone, t), 0,
                                                                                 model.depth, whole=True))), x)
    model.set_phase("phase2")
    naive = count_flops(model.forward_naive, x)
    reuse_whole = count_flops(reuse_with_whole_blocks(model, cls_only=False), x)
    reuse_cls = count_flops(reuse_with_whole_blocks(model, cls_only=True), x)
    reuse = count_flops(model, x)
    flops = {"plain": plain, "phase1_whole_blocks": phase1_whole, "phase1": phase1, "lpt_naive": naive, "reuse_whole_blocks": reuse_whole,
             "reuse_cls_block": reuse_cls, "lpt_reuse": reuse}
    return {
        "backbone": backbone_name,
        "input_size": list(size),
        "batch": batch,
        "group_start": cfg.prompt.group_start,
        "prompt_length": cfg.prompt.prompt_length,
        "flops": flops,
        "ratio_to_plain": {k: v / plain for k, v in flops.items()},
    }


def reuse_with_whole_blocks(model: Classifier, cls_only: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """LPT phase 2 with blocks 1..K reused but every block whole (prompt tokens computed in full,
    as the released code does); ``cls_only`` adds the class-token-only last query block.

    The intermediate steps between ``forward_naive`` and ``forward``, for FLOP accounting only;
    all three compute the same logits (tested).
    """
    k, last = model.group_start, model.depth - 1

    def forward(x: torch.Tensor) -> torch.Tensor:
        shared = model.run_shared(embed_tokens(model.backbone, x), 0, k, whole=True)
        tokens = model.run_shared(shared, k, last, whole=True)
        block, prompt = model.backbone.blocks[last], model.shared_prompt.at(last)
        tokens = run_block_cls(block, tokens, prompt) if cls_only else run_block(block, tokens, prompt, whole=True)
        selection = model.group_pool.select(pooled_feature(model.backbone, tokens))
        return model.classify(pooled_feature(model.backbone, model.run_grouped(shared, selection, whole=True)))

    return forward
