"""The CPU suite (``lpt bench cpu``): costs of LPT (Dong et al., ICLR 2023) on this machine.

Sections: matmul ceiling, FLOPs per image (ViT-B/16 @224), wall-time ratios (inference and a
phase-2 training step, interleaved medians), evaluation throughput of quickstart-size models
against the ceiling, peak memory, corruption generation throughput, the nightly job and the
nightly job at load (50 models x 40 batches, per backend and executor, before/after grouping).
``--quick`` swaps every model for a tiny ViT and every size for a handful: a harness check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lpt_core.bench.models import TINY, VIT_B16, VIT_S16, BenchBackbone
from lpt_core.bench.report import BenchReport
from lpt_core.bench.suite import BenchContext, run_sections
from lpt_core.registry import Registry

CPU_SECTIONS: Registry = Registry("cpu benchmark section")
CPU_ORDER: tuple[str, ...] = ("ceiling", "flops", "walltime", "throughput", "memory", "corruptions", "nightly",
                              "nightload")


@dataclass(frozen=True)
class CpuProfile:
    """Model and sizes of one CPU run (full or quick)."""

    matmul_n: int
    flops_model: BenchBackbone
    timing_model: BenchBackbone
    timing_batch: int
    repeats: int
    eval_images: int
    eval_batch: int


FULL = CpuProfile(2048, VIT_B16, VIT_S16, 8, 5, 1024, 256)
QUICK = CpuProfile(256, TINY, TINY, 4, 1, 64, 32)


def profile(ctx: BenchContext) -> CpuProfile:
    """The sizes for ``ctx`` (quick or full)."""
    return QUICK if ctx.quick else FULL


def section(name: str):  # noqa: ANN201 -- decorator
    """Register a CPU section under ``name`` (must appear in ``CPU_ORDER``)."""
    if name not in CPU_ORDER:
        raise ValueError(f"section {name!r} is not in CPU_ORDER {CPU_ORDER}")
    return CPU_SECTIONS.register(name)


def run_cpu_suite(quick: bool = False, only: Sequence[str] | None = None, seed: int = 0) -> BenchReport:
    """Run the CPU suite (all sections, or those in ``only``) and return its report."""
    import lpt_core.bench.cpu_sections  # noqa: F401 -- registers the sections

    ctx = BenchContext("cpu", quick, "cpu", seed, "lpt bench cpu")
    return run_sections(CPU_SECTIONS, CPU_ORDER, ctx, only)


def measured_ceiling(ctx: BenchContext) -> float:
    """fp32 matmul FLOP/s of this CPU, measured once per process (reused by several sections)."""
    if "ceiling" not in _CACHE:
        from lpt_core.bench.flops import matmul_ceiling

        p = profile(ctx)
        _CACHE["ceiling"] = matmul_ceiling("cpu", "float32", p.matmul_n, repeats=p.repeats, seed=ctx.seed).flops_per_s
    return _CACHE["ceiling"]


_CACHE: dict[str, float] = {}

