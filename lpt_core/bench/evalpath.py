"""Evaluation throughput with the data path included: uint8 NHWC -> batched preprocessing -> model.

The preprocessing is the project's own ``BatchPreprocessor`` (eval: resize, centre crop,
normalise, on the model's device); the forward runs under ``inference_mode``, optionally in a
reduced precision through autocast (the GPU suite uses bf16).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from lpt_core.bench.models import inference_fn


def make_preprocessor(model: nn.Module, channels_last: bool = False):  # noqa: ANN201 -- BatchPreprocessor
    """The eval-mode ``BatchPreprocessor`` for ``model``'s data config."""
    from lpt_core.data.transforms import BatchPreprocessor

    cfg = model.data_config()
    size = cfg["input_size"][-1] if isinstance(cfg["input_size"], (tuple, list)) else cfg["input_size"]
    return BatchPreprocessor(int(size), cfg["mean"], cfg["std"], train=False, channels_last=channels_last)


def _autocast(device: str, dtype: torch.dtype | None):  # noqa: ANN202
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def eval_runner(variant: str, model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int,
                device: str = "cpu", dtype: torch.dtype | None = None,
                channels_last: bool = False) -> Callable[[], int]:
    """A callable that predicts every image (uint8 NHWC, host or device) and returns the count.

    Each batch is copied to ``device`` (pinned, non-blocking when on the host and CUDA),
    preprocessed there and classified; the argmax stays on the device (no per-batch sync).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prep = make_preprocessor(model, channels_last)
    fn = inference_fn(variant, model.eval())
    host = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if device.startswith("cuda") and host.device.type == "cpu":
        host = host.pin_memory()

    def run() -> int:
        preds = []
        with torch.inference_mode(), _autocast(device, dtype):
            for start in range(0, len(host), batch_size):
                chunk = host[start : start + batch_size].to(device, non_blocking=True)
                preds.append(fn(prep(chunk)).argmax(dim=1))
        return int(torch.cat(preds).shape[0])

    return run


def model_only_runner(variant: str, model: nn.Module, x: torch.Tensor,
                      dtype: torch.dtype | None = None) -> Callable[[], object]:
    """A callable that runs the forward on an already preprocessed batch ``x`` (no data path)."""
    fn = inference_fn(variant, model.eval())
    device = str(x.device)

    def run() -> object:
        with torch.inference_mode(), _autocast(device, dtype):
            return fn(x)

    return run
