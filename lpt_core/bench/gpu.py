"""The GPU suite (``lpt bench gpu``, ``scripts/gpu_check.sh``): LPT's costs on one H200.

LPT (Dong et al., ICLR 2023) at the paper's scale: ViT-B/16 @224 with random weights.
Sections: bf16 matmul ceiling; the fast evaluation path (uint8 batches staged once, a batch-size
sweep, LPT vs plain vs the ceiling, the host path, torch.compile with its compile time) and a
whole night (20 models x 10 batches of 10,000 images through one EvalWorker vs one pair);
plain / phase-1 / LPT-naive / LPT-reuse evaluation throughput
(bf16 autocast, inference_mode, channels_last, timm fused attention), model-only and with the
uint8 -> GPU preprocessing path; phase-2 and full fine-tuning step times (dual batch); CIFAR-C
generation on the host's CPU cores; the paper profile (a few ``fit`` steps and one 10,000-image
evaluation); last, the released-checkpoint path (write a random checkpoint in the authors'
layout, ``lpt import released`` it, evaluate a Places-LT-test-sized array fp32, 365 classes).
Runnable as ``python -m lpt_core.bench.gpu --out DIR`` with only torch, timm, numpy, scipy,
scikit-image and pandas installed; ``--quick --device cpu`` checks it end to end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lpt_core.bench.models import TINY, VIT_B16, BenchBackbone
from lpt_core.bench.report import BenchReport, machine_info, update_markdown, write_json
from lpt_core.bench.suite import BenchContext, log, run_sections
from lpt_core.registry import Registry

GPU_SECTIONS: Registry = Registry("gpu benchmark section")
GPU_ORDER: tuple[str, ...] = ("matmul", "fastpath", "night", "eval", "train", "paper", "corruptions", "released")


@dataclass(frozen=True)
class GpuProfile:
    """Model and sizes of one GPU run (full, or quick for a CPU check of the script)."""

    matmul_n: int
    model: BenchBackbone
    eval_batch: int
    eval_images: int  # uint8 images pushed through the data path per timed call
    train_batch: int  # per half of the dual batch
    repeats: int
    paper_steps: int  # fit() steps per phase in the paper profile
    paper_eval_images: int
    corruption_images: int
    released_images: int  # the released-checkpoint section's test array (Places-LT test: 36,500)
    fast_batches: tuple[int, ...] = (256, 512, 1024, 2048)  # the fast path's batch-size sweep
    night: tuple[int, int, int] = (20, 10, 10000)  # models, batches, images per batch
    compile: bool = True  # time torch.compile in the fast path


FULL = GpuProfile(8192, VIT_B16, 1024, 10240, 256, 5, 5, 10000, 1000, 36500)
QUICK = GpuProfile(256, TINY, 16, 64, 4, 1, 2, 64, 8, 64, fast_batches=(16, 32), night=(3, 2, 32))


def profile(ctx: BenchContext) -> GpuProfile:
    """The sizes for ``ctx`` (quick or full)."""
    return QUICK if ctx.quick else FULL


def sync_fn(device: str):  # noqa: ANN201 -- a zero-argument callable or None
    """``torch.cuda.synchronize`` for a CUDA device, else None."""
    if not device.startswith("cuda"):
        return None
    import torch

    return lambda: torch.cuda.synchronize(device)


def section(name: str):  # noqa: ANN201 -- decorator
    """Register a GPU section under ``name`` (must appear in ``GPU_ORDER``)."""
    if name not in GPU_ORDER:
        raise ValueError(f"section {name!r} is not in GPU_ORDER {GPU_ORDER}")
    return GPU_SECTIONS.register(name)


def run_gpu_suite(quick: bool = False, only: Sequence[str] | None = None, device: str = "cuda",
                  out_dir: str | Path | None = None, seed: int = 0) -> BenchReport:
    """Run the GPU suite section by section, rewriting ``out_dir``'s JSON/Markdown after each."""
    import torch

    import lpt_core.bench.gpu_sections  # noqa: F401 -- registers the sections

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but torch {torch.__version__} sees no CUDA device")
    command = "bash scripts/gpu_check.sh" if device.startswith("cuda") else f"lpt bench gpu --device {device}"
    ctx = BenchContext("gpu", quick, device, seed, command)
    names = list(only) if only else list(GPU_ORDER)
    for name in names:
        GPU_SECTIONS.get(name)
    report = BenchReport("gpu", machine_info())
    for name in names:
        run_sections(GPU_SECTIONS, GPU_ORDER, ctx, [name], report)
        if out_dir is not None:
            write_outputs(report, Path(out_dir))
    return report


def write_outputs(report: BenchReport, out_dir: Path) -> None:
    """``gpu_bench.json`` and ``gpu_bench.md`` in ``out_dir`` (safe to call after every section)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(report, out_dir / "gpu_bench.json")
    md = out_dir / "gpu_bench.md"
    md.unlink(missing_ok=True)
    update_markdown(md, report)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the GPU script: every section runs even if an earlier one failed."""
    parser = argparse.ArgumentParser(prog="python -m lpt_core.bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "bench_out"),
                        help="output directory (default: $OUT, else ./bench_out)")
    parser.add_argument("--quick", action="store_true", help="tiny ViT and sizes (checks the script runs)")
    parser.add_argument("--device", default="cuda", help="torch device (cpu to test the script here)")
    parser.add_argument("--only", default=None, help=f"comma-separated sections of {list(GPU_ORDER)}")
    args = parser.parse_args(argv)
    only = [s for s in args.only.split(",") if s] if args.only else None
    start = time.perf_counter()
    report = run_gpu_suite(args.quick, only, args.device, args.out)
    print(report.to_text(), flush=True)
    failed = [r for r in report.rows if r.error]
    log(f"done in {time.perf_counter() - start:.0f} s: {len(report.rows)} rows, {len(failed)} errors; "
        f"results in {args.out}/gpu_bench.json and gpu_bench.md")
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: the sections register into
    # ``lpt_core.bench.gpu.GPU_SECTIONS``, which is a different object from ``__main__``'s.
    from lpt_core.bench.gpu import main as _main

    sys.exit(_main())
