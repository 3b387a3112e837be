"""Training checkpoints: written atomically, read back with ``weights_only=True`` (tensors and
plain data only), trainable tensors restored by name. Used by :mod:`lpt_core.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lpt_core.fsutil import atomic_file

CHECKPOINT, BEST = "checkpoint.pt", "best.pt"


def to_torch(obj: Any) -> Any:
    """numpy arrays -> tensors, recursively, so checkpoints load with ``weights_only=True``."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        return {k: to_torch(v) for k, v in obj.items()}
    return obj


def load_named(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy ``tensors`` into the model's parameters of the same names (all must exist)."""
    params = dict(model.named_parameters())
    unknown = sorted(set(tensors) - set(params))
    if unknown:
        raise ValueError(f"checkpoint holds parameters the model lacks: {unknown[:8]}")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)


def save_checkpoint(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temporary file: a kill never leaves a half-written checkpoint."""
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> Any:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)
