"""FLOPs and wall time of LPT's variants (Dong et al., ICLR 2023) vs a plain ViT and full FT.

Inference candidates come from :mod:`lpt_core.bench.models`. A training step follows the
spec's phase-2 recipe: dual sampling (two batches, two forward passes), A-GCL on each with
the matching loss, the instance-balanced half weighted by alpha, backward, one SGD step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lpt_core.bench.models import BenchBackbone, build_variants, inference_fn

TRAIN_VARIANTS: tuple[str, ...] = ("lpt_reuse", "lpt_naive", "full_ft")


def flops_per_image(spec: BenchBackbone, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Inference FLOPs per image of the variants (``lpt_core.info.flops_report``, meta device).

    ``plain`` is the backbone forward alone; the others include prompts, selection and head.
    """
    from lpt_core.info import flops_report
    from lpt_core.models.config import MethodConfig, PromptConfig

    cfg = MethodConfig(prompt=PromptConfig(group_start=spec.group_start))
    report = flops_report(spec.name, spec.num_classes, cfg, img_size=spec.img_size, **spec.timm_kwargs)
    flops = {k: float(v) for k, v in report["flops"].items()}
    unknown = sorted(set(names or ()) - set(flops))
    if unknown:
        raise KeyError(f"flops_report has no variant(s) {unknown}; it has {sorted(flops)}")
    return {k: flops[k] for k in (names or flops)}


def inference_candidates(models: dict[str, nn.Module], x: torch.Tensor) -> dict[str, Callable[[], object]]:
    """Zero-argument callables running each variant's inference forward on ``x``."""
    def bind(name: str, model: nn.Module) -> Callable[[], object]:
        fn = inference_fn(name, model)

        def run() -> object:
            with torch.inference_mode():
                return fn(x)

        return run

    for model in models.values():
        model.eval()
    return {name: bind(name, model) for name, model in models.items()}


def _lpt_logits_and_match(name: str, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    if name == "lpt_naive":  # the two-pass reference; its matching loss only feeds the keys
        return model.forward_naive(x), None
    out = model.forward_train(x)
    return out.logits, out.match_loss


def train_step_fn(name: str, model: nn.Module, batches: tuple[tuple[torch.Tensor, torch.Tensor], ...],
                  class_counts: torch.Tensor, alpha: float = 0.25,
                  dtype: torch.dtype | None = None) -> Callable[[], torch.Tensor]:
    """One dual-sampling training step of variant ``name`` (phase 2 for LPT) as a callable.

    ``batches`` is ((x_cb, y_cb), (x_ib, y_ib)); ``dtype`` (e.g. bf16) runs the forwards under
    autocast. Each call returns the loss tensor (not synced, so device timing stays honest).
    """
    from lpt_core.losses import AGCLLoss

    device = class_counts.device
    gen = torch.Generator(device=device).manual_seed(0)
    losses = (AGCLLoss(class_counts, 0.0, 4.0, generator=gen), AGCLLoss(class_counts, 0.5, 8.0, generator=gen))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"variant {name!r} has no trainable parameters")
    opt = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=0.01)

    def step() -> torch.Tensor:
        model.train()
        total = torch.zeros((), device=device)
        for i, ((x, y), loss_fn) in enumerate(zip(batches, losses)):
            with _autocast(device, dtype):
                logits, match = _lpt_logits_and_match(name, model, x)
            term = loss_fn(logits.float(), y) + (match.float() if match is not None else 0.0)
            total = total + (term if i == 0 else alpha * term)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return total.detach()

    return step


def _autocast(device: torch.device, dtype: torch.dtype | None):  # noqa: ANN202
    import contextlib

    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def train_candidates(spec: BenchBackbone, batch: int, device: str = "cpu", seed: int = 0,
                     names: tuple[str, ...] = TRAIN_VARIANTS,
                     dtype: torch.dtype | None = None) -> dict[str, Callable[[], torch.Tensor]]:
    """Training-step callables for ``names`` on random data of ``batch`` images per half."""
    models = build_variants(spec, names, device=device, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    batches = tuple(
        (torch.randn(batch, 3, spec.img_size, spec.img_size, generator=gen).to(device),
         torch.randint(0, spec.num_classes, (batch,), generator=gen).to(device))
        for _ in range(2)
    )
    counts = torch.floor(500 * 0.01 ** (torch.arange(spec.num_classes) / max(1, spec.num_classes - 1))).long()
    return {name: train_step_fn(name, models[name], batches, counts.to(device), dtype=dtype) for name in names}
