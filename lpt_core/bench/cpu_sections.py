"""The sections of the CPU suite (registered into ``lpt_core.bench.cpu.CPU_SECTIONS``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lpt_core.bench.cpu import measured_ceiling, profile, section
from lpt_core.bench.models import INFERENCE_VARIANTS, TINY, BenchBackbone, build_variants, quickstart_backbone
from lpt_core.bench.report import BenchRow, error_row
from lpt_core.bench.suite import BenchContext
from lpt_core.bench.timing import ratio, time_interleaved

MIB = 2.0**20
#: the trained methods whose inference compute each variant stands for
METHOD_OF = {"plain": "linear / full_ft", "phase1": "vpt / LPT phase 1", "lpt_reuse": "lpt (phase 2)"}


@section("ceiling")
def ceiling(ctx: BenchContext) -> list[BenchRow]:
    """Dense fp32 matmul FLOP/s: the ceiling the throughput section compares against."""
    n = profile(ctx).matmul_n
    return [BenchRow("matmul ceiling", f"fp32 matmul {n}x{n}", measured_ceiling(ctx) / 1e9, "GFLOP/s",
                     f"median of {profile(ctx).repeats}, torch threads {torch.get_num_threads()}",
                     ctx.command_for("ceiling"))]


@section("flops")
def flops(ctx: BenchContext) -> list[BenchRow]:
    """Inference FLOPs per image of plain / phase-1 / LPT naive / LPT reuse, and their ratios."""
    from lpt_core.bench.costs import flops_per_image

    spec = profile(ctx).flops_model
    f = flops_per_image(spec, INFERENCE_VARIANTS)
    cmd, sec = ctx.command_for("flops"), f"FLOPs per image, {spec.label}, K={spec.group_start}"
    rows = [BenchRow(sec, name, f[name] / 1e9, "GFLOP", "torch.utils.flop_counter, 2 FLOPs per MAC", cmd)
            for name in INFERENCE_VARIANTS]
    for num, den, note in (("phase1", "plain", ""), ("lpt_naive", "plain", "released code: ~2.1x"),
                           ("lpt_reuse", "plain", "target <= 1.6x"), ("lpt_reuse", "lpt_naive", "")):
        rows.append(BenchRow(sec, f"{num} / {den}", f[num] / f[den], "x", note, cmd))
    return rows


@section("walltime")
def walltime(ctx: BenchContext) -> list[BenchRow]:
    """Interleaved medians: inference of the four variants and a phase-2 / full-FT training step."""
    from lpt_core.bench.costs import inference_candidates, train_candidates

    p = profile(ctx)
    spec, b, cmd = p.timing_model, p.timing_batch, ctx.command_for("walltime")
    gen = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(b, 3, spec.img_size, spec.img_size, generator=gen)
    inf = time_interleaved(inference_candidates(build_variants(spec, INFERENCE_VARIANTS, seed=ctx.seed), x),
                           repeats=p.repeats, warmup=1)
    sec = f"wall time, inference, {spec.label}, batch {b}"
    rows = [BenchRow(sec, n, s.median_s * 1e3, "ms/batch", f"median of {s.repeats}, spread {s.spread:.0%}", cmd)
            for n, s in inf.items()]
    rows += [BenchRow(sec, f"{a} / {c}", ratio(inf, a, c), "x", "same run, interleaved", cmd)
             for a, c in (("lpt_reuse", "lpt_naive"), ("lpt_reuse", "plain"), ("phase1", "plain"))]
    tr = time_interleaved(train_candidates(spec, b, seed=ctx.seed), repeats=p.repeats, warmup=1)
    sec = f"wall time, training step, {spec.label}, dual batch {b}+{b}"
    rows += [BenchRow(sec, n, s.median_s * 1e3, "ms/step", f"median of {s.repeats}, spread {s.spread:.0%}; "
                      + ("LPT phase 2" if n.startswith("lpt") else "full fine-tuning"), cmd) for n, s in tr.items()]
    rows += [BenchRow(sec, f"{a} / {c}", ratio(tr, a, c), "x", "same run, interleaved", cmd)
             for a, c in (("lpt_reuse", "lpt_naive"), ("lpt_reuse", "full_ft"))]
    return rows


def _quickstart(ctx: BenchContext) -> BenchBackbone:
    if ctx.quick:
        return TINY
    from lpt_core.config import read_params

    params = Path("params.yaml")
    return quickstart_backbone(read_params(params) if params.is_file() else None)


@section("throughput")
def throughput(ctx: BenchContext) -> list[BenchRow]:
    """Images/s of quickstart-size models, uint8 in, vs the matmul ceiling of this run."""
    from lpt_core.bench.costs import flops_per_image
    from lpt_core.bench.data import synthetic_images
    from lpt_core.bench.evalpath import eval_runner, make_preprocessor, model_only_runner

    p, spec, cmd = profile(ctx), _quickstart(ctx), ctx.command_for("throughput")
    names = ("plain", "phase1", "lpt_reuse")
    models = build_variants(spec, names, seed=ctx.seed)
    images = synthetic_images(p.eval_images, 32, seed=ctx.seed)
    x = make_preprocessor(models["plain"])(torch.from_numpy(images[: p.eval_batch]))
    cands = {f"{n}|data": eval_runner(n, m, images, p.eval_batch) for n, m in models.items()}
    cands |= {f"{n}|model": model_only_runner(n, m, x) for n, m in models.items()}
    stats = time_interleaved(cands, repeats=p.repeats, warmup=1)
    f, ceil = flops_per_image(spec, names), measured_ceiling(ctx)
    sec = f"evaluation throughput, {spec.label}, fp32, batch {p.eval_batch}"
    rows = []
    for n in names:
        with_data = p.eval_images / stats[f"{n}|data"].median_s
        model_only = p.eval_batch / stats[f"{n}|model"].median_s
        top = ceil / f[n]
        rows.append(BenchRow(sec, f"{n} ({METHOD_OF[n]})", with_data, "images/s",
                             f"{p.eval_images} uint8 32 px images incl. batched preprocessing; model only "
                             f"{model_only:.4g}/s; ceiling {top:.4g}/s ({f[n] / 1e6:.3g} MFLOP/image); "
                             f"{with_data / top:.1%} of ceiling", cmd))
    return rows


@section("memory")
def memory(ctx: BenchContext) -> list[BenchRow]:
    """Peak resident memory of an evaluation pass and of one training step per method, and the
    peak anonymous memory of preparing an image-folder dataset in memory vs streamed."""
    from lpt_core.bench.costs import train_candidates
    from lpt_core.bench.data import synthetic_images
    from lpt_core.bench.evalpath import eval_runner
    from lpt_core.bench.memory import peak_memory

    p, cmd, rows = profile(ctx), ctx.command_for("memory"), []
    spec = _quickstart(ctx)
    model = build_variants(spec, ("lpt_reuse",), seed=ctx.seed)["lpt_reuse"]
    run = eval_runner("lpt_reuse", model, synthetic_images(p.eval_images, 32, seed=ctx.seed), p.eval_batch)
    run()  # warm-up: first-call allocations are not the steady state
    m = peak_memory(run, "cpu")
    rows.append(BenchRow("peak memory", f"evaluation, lpt, {spec.label}", m.peak_bytes / MIB, "MiB",
                         f"{p.eval_images} images, batch {p.eval_batch}; +{m.delta_bytes / MIB:.1f} MiB over "
                         f"baseline; {m.method}", cmd))
    for name, step in train_candidates(p.timing_model, p.timing_batch, seed=ctx.seed,
                                       names=("lpt_reuse", "full_ft")).items():
        try:
            step()
            m = peak_memory(step, "cpu")
        except Exception as exc:  # noqa: BLE001 -- report and go on to the next method
            rows.append(error_row("peak memory", f"training step, {name}", "MiB", cmd, exc))
            continue
        rows.append(BenchRow("peak memory", f"training step, {name}, {p.timing_model.label}", m.peak_bytes / MIB,
                             "MiB", f"dual batch {p.timing_batch}+{p.timing_batch}; +{m.delta_bytes / MIB:.1f} MiB "
                             f"over baseline; {m.method}", cmd))
    from lpt_core.bench.prepmem import prepare_memory_rows

    return rows + prepare_memory_rows(ctx.quick, cmd, ctx.seed)


@section("corruptions")
def corruptions(ctx: BenchContext) -> list[BenchRow]:
    """Images/s of each of the 19 corruptions, batch-vectorised vs a per-image loop."""
    from lpt_core.bench.corruptions import FULL_SIZES, QUICK_SIZES, corruption_rows

    return corruption_rows(QUICK_SIZES if ctx.quick else FULL_SIZES, ctx.command_for("corruptions"),
                           seed=ctx.seed, where=f"CPU, {torch.get_num_threads()} threads")


@section("nightly")
def nightly(ctx: BenchContext) -> list[BenchRow]:
    """The nightly job through ``lpt scheduler run-now``: idle cost, per-pair cost, growth."""
    from lpt_core.bench.nightly import nightly_rows

    return nightly_rows(ctx.quick, ctx.command_for("nightly"), ctx.seed)


@section("nightload")
def nightload(ctx: BenchContext) -> list[BenchRow]:
    """A night of 50 models x 40 batches per store backend and executor; the per-pair fixed cost
    before and after grouping (``lpt_core.bench.nightload``)."""
    from lpt_core.bench.nightload import PG_ENV, load_rows

    command = ctx.command_for("nightload")
    if os.environ.get(PG_ENV):
        command = f"{PG_ENV}={os.environ[PG_ENV]} {command}"
    return load_rows(ctx.quick, command, ctx.seed)
