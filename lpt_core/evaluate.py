"""Evaluation of trained classifiers (LPT, Dong et al., ICLR 2023, and its baselines) on clean or
shifted image arrays, producing the project's result file (docs/ARCHITECTURE.md, "Result file").

Images are uint8 (N, H, W, 3); they are preprocessed in batches on the model's device with the
backbone's own data config (resize to S * 256 / 224, centre crop S), no per-image Python.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lpt_core.version import code_version
from lpt_core.data.store import array_hash, check_images
from lpt_core.data.transforms import BatchPreprocessor
from lpt_core.fsutil import atomic_file
from lpt_core.metrics import classification_metrics

RESULT_SCHEMA = "lpt-result/1"
DEFAULT_LOGIT_SCALE = 20.0  # s of every loss on cosine logits (lpt_core.losses)


def autocast(device: str | torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for amp="bf16", or "auto" on CUDA; a no-op context otherwise."""
    if amp not in ("auto", "bf16", "off"):
        raise ValueError(f"amp={amp!r}; expected 'auto', 'bf16' or 'off'")
    kind = torch.device(device).type
    enabled = amp == "bf16" or (amp == "auto" and kind == "cuda")
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=kind, dtype=torch.bfloat16)


def predict(
    model: nn.Module,
    images_uint8: np.ndarray,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    amp: str = "auto",
    as_numpy: bool = True,
) -> np.ndarray | torch.Tensor:
    """Logits (N, C) float32 of ``model`` (in inference mode) for uint8 (N, H, W, 3) images."""
    check_images(np.asarray(images_uint8[:1]) if len(images_uint8) else np.zeros((0, 1, 1, 3), np.uint8), "images")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pre = BatchPreprocessor.from_data_config(model.data_config(), train=False)
    was_training = model.training
    model.eval()
    outs = []
    pin = torch.device(device).type == "cuda"
    try:
        with torch.inference_mode(), autocast(device, amp):
            for start in range(0, len(images_uint8), batch_size):
                chunk = torch.from_numpy(np.array(images_uint8[start : start + batch_size], order="C"))  # writable copy
                chunk = chunk.pin_memory() if pin else chunk
                outs.append(model(pre(chunk.to(device, non_blocking=True))).float().cpu())
    finally:
        model.train(was_training)
    logits = torch.cat(outs) if outs else torch.zeros((0, int(getattr(model, "num_classes", 0))))
    return logits.numpy() if as_numpy else logits


@dataclass
class EvalResult:
    """One (model, shift set) evaluation in the result-file schema."""

    model: dict[str, Any]
    shift: dict[str, Any]
    metrics: list[dict[str, Any]]
    per_class: dict[str, Any]
    eval_seconds: float
    images_per_second: float
    device: str
    code_version: str = field(default_factory=lambda: code_version())
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        """The result file's JSON object."""
        return {
            "schema": RESULT_SCHEMA, "model": self.model, "shift": self.shift, "metrics": self.metrics,
            "per_class": self.per_class, "eval_seconds": self.eval_seconds,
            "images_per_second": self.images_per_second, "device": self.device,
            "code_version": self.code_version, "created_at": self.created_at,
        }

    def to_json(self) -> str:
        """The result file's text (indented JSON)."""
        return json.dumps(self.to_dict(), indent=2)

    def write(self, path: str | Path) -> Path:
        """Write the result file atomically (temp file + rename); returns the path."""
        path = Path(path)
        with atomic_file(path) as tmp:
            tmp.write_text(self.to_json())
        return path

    def metric(self, name: str, group: str = "overall") -> float:
        """The value of metric ``name`` for ``group``; raises if absent."""
        for row in self.metrics:
            if row["name"] == name and row["group"] == group:
                return float(row["value"])
        raise KeyError(f"no metric {name!r} for group {group!r} in this result")


def clean_shift_meta(images: np.ndarray, labels: np.ndarray, *, shift_id: str, dataset: str) -> dict[str, Any]:
    """The "shift" block for an unshifted split (kind clean, corruption none, severity 0)."""
    return {
        "id": shift_id, "kind": "clean", "dataset": dataset, "corruption": "none", "severity": 0,
        "size": int(len(labels)), "content_hash": array_hash(images, labels), "dvc_hash": None,
    }


