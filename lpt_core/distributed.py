"""Multi-process training support for LPT (Dong et al., ICLR 2023): torchrun + DDP.

A run started by ``torchrun --nproc_per_node N -m lpt_core.cli train ...`` gets one process per
device; :func:`init_from_env` reads torchrun's environment and joins the process group (nccl on
GPU, gloo on CPU). Every rank draws the same *global* batch from identically seeded samplers
and takes its contiguous slice, so an N-rank run computes the single-process gradient (DDP
averages the per-rank mean losses of equal slices). Metrics are reduced across ranks: sums and
counts with ``all_reduce``, evaluation logits with ``all_gather``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and artifacts."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def resolve_device(device: str | torch.device | None) -> str:
    """"auto"/None -> "cuda" when available else "cpu"; otherwise the device string, checked."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = str(device)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return name


def single_process(device: str | torch.device | None = "auto") -> DistContext:
    """The context of a plain one-process run."""
    return DistContext(device=resolve_device(device))


def init_from_env(device: str | None = "auto") -> DistContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return single_process(device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    base = resolve_device(device)
    if base.startswith("cuda"):
        torch.cuda.set_device(local)
        base, backend = f"cuda:{local}", "nccl"
    else:
        backend = "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local, device=base)


def shutdown() -> None:
    """Leave the process group if this process joined one."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def wrap(module: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel around ``module`` in a multi-process run; ``module`` itself otherwise."""
    if not ctx.distributed:
        return module
    ids = [torch.device(ctx.device).index] if ctx.device.startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


def row_slice(n: int, ctx: DistContext) -> slice:
    """This rank's contiguous share of ``n`` rows (evaluation sharding; sizes differ by <= 1)."""
    bounds = np.linspace(0, n, ctx.world_size + 1).round().astype(int)
    return slice(int(bounds[ctx.rank]), int(bounds[ctx.rank + 1]))


def all_reduce_sums(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Sum each value over all ranks (loss sums, sample counts, correct counts)."""
    if not ctx.distributed:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device(ctx))
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return dict(zip(keys, t.tolist()))


def all_gather_rows(local: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate every rank's rows in rank order (ranks may hold different row counts)."""
    if not ctx.distributed:
        return local
    dev = _comm_device(ctx)
    size = torch.tensor([local.shape[0]], device=dev)
    sizes = [torch.zeros_like(size) for _ in range(ctx.world_size)]
    tdist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local.to(dev)
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    tdist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).to(local.device)


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in one process)."""
    if ctx.distributed:
        tdist.barrier()


def _comm_device(ctx: DistContext) -> str:
    """nccl needs CUDA tensors; gloo works on CPU tensors."""
    return ctx.device if ctx.device.startswith("cuda") else "cpu"
