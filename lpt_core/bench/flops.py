"""The compute ceiling of a device: dense matmul FLOP/s, and ceilings for a model.

A model's images/s ceiling on a device is ``matmul FLOP/s / model FLOPs per image``: no real
forward pass can beat a square GEMM of the same precision, so measured throughput divided by
that ceiling says how much of the machine the evaluation path uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from lpt_core.bench.timing import time_interleaved


@dataclass(frozen=True)
class MatmulCeiling:
    """Measured dense-matmul throughput of one (device, dtype, size)."""

    device: str
    dtype: str
    n: int
    seconds: float
    flops_per_s: float


def _sync_for(device: str):
    if device.startswith("cuda"):
        import torch

        return lambda: torch.cuda.synchronize(device)
    return None


def matmul_ceiling(device: str = "cpu", dtype: str = "float32", n: int = 2048, repeats: int = 5,
                   warmup: int = 2, seed: int = 0) -> MatmulCeiling:
    """Median FLOP/s of an ``n x n @ n x n`` matmul (2 n^3 FLOPs) in ``dtype`` on ``device``."""
    import torch

    if n < 1:
        raise ValueError(f"matmul size must be >= 1, got {n}")
    try:
        tdtype = getattr(torch, dtype)
    except AttributeError:
        raise ValueError(f"unknown torch dtype {dtype!r} (e.g. 'float32', 'bfloat16')") from None
    gen = torch.Generator(device="cpu").manual_seed(seed)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=tdtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=tdtype)
    out = torch.empty(n, n, device=device, dtype=tdtype)
    stats = time_interleaved({"mm": lambda: torch.mm(a, b, out=out)}, repeats=repeats, warmup=warmup,
                             sync=_sync_for(device))["mm"]
    return MatmulCeiling(device, dtype, n, stats.median_s, 2.0 * n**3 / stats.median_s)


def images_per_s_ceiling(flops_per_s: float, flops_per_image: float) -> float:
    """The images/s no implementation can exceed at ``flops_per_s`` for a model of ``flops_per_image``."""
    if flops_per_image <= 0:
        raise ValueError(f"flops_per_image must be positive, got {flops_per_image}")
    return flops_per_s / flops_per_image