def _shift_block(shift_meta: dict[str, Any] | None, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    if shift_meta is None:
        return clean_shift_meta(images, labels, shift_id="unnamed-clean", dataset="unknown")
    keys = ("id", "kind", "dataset", "corruption", "severity", "size", "content_hash")
    missing = [k for k in keys if k not in shift_meta]
    if missing:
        raise ValueError(f"shift metadata lacks {missing}; got keys {sorted(shift_meta)}")
    if int(shift_meta["size"]) != len(labels):
        raise ValueError(f"shift {shift_meta['id']!r} declares size {shift_meta['size']}, got {len(labels)} images")
    block = {k: shift_meta[k] for k in keys}
    block["severity"] = int(block["severity"])
    block["dvc_hash"] = shift_meta.get("dvc_hash")
    return block


def evaluate_arrays(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    class_counts: np.ndarray,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    amp: str = "auto",
    model_info: dict[str, Any] | None = None,
    shift_meta: dict[str, Any] | None = None,
    logit_scale: float = DEFAULT_LOGIT_SCALE,
    few_includes_20: bool = False,
    seed: int = 0,
) -> EvalResult:
    """Predict ``images`` and compute every metric of the result file.

    ``model_info`` is the result's "model" block (see :func:`evaluate_artifact`), ``shift_meta``
    a shift batch's ``batch.json`` (default: a clean, unnamed split).
    """
    labels = np.asarray(labels, dtype=np.int64)
    check_images(np.asarray(images[:1]), "images")
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(f"need as many labels as images (> 0): {len(images)} images, {len(labels)} labels")
    shift = _shift_block(shift_meta, images, labels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    logits = predict(model, images, batch_size=batch_size, device=device, amp=amp)
    seconds = time.perf_counter() - t0
    scores = classification_metrics(
        logits, labels, class_counts, logit_scale=logit_scale, few_includes_20=few_includes_20, seed=seed
    )
    return EvalResult(
        model=dict(model_info or {}), shift=shift, metrics=scores["metrics"], per_class=scores["per_class"],
        eval_seconds=seconds, images_per_second=len(labels) / seconds if seconds > 0 else 0.0,
        device=_device_name(device),
    )


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def evaluate_artifact(
    artifact_dir: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    device: str = "cpu",
    batch_size: int = 256,
    backbone_weights: str | Path | None = None,
    shift_meta: dict[str, Any] | None = None,
    model_name: str | None = None,
    amp: str = "auto",
) -> EvalResult:
    """Load an artifact (``lpt_core.artifacts``) and evaluate it; the model block comes from its meta."""
    from lpt_core.artifacts import artifact_sha256, load_artifact

    artifact_dir = Path(artifact_dir)
    model, meta = load_artifact(artifact_dir, backbone_weights=backbone_weights, device=device)
    counts = np.asarray(meta["class_counts"], dtype=np.int64)
    info = model_block(meta, artifact_dir, artifact_sha256(artifact_dir), model_name)
    scale = float(meta.get("logit_scale", DEFAULT_LOGIT_SCALE))
    return evaluate_arrays(
        model, images, labels, counts, batch_size=batch_size, device=device, amp=amp, model_info=info,
        shift_meta=shift_meta, logit_scale=scale,
    )


def model_block(meta: dict[str, Any], artifact_dir: Path, sha256: str, name: str | None) -> dict[str, Any]:
    """The result file's "model" block from an artifact's meta.json."""
    backbone = meta.get("backbone", {})
    counts = meta.get("param_counts", {})
    return {
        "name": name or meta.get("name") or artifact_dir.name,
        "method": meta["method"],
        "artifact": str(artifact_dir),
        "artifact_sha256": sha256,
        "backbone": backbone.get("name", "unknown") if isinstance(backbone, dict) else str(backbone),
        "backbone_fingerprint": backbone.get("fingerprint", "") if isinstance(backbone, dict) else "",
        "trainable_params": int(counts.get("trainable", 0)),
        "stored_params": int(counts.get("stored", 0)),
        "data_version": str(meta.get("data_version", "unknown")),
    }
