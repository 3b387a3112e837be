"""What the monitor reads from one forward pass, and the confidence scores derived from it.

``ModelOutputs`` holds a model's cosine logits and, for LPT (Dong et al., ICLR 2023), the top-k
group prompts its query selected and the query-key cosines of those keys; it is produced by
``lpt_core.evaluate.predict_outputs`` and is plain numpy so that this package needs no torch.

Probabilities follow MONITORING_SPEC.md: p(x) = softmax(s * c(x) / T). The two scores are those
of ATC (Garg et al., ICLR 2022): the maximum softmax probability and the negative entropy
sum_j p_j log p_j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax

SCORES = ("max_conf", "neg_entropy")


@dataclass(frozen=True)
class ModelOutputs:
    """Logits float32 (N, C); for LPT also selected prompts int64 (N, k) and key cosines float32 (N, k)."""

    logits: np.ndarray
    selected: np.ndarray | None = None
    key_cosine: np.ndarray | None = None

    def __post_init__(self) -> None:
        logits = np.asarray(self.logits, dtype=np.float32)
        if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
            raise ValueError(f"logits must be (N > 0, C >= 2), got shape {logits.shape}")
        if not np.isfinite(logits).all():
            raise ValueError("logits contain NaN or infinite values")
        object.__setattr__(self, "logits", logits)
        if (self.selected is None) != (self.key_cosine is None):
            raise ValueError("selected and key_cosine must be given together (LPT) or both be None")
        if self.selected is None:
            return
        selected = np.asarray(self.selected)
        cosine = np.asarray(self.key_cosine, dtype=np.float32)
        if selected.ndim != 2 or selected.shape[0] != len(logits) or cosine.shape != selected.shape:
            raise ValueError(
                f"selected {selected.shape} and key_cosine {cosine.shape} must both be (N={len(logits)}, k)"
            )
        if not np.issubdtype(selected.dtype, np.integer) or selected.min() < 0:
            raise ValueError(f"selected must hold non-negative prompt indices, got dtype {selected.dtype}")
        object.__setattr__(self, "selected", selected.astype(np.int64, copy=False))
        object.__setattr__(self, "key_cosine", cosine)

    @property
    def num_images(self) -> int:
        """N, the number of images."""
        return int(self.logits.shape[0])

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return int(self.logits.shape[1])

    @property
    def has_selection(self) -> bool:
        """Whether prompt selections are present (LPT in phase 2)."""
        return self.selected is not None


def log_probabilities(logits: np.ndarray, logit_scale: float, temperature: float = 1.0) -> np.ndarray:
    """log softmax(s * c / T), float64 (N, C)."""
    if not (logit_scale > 0 and temperature > 0):
        raise ValueError(f"logit_scale and temperature must be > 0, got {logit_scale} and {temperature}")
    return log_softmax(np.asarray(logits, dtype=np.float64) * (logit_scale / temperature), axis=1)


def confidence_scores(log_probs: np.ndarray, probs: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-image ATC scores: {"max_conf": max_j p_j, "neg_entropy": sum_j p_j log p_j} (``probs``:
    exp(log_probs) when the caller already has it)."""
    probs = np.exp(log_probs) if probs is None else probs  # finite log_probs: p log p is never 0 * inf
    return {"max_conf": probs.max(axis=1), "neg_entropy": np.einsum("ij,ij->i", probs, log_probs)}
