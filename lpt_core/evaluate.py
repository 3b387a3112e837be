"""Evaluation of trained classifiers (LPT, Dong et al., ICLR 2023, and its baselines) on clean or
shifted image arrays, producing the project's result file (docs/ARCHITECTURE.md, "Result file").

Images are uint8 (N, H, W, 3); they are preprocessed in batches on the model's device with the
backbone's own data config (resize to S * 256 / 224, centre crop S), no per-image Python.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from lpt_core.data.store import check_images
from lpt_core.data.transforms import BatchPreprocessor
from lpt_core.metrics import classification_metrics
from lpt_core.results import (  # noqa: F401  (re-exported: the result-file API)
    RESULT_SCHEMA,
    EvalResult,
    clean_shift_meta,
    model_block,
    shift_block,
)

if TYPE_CHECKING:  # the numpy/scipy monitoring package is imported on first use of predict_outputs
    from lpt_core.monitoring.outputs import ModelOutputs

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
    cols = _run_batches(model, images_uint8, "logits", batch_size=batch_size, device=device, amp=amp)
    logits = cols[0] if cols else torch.zeros((0, int(getattr(model, "num_classes", 0))))
    return logits.numpy() if as_numpy else logits


def predict_outputs(
    model: nn.Module,
    images_uint8: np.ndarray,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    amp: str = "auto",
) -> ModelOutputs:
    """Logits and, for LPT in phase 2, the selected group prompts and their key cosines, in the
    same forward pass as :func:`predict` (logits identical to it); other methods give None."""
    from lpt_core.monitoring.outputs import ModelOutputs

    if len(images_uint8) == 0:
        raise ValueError("predict_outputs needs at least one image, got an empty array")
    cols = _run_batches(model, images_uint8, "selection", batch_size=batch_size, device=device, amp=amp)
    if len(cols) == 1:
        return ModelOutputs(cols[0].numpy())
    return ModelOutputs(cols[0].numpy(), cols[1].numpy(), cols[2].numpy())


def _run_batches(
    model: nn.Module,
    images_uint8: np.ndarray,
    kind: str,
    *,
    batch_size: int,
    device: str | torch.device,
    amp: str,
) -> list[torch.Tensor]:
    """The forward of ``kind`` (:func:`lpt_core.fastpath.forward_fn`) on each preprocessed batch in
    inference mode; per output, one CPU tensor over all images (floats as float32), [] for none.

    uint8 chunks reach the device through :func:`lpt_core.fastpath.device_chunks` (a staged
    batch is already there; host arrays go through pinned buffers filled ahead of the device);
    outputs stay on the device until the end, so no chunk waits for the previous one's copy back.
    """
    from lpt_core.fastpath import compile_enabled, device_chunks, forward_fn, pad_to

    check_images(np.asarray(images_uint8[:1]) if len(images_uint8) else np.zeros((0, 1, 1, 3), np.uint8), "images")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pre = BatchPreprocessor.from_data_config(model.data_config(), train=False)
    for name in ("_mean", "_std"):  # moved to the device once: a per-batch pageable copy would stall the queue
        if isinstance(getattr(pre, name, None), torch.Tensor):
            setattr(pre, name, getattr(pre, name).to(device))
    forward, pad = forward_fn(model, kind), compile_enabled(model)
    was_training = model.training
    model.eval()
    cols: list[list[torch.Tensor]] = []
    try:
        with torch.inference_mode(), autocast(device, amp):
            for chunk in device_chunks(images_uint8, batch_size, device):
                x = pre(chunk)
                outs = forward(pad_to(x, batch_size) if pad else x)
                cols = cols or [[] for _ in outs]
                for col, out in zip(cols, outs, strict=True):  # every batch gives the same outputs
                    col.append(out[: len(x)])
    finally:
        model.train(was_training)
    return [_on_host(col) for col in cols]


def _on_host(chunks: list[torch.Tensor]) -> torch.Tensor:
    """The chunks concatenated on the CPU (floating outputs as float32)."""
    out = torch.cat(chunks)
    return (out.float() if out.is_floating_point() else out).cpu()


@dataclass(frozen=True)
class EvalConfig:
    """How every evaluation runs (the pipeline, ``lpt evaluate`` and the nightly job share it).

    ``device`` "auto" picks CUDA when present; ``amp`` "auto" is bf16 autocast on CUDA and fp32
    elsewhere ("off": fp32 everywhere, as the released evaluation); ``few_includes_20`` None takes
    the artifact's shot-group rule (its meta ``shot_groups``; the common few < 20 when absent).
    """

    device: str = "auto"
    amp: str = "auto"
    batch_size: int = 256
    few_includes_20: bool | None = None

    def __post_init__(self) -> None:
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"evaluation amp={self.amp!r}; expected 'auto', 'bf16' or 'off'")
        if self.batch_size < 1:
            raise ValueError(f"evaluation batch_size must be >= 1, got {self.batch_size}")

    def resolved_device(self) -> str:
        """The concrete torch device ("cuda" when auto and available, else "cpu")."""
        from lpt_core.distributed import resolve_device

        return resolve_device(self.device)


@dataclass
class LoadedArtifact:
    """An artifact loaded for evaluation: the model on its device and what each result needs."""

    path: Path
    model: nn.Module
    meta: dict[str, Any]
    info: dict[str, Any]  # the result's "model" block
    class_counts: np.ndarray
    logit_scale: float
    few_includes_20: bool
    device: str
    pooling: str = "class_mean"  # how group accuracy pools (lpt_core.metrics.GROUP_POOLINGS)
    calibration: Any = None  # lpt_core.monitoring.Calibration, when the artifact carries one


def load_for_evaluation(
    artifact_dir: str | Path, cfg: EvalConfig | None = None, *, backbone: nn.Module | None = None,
    backbone_weights: str | Path | None = None, model_name: str | None = None,
) -> LoadedArtifact:  # fmt: skip
    """Verify and load an artifact once, for any number of :func:`evaluate_loaded` calls."""
    from lpt_core.artifacts import artifact_sha256, load_artifact, load_calibration

    cfg = cfg or EvalConfig()
    path = Path(artifact_dir)
    device = cfg.resolved_device()
    sha = artifact_sha256(path)
    model, meta = load_artifact(path, backbone=backbone, backbone_weights=backbone_weights, device=device)
    rule = dict(meta.get("group_rule") or meta.get("shot_groups") or {})  # "shot_groups": early artifacts
    few = cfg.few_includes_20 if cfg.few_includes_20 is not None else bool(rule.get("few_includes_20", False))
    return LoadedArtifact(
        path=path, model=model, meta=meta, info=model_block(meta, path, sha, model_name),
        class_counts=np.asarray(meta["class_counts"], dtype=np.int64),
        logit_scale=float(meta.get("logit_scale", DEFAULT_LOGIT_SCALE)), few_includes_20=few, device=device,
        pooling=str(rule.get("pooling", "class_mean")), calibration=load_calibration(path),
    )


def evaluate_loaded(
    loaded: LoadedArtifact, images: np.ndarray, labels: np.ndarray | None, cfg: EvalConfig | None = None, *,
    shift_meta: dict[str, Any] | None = None, seed: int = 0,
) -> EvalResult:  # fmt: skip
    """Evaluate a loaded artifact on uint8 ``images``; see :func:`evaluate_arrays` (its calibration,
    when it has one, adds the label-free monitoring block)."""
    cfg = cfg or EvalConfig()
    return evaluate_arrays(
        loaded.model, images, labels, loaded.class_counts, cfg=replace(cfg, device=loaded.device),
        model_info=loaded.info, shift_meta=shift_meta, logit_scale=loaded.logit_scale,
        few_includes_20=loaded.few_includes_20, pooling=loaded.pooling, calibration=loaded.calibration, seed=seed,
    )


def evaluate_artifact(
    artifact_dir: str | Path, images: np.ndarray, labels: np.ndarray | None, cfg: EvalConfig | None = None, *,
    backbone: nn.Module | None = None, backbone_weights: str | Path | None = None,
    shift_meta: dict[str, Any] | None = None, model_name: str | None = None,
) -> EvalResult:  # fmt: skip
    """Load an artifact (``lpt_core.artifacts``) and evaluate it; the model block comes from its meta."""
    loaded = load_for_evaluation(artifact_dir, cfg, backbone=backbone, backbone_weights=backbone_weights,
                                 model_name=model_name)  # fmt: skip
    return evaluate_loaded(loaded, images, labels, cfg, shift_meta=shift_meta)


def evaluate_arrays(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray | None,
    class_counts: np.ndarray,
    *,
    cfg: EvalConfig | None = None,
    model_info: dict[str, Any] | None = None,
    shift_meta: dict[str, Any] | None = None,
    logit_scale: float = DEFAULT_LOGIT_SCALE,
    few_includes_20: bool = False,
    pooling: str = "class_mean",
    calibration: Any = None,
    seed: int = 0,
) -> EvalResult:
    """Predict ``images`` in one forward pass and compute the result file's content.

    ``labels``: one per image (-1 for an image without a label), or None for an unlabeled batch;
    the measured metrics cover the labelled images (none for an unlabeled batch). With a
    ``calibration`` (:mod:`lpt_core.monitoring`) the result also holds the label-free estimates
    and shift tests of every image. ``model_info`` is the result's "model" block,
    ``shift_meta`` a shift batch's ``batch.json`` (default: a clean, unnamed split); ``run`` holds
    the timing and device.
    """
    cfg = cfg or EvalConfig()
    device = cfg.resolved_device()
    check_images(np.asarray(images[:1]), "images")
    labels = _check_label_array(labels, len(images))
    shift = shift_block(shift_meta, images, labels if labels is not None else np.zeros(len(images)))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    outputs = predict_outputs(model, images, batch_size=cfg.batch_size, device=device, amp=cfg.amp)
    seconds = time.perf_counter() - t0
    known = np.zeros(len(images), bool) if labels is None else labels >= 0
    scores: dict[str, Any] = {"metrics": [], "per_class": {}}
    if known.any():
        scores = classification_metrics(outputs.logits[known], labels[known], class_counts, logit_scale=logit_scale,
                                        few_includes_20=few_includes_20, seed=seed, pooling=pooling)  # fmt: skip
    monitoring = None
    if calibration is not None:
        from lpt_core.monitoring import monitor_batch

        monitoring = monitor_batch(calibration, outputs, labels=labels).to_dict()
    run = {"eval_seconds": seconds, "images_per_second": len(images) / seconds if seconds > 0 else 0.0,
           "device": _device_name(device), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    label_info = {"n_images": len(images), "n_labeled": int(known.sum()),
                  "hash": (shift_meta or {}).get("labels_hash")}  # fmt: skip
    return EvalResult(model=dict(model_info or {}), shift=shift, metrics=scores["metrics"],
                      per_class=scores["per_class"], run=run, labels=label_info, monitoring=monitoring)  # fmt: skip


def _check_label_array(labels: np.ndarray | None, n: int) -> np.ndarray | None:
    """``labels`` as int64 (N,) (-1 allowed: no label), or None; refuses a length mismatch or an empty batch."""
    if n == 0:
        raise ValueError("cannot evaluate an empty batch (0 images)")
    if labels is None:
        return None
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"need one label per image (-1: no label): {n} images, {labels.shape[0]} labels")
    return labels


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device
