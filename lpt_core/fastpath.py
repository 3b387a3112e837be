"""The device side of evaluation (LPT, Dong et al., ICLR 2023): getting uint8 batches onto the
device and the forward through ``torch.compile`` where the caller opted in.

- :func:`stage_images` copies a whole shift batch to the device once (pinned, non-blocking); the
  result is still a numpy array (the host images) that carries the device copy, so every
  evaluation of that batch (each prompt set of a night) reads it from device memory;
- :func:`device_chunks` yields the uint8 chunks of an array on the device: slices of the staged
  copy, or, for host arrays on CUDA, two reusable pinned buffers filled by a background thread
  while the device works on the previous chunk (host reads overlap device work);
- :func:`enable_compile` marks a model so that :func:`forward_fn` runs it through one shared
  ``torch.compile`` graph (the model is an argument, so prompt sets of the same architecture
  reuse the graph instead of compiling once each); the last partial chunk is padded to the
  batch size, so a night compiles once per shape.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

COMPILE_ATTR = "lpt_compile"
Outputs = tuple[torch.Tensor, ...]


class StagedImages(np.ndarray):
    """Host uint8 images (N, H, W, 3) with their copy on a device (``device_tensor``)."""

    device_tensor: torch.Tensor | None

    def __array_finalize__(self, obj: object) -> None:
        # views and slices drop the device copy: only the whole array matches it row for row
        self.device_tensor = None


def stage_images(images: np.ndarray, device: str | torch.device, chunk: int = 4096) -> np.ndarray:
    """``images`` with a device copy attached (CUDA only; other devices get ``images`` back).

    The copy goes through a pinned buffer of ``chunk`` images at a time, non-blocking.
    """
    device = torch.device(device)
    if device.type != "cuda" or len(images) == 0:
        return images
    out = torch.empty(images.shape, dtype=torch.uint8, device=device)
    for start, part in _pinned_parts(images, chunk, device):
        out[start : start + len(part)].copy_(part, non_blocking=True)
    staged = np.asarray(images).view(StagedImages)
    staged.device_tensor = out
    return staged


def device_chunks(images: np.ndarray, batch_size: int, device: str | torch.device) -> Iterator[torch.Tensor]:
    """The uint8 (B, H, W, 3) chunks of ``images`` on ``device``, in order."""
    device = torch.device(device)
    staged = getattr(images, "device_tensor", None)
    if staged is not None and staged.device == _normalised(device):
        for start in range(0, len(images), batch_size):
            yield staged[start : start + batch_size]
        return
    if device.type == "cuda":
        for _, part in _pinned_parts(images, batch_size, device):
            yield part.to(device, non_blocking=True)
        return
    for start in range(0, len(images), batch_size):  # writable copy: a mmap'd batch is read-only
        part = torch.from_numpy(np.array(images[start : start + batch_size], order="C"))
        yield part if device.type == "cpu" else part.to(device)


def _normalised(device: torch.device) -> torch.device:
    """``cuda`` -> ``cuda:<current>`` so that it compares equal to a tensor's device."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _pinned_parts(images: np.ndarray, size: int, device: torch.device) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, pinned host chunk) pairs from two reusable pinned buffers.

    A background thread fills the next buffer (reading ``images``: a memory map's page faults
    happen there) while the caller's copy of the current one runs; a buffer is refilled only
    after the copy that read it has finished (a CUDA event recorded after the caller's use).
    """
    n = len(images)
    starts = list(range(0, n, size))
    if not starts:
        return
    width = min(size, n)
    bufs = [torch.empty((width, *images.shape[1:]), dtype=torch.uint8).pin_memory() for _ in range(2)]
    done: list[torch.cuda.Event | None] = [None, None]

    def fill(k: int, start: int) -> torch.Tensor:
        if done[k] is not None:
            done[k].synchronize()
        rows = min(size, n - start)
        np.copyto(bufs[k].numpy()[:rows], images[start : start + rows])
        return bufs[k][:rows]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpt-h2d") as pool:
        pending = pool.submit(fill, 0, 0)
        for i, start in enumerate(starts):
            part = pending.result()
            if i + 1 < len(starts):
                pending = pool.submit(fill, (i + 1) % 2, starts[i + 1])
            yield start, part
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(device))
            done[i % 2] = event
    torch.cuda.current_stream(device).synchronize()  # the last copies read the buffers


# ----- compiled forward ----------------------------------------------------------------------

_COMPILED: dict[str, Callable[..., Outputs]] = {}
_COMPILE_LOCK = threading.Lock()
#: seconds spent in first calls of compiled graphs in this process (compilation), per kind
COMPILE_SECONDS: dict[str, float] = {}


def enable_compile(model: nn.Module, on: bool = True) -> nn.Module:
    """Mark ``model`` so that evaluation runs it through the shared compiled forward; returns it."""
    setattr(model, COMPILE_ATTR, bool(on))
    return model


def compile_enabled(model: nn.Module) -> bool:
    """Whether :func:`enable_compile` marked ``model``."""
    return bool(getattr(model, COMPILE_ATTR, False))


def _logits(model: nn.Module, x: torch.Tensor) -> Outputs:
    return (model(x),)


def _with_selection(model: nn.Module, x: torch.Tensor) -> Outputs:
    logits, selection = model.forward_with_selection(x)
    if selection is None:
        return (logits,)
    return logits, selection.indices, selection.similarity


KINDS: dict[str, Callable[[nn.Module, torch.Tensor], Outputs]] = {"logits": _logits, "selection": _with_selection}


def forward_fn(model: nn.Module, kind: str) -> Callable[[torch.Tensor], Outputs]:
    """``x -> outputs`` of ``kind`` ("logits", or "selection": logits plus LPT's chosen prompts
    and key cosines when the model has ``forward_with_selection``), compiled when enabled."""
    if kind not in KINDS:
        raise ValueError(f"unknown forward kind {kind!r}; valid: {sorted(KINDS)}")
    if kind == "selection" and not hasattr(model, "forward_with_selection"):
        kind = "logits"
    eager = KINDS[kind]
    if not compile_enabled(model):
        return lambda x: eager(model, x)
    with _COMPILE_LOCK:
        if kind not in _COMPILED:
            _COMPILED[kind] = torch.compile(eager, dynamic=False)
        compiled = _COMPILED[kind]
    return lambda x: _timed_first_call(kind, compiled, model, x)


_SHAPES_SEEN: set[tuple] = set()


def _timed_first_call(kind: str, compiled: Callable[..., Outputs], model: nn.Module, x: torch.Tensor) -> Outputs:
    """Run ``compiled``; the first call per (kind, model class, shape, dtype) is timed as compilation."""
    key = (kind, type(model).__name__, tuple(x.shape), x.dtype, str(x.device), torch.is_autocast_enabled())
    if key in _SHAPES_SEEN:
        return compiled(model, x)
    start = time.perf_counter()
    out = compiled(model, x)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    COMPILE_SECONDS[kind] = COMPILE_SECONDS.get(kind, 0.0) + time.perf_counter() - start
    _SHAPES_SEEN.add(key)
    return out


def pad_to(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` with zero rows appended up to ``rows`` (a compiled graph sees one shape per night)."""
    if len(x) >= rows:
        return x
    return torch.cat([x, x.new_zeros((rows - len(x), *x.shape[1:]))])
