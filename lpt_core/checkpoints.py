"""Training checkpoints: written atomically, read back with ``weights_only=True`` (tensors and
plain data only), trainable tensors restored by name, and kept in a folder named by the run they
belong to, so a run resumes its own checkpoint and never another's. Used by :mod:`lpt_core.train`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lpt_core.fsutil import atomic_file

log = logging.getLogger(__name__)
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


# --- which run a checkpoint belongs to ----------------------------------------------------------

#: the modules whose code decides what a training run computes (part of every run key)
TRAINING_MODULES = ("lpt_core.train", "lpt_core.models")
RUN_FILE = "run.json"


def data_identity(data: Any) -> dict[str, str]:
    """Content hashes of the training and validation splits (recorded by prepare, else computed)."""
    hashes = dict((getattr(data, "meta", None) or {}).get("content_hashes") or {})
    if {"train", "val"} <= set(hashes):
        return {k: str(hashes[k]) for k in ("train", "val")}
    from lpt_core.data.store import array_hash

    return {k: array_hash(getattr(data, k).images, getattr(data, k).labels) for k in ("train", "val")}


def run_identity(model: nn.Module, data: Any, config: dict[str, Any], phase: str, world_size: int) -> dict[str, Any]:
    """What makes two training runs the same run: phase, config, method, backbone, data, code."""
    from lpt_core.deps import source_hash

    cfg = getattr(model, "cfg", None)
    return {
        "phase": phase, "config": config, "method": getattr(model, "method", type(model).__name__),
        "method_config": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else None,
        "backbone_fingerprint": getattr(model, "base_fingerprint", None), "data": data_identity(data),
        "world_size": int(world_size), "code": source_hash(TRAINING_MODULES),
    }  # fmt: skip


def run_key(model: nn.Module, identity: dict[str, Any]) -> str:
    """sha256 of ``identity`` and of the model's starting tensors (its initialisation, phase-1
    prompts and head for LPT phase 2, every weight for full fine-tuning)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    stored = getattr(model, "stored_state_dict", model.state_dict)()
    for name, tensor in sorted(stored.items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(name.encode() + repr((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def run_folder(root: str | Path, phase: str, key: str, identity: dict[str, Any]) -> Path:
    """The checkpoint folder of this run, ``root/<phase>-<key[:16]>``, with its ``run.json``.

    Checkpoints of other runs of the same phase under ``root`` (another recipe, other inputs,
    other code) can never be resumed by this run: they are removed, and the log says so.
    """
    root = Path(root)
    folder = root / f"{phase}-{key[:16]}"
    stale = [p for p in root.glob(f"{phase}-*") if p.is_dir() and p != folder]
    stale += [root / n for n in (CHECKPOINT, BEST) if (root / n).is_file()]  # pre-key layout
    for path in stale:
        log.warning("checkpoint %s belongs to another run (recipe, inputs or code changed): starting %s "
                    "fresh and removing it", path, phase)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / RUN_FILE).is_file():
        with atomic_file(folder / RUN_FILE) as tmp:
            tmp.write_text(json.dumps({"key": key, **identity}, indent=1, sort_keys=True, default=str))
    return folder
