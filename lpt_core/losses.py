"""Long-tail losses on cosine logits, behind the ``LOSSES`` registry.

- ``agcl``: asymmetric Gaussian clouded logit loss of LPT (Dong et al., "LPT: Long-tailed Prompt
  Tuning for Image Classification", ICLR 2023), the six steps of shared/LPT_SPEC.md.
- ``cross_entropy``: softmax cross-entropy on ``scale * cos``.
- ``logit_adjusted``: logit-adjusted loss (Menon et al., ICLR 2021), ``+ tau * log prior``, tau=1.
- ``balanced_softmax``: Balanced Softmax (Ren et al., NeurIPS 2020), ``+ log n_j``.

Every loss is an ``nn.Module`` called as ``loss(logits (B,C), targets int (B,)) -> scalar`` and
keeps the class counts as a buffer, so it moves with ``.to(device)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lpt_core.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss")


def _counts_tensor(class_counts: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(class_counts, torch.Tensor):  # may live on any device
        counts = class_counts.detach().to("cpu", torch.float32)
    else:
        counts = torch.as_tensor(np.asarray(class_counts, dtype=np.float64)).to(torch.float32)
    if counts.dim() != 1 or counts.numel() < 1:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {tuple(counts.shape)}")
    bad = torch.nonzero(counts <= 0).flatten().tolist()
    if bad:
        raise ValueError(f"class_counts must all be > 0; classes {bad[:10]} have counts {counts[bad[:10]].tolist()}")
    return counts


def _check_inputs(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> None:
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must be (B, {num_classes}), got {tuple(logits.shape)}")
    if targets.shape != (logits.shape[0],):
        raise ValueError(f"targets must be ({logits.shape[0]},), got {tuple(targets.shape)}")


def noise_strength(class_counts: torch.Tensor) -> torch.Tensor:
    """beta_j = (log n_max - log n_j) / (log n_max - log n_min): head 0, rarest 1.

    All-equal counts (a balanced set) give beta = 0 for every class: no noise, never NaN.
    """
    logn = class_counts.log()
    span = logn.max() - logn.min()
    if span <= 0:
        return torch.zeros_like(logn)
    return (logn.max() - logn) / span


@LOSSES.register("agcl")
class AGCLLoss(nn.Module):
    """Asymmetric Gaussian clouded logit loss (A-GCL) on cosine logits in [-1, 1]."""

    def __init__(
        self,
        class_counts: Sequence[int] | np.ndarray | torch.Tensor,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        margin: float = 0.1,
        scale: float = 20.0,
        noise_mul: float = 0.5,
        label_smoothing: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if gamma_pos < 0 or gamma_neg < 0:
            raise ValueError(f"gamma_pos and gamma_neg must be >= 0, got {gamma_pos}, {gamma_neg}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if noise_mul < 0 or scale <= 0:
            raise ValueError(f"noise_mul must be >= 0 and scale > 0, got {noise_mul}, {scale}")
        self.register_buffer("class_counts", _counts_tensor(class_counts))
        self.register_buffer("beta", noise_strength(self.class_counts))
        self.gamma_pos, self.gamma_neg = float(gamma_pos), float(gamma_neg)
        self.margin, self.scale = float(margin), float(scale)
        self.noise_mul, self.label_smoothing = float(noise_mul), float(label_smoothing)
        self.generator = generator

    def clouded_logits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Steps 1-3: class-dependent Gaussian cloud, target margin, scale -> z (B, C)."""
        c = logits
        if self.noise_mul > 0:
            eps = torch.randn(c.shape, generator=self.generator, device=c.device, dtype=c.dtype) / 3.0
            c = c - self.noise_mul * eps.clamp(-1.0, 1.0).abs() * self.beta.to(c.dtype)
        margin = F.one_hot(targets, c.shape[1]).to(c.dtype) * self.margin
        return self.scale * (c - margin)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the focused, label-smoothed cross-entropy of the clouded logits."""
        num_classes = self.class_counts.numel()
        _check_inputs(logits, targets, num_classes)
        logits = logits.float()  # low-precision (autocast) logits: the loss is computed in fp32
        log_p = F.log_softmax(self.clouded_logits(logits, targets), dim=1)
        p = log_p.exp()
        onehot = F.one_hot(targets, num_classes).to(log_p.dtype)
        tiny = torch.finfo(p.dtype).tiny
        # The bases are clamped away from 0: d/dp (1-p)^0.5 is infinite at p_y = 1 (the released
        # code's NaN); through the clamp the gradient there is 0, and the weight itself 0.
        w_pos = (1 - p).clamp_min(tiny).pow(self.gamma_pos) if self.gamma_pos else torch.ones_like(p)
        w_neg = p.clamp_min(tiny).pow(self.gamma_neg) if self.gamma_neg else torch.ones_like(p)
        weight = onehot * w_pos + (1 - onehot) * w_neg
        target = (1 - self.label_smoothing) * onehot + self.label_smoothing / num_classes
        return -(target * weight * log_p).sum(dim=1).mean()


class _PriorShiftLoss(nn.Module):
    """Cross-entropy on ``scale * cos + tau * log(prior or counts)``; tau = 0 is plain CE."""

    tau: float = 0.0

    def __init__(
        self,
        class_counts: Sequence[int] | np.ndarray | torch.Tensor,
        scale: float = 20.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        counts = _counts_tensor(class_counts)
        self.register_buffer("class_counts", counts)
        self.register_buffer("log_prior", (counts / counts.sum()).log())
        self.scale = float(scale)
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the (prior-shifted) scaled logits."""
        _check_inputs(logits, targets, self.class_counts.numel())
        z = self.scale * logits.float() + self.tau * self.log_prior
        return F.cross_entropy(z, targets, label_smoothing=self.label_smoothing)


@LOSSES.register("cross_entropy")
class CrossEntropyLoss(_PriorShiftLoss):
    """Softmax cross-entropy on ``scale * cos`` (counts kept only for a uniform interface)."""

    tau = 0.0


@LOSSES.register("logit_adjusted")
class LogitAdjustedLoss(_PriorShiftLoss):
    """Logit-adjusted loss (Menon et al. 2021) with tau = 1: ``scale * cos + log prior``."""

    tau = 1.0


@LOSSES.register("balanced_softmax")
class BalancedSoftmaxLoss(_PriorShiftLoss):
    """Balanced Softmax (Ren et al. 2020): ``scale * cos + log n_j``.

    Adding log n_j or log(n_j / N) differs by a per-sample constant, which softmax ignores; it
    equals the logit-adjusted loss with tau = 1 and is registered under its own name for clarity.
    """

    tau = 1.0


def build_loss(name: str, class_counts: Sequence[int] | np.ndarray | torch.Tensor, **kwargs: Any) -> nn.Module:
    """Build the ``LOSSES`` entry ``name``; unknown names raise listing the valid ones."""
    return LOSSES.get(name)(class_counts, **kwargs)
