"""The sections of the GPU suite (registered into ``lpt_core.bench.gpu.GPU_SECTIONS``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from lpt_core.bench.gpu import GpuProfile, profile, section, sync_fn
from lpt_core.bench.models import INFERENCE_VARIANTS, BenchBackbone, build_variants
from lpt_core.bench.report import BenchRow, error_row
from lpt_core.bench.suite import BenchContext
from lpt_core.bench.timing import ratio, time_interleaved

GIB = 2.0**30
_STATE: dict[str, float] = {}  # the matmul ceiling, for utilisation figures
BF16 = torch.bfloat16


@section("matmul")
def matmul(ctx: BenchContext) -> list[BenchRow]:
    """bf16 dense matmul FLOP/s (8192^3 on the GPU)."""
    from lpt_core.bench.flops import matmul_ceiling

    n = profile(ctx).matmul_n
    c = matmul_ceiling(ctx.device, "bfloat16", n, repeats=max(3, profile(ctx).repeats), warmup=3, seed=ctx.seed)
    _STATE["ceiling"] = c.flops_per_s
    return [BenchRow("matmul ceiling", f"bf16 matmul {n}^3", c.flops_per_s / 1e12, "TFLOP/s",
                     f"median {c.seconds * 1e3:.3g} ms", ctx.command_for("matmul"))]


def _ceiling(ctx: BenchContext) -> float:
    """The bf16 matmul ceiling of this run (the matmul section's, else measured now)."""
    if "ceiling" not in _STATE:
        matmul(ctx)
    return _STATE["ceiling"]


@section("fastpath")
def fastpath(ctx: BenchContext) -> list[BenchRow]:
    """LPT evaluation through the real path (``predict_outputs``) on a staged uint8 batch: batch
    sweep, vs plain and the ceiling (targets 60% and 1.5x), host path, torch.compile."""
    from lpt_core.bench.fastpath_bench import fastpath_rows

    p = profile(ctx)
    rows, best = fastpath_rows(p.model, ctx.device, p.eval_images, p.fast_batches, p.repeats, _ceiling(ctx),
                               sync_fn(ctx.device), ctx.command_for("fastpath"), ctx.seed, p.compile)  # fmt: skip
    _STATE["best_batch"] = float(best)
    return rows


@section("night")
def night(ctx: BenchContext) -> list[BenchRow]:
    """A whole night (models x batches x images) through one EvalWorker vs one pair (target 80%)."""
    from lpt_core.bench.fastpath_bench import night_rows

    p = profile(ctx)
    models, batches, images = p.night
    batch = int(_STATE.get("best_batch", p.eval_batch))
    return night_rows(p.model, ctx.device, models, batches, images, batch, sync_fn(ctx.device),
                      ctx.command_for("night"), ctx.seed)  # fmt: skip


def _fused_attn() -> str:
    try:
        from timm.layers import use_fused_attn

        return f"timm fused attention {'on' if use_fused_attn() else 'off'}"
    except ImportError:
        return "timm fused attention: unknown"


@section("eval")
def evaluation(ctx: BenchContext) -> list[BenchRow]:
    """Model-only images/s of the four variants (interleaved) and LPT with the uint8 data path."""
    from lpt_core.bench.costs import flops_per_image, inference_candidates

    p, dev, cmd = profile(ctx), ctx.device, ctx.command_for("eval")
    cl = dev.startswith("cuda")
    models = build_variants(p.model, INFERENCE_VARIANTS, dev, ctx.seed)
    if cl:  # only the patch-embedding conv cares; measured as the brief asks
        for m in models.values():
            m.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(p.eval_batch, 3, p.model.img_size, p.model.img_size, generator=gen).to(dev)
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    cands = inference_candidates(models, x)
    with torch.autocast(device_type=torch.device(dev).type, dtype=BF16):
        stats = time_interleaved(cands, repeats=p.repeats, warmup=2, sync=sync_fn(dev))
    sec = f"evaluation, {p.model.label}, bf16 autocast, batch {p.eval_batch}, model only"
    f = flops_per_image(p.model, INFERENCE_VARIANTS)
    rows = []
    for n, s in stats.items():
        ips = p.eval_batch / s.median_s
        util = f"; {f[n] * ips / _STATE['ceiling']:.0%} of bf16 matmul ceiling" if "ceiling" in _STATE else ""
        rows.append(BenchRow(sec, n, ips, "images/s", f"median of {s.repeats}, spread {s.spread:.0%}; "
                             f"{_fused_attn()}; channels_last {cl}{util}", cmd))
    rows += [BenchRow(sec, f"time {a} / {c}", ratio(stats, a, c), "x", note, cmd) for a, c, note in
             (("lpt_reuse", "plain", "target <= 1.6x"), ("lpt_naive", "plain", ""), ("lpt_reuse", "lpt_naive", ""))]
    return rows + _data_path_rows(ctx, models, cl)


def _data_path_rows(ctx: BenchContext, models: dict, cl: bool) -> list[BenchRow]:
    """Images/s of plain and LPT with uint8 host images preprocessed on the device."""
    from lpt_core.bench.data import synthetic_images
    from lpt_core.bench.evalpath import eval_runner
    from lpt_core.bench.memory import peak_memory

    p, dev, cmd, rows = profile(ctx), ctx.device, ctx.command_for("eval"), []
    images = synthetic_images(p.eval_images, 32, seed=ctx.seed)
    for n in ("plain", "lpt_reuse"):
        try:
            run = eval_runner(n, models[n], images, p.eval_batch, dev, BF16, channels_last=cl)
            s = time_interleaved({n: run}, repeats=max(1, p.repeats // 2), warmup=1, sync=sync_fn(dev))[n]
            mem = peak_memory(run, dev)
            rows.append(BenchRow(f"evaluation with data path, {p.model.label}, bf16", n, p.eval_images / s.median_s,
                                 "images/s", f"{p.eval_images} uint8 32 px host images -> pinned -> device resize "
                                 f"256/crop 224/normalise -> model; target >= 5000 for lpt; peak "
                                 f"{mem.peak_bytes / GIB:.2f} GiB", cmd))
        except Exception as exc:  # noqa: BLE001 -- keep the other variant's row
            rows.append(error_row("evaluation with data path", n, "images/s", cmd, exc))
    return rows


@section("train")
def train(ctx: BenchContext) -> list[BenchRow]:
    """Phase-2 (reuse, naive) and full fine-tuning step times, dual batch, bf16 autocast."""
    from lpt_core.bench.costs import TRAIN_VARIANTS, train_candidates
    from lpt_core.bench.memory import peak_memory

    p, dev, cmd = profile(ctx), ctx.device, ctx.command_for("train")
    cands = train_candidates(p.model, p.train_batch, dev, ctx.seed, TRAIN_VARIANTS, dtype=BF16)
    stats = time_interleaved(cands, repeats=p.repeats, warmup=2, sync=sync_fn(dev))
    sec = f"training step, {p.model.label}, dual batch {p.train_batch}+{p.train_batch}, bf16 autocast"
    rows = []
    for n, s in stats.items():
        try:
            mem = f"; peak {peak_memory(cands[n], dev).peak_bytes / GIB:.2f} GiB"
        except Exception as exc:  # noqa: BLE001 -- the timing stands without the memory figure
            mem = f"; peak memory failed: {exc}"
        rows.append(BenchRow(sec, n, s.median_s * 1e3, "ms/step",
                             f"{2 * p.train_batch / s.median_s:.4g} images/s; median of {s.repeats}{mem}", cmd))
    rows += [BenchRow(sec, f"{a} / {c}", ratio(stats, a, c), "x", "same run, interleaved", cmd)
             for a, c in (("lpt_reuse", "lpt_naive"), ("lpt_reuse", "full_ft"))]
    return rows


@section("paper")
def paper(ctx: BenchContext) -> list[BenchRow]:
    """The real ``fit`` (phase 1, phase 2) for a few steps and one full ``predict`` pass."""
    from lpt_core.bench.paper import paper_profile_rows

    return paper_profile_rows(ctx, profile(ctx))


@section("released")
def released(ctx: BenchContext) -> list[BenchRow]:
    """The released-checkpoint path at the paper's scale, timed: a random checkpoint in the
    authors' layout (365 classes) written, imported (``weights_only`` read, strict checks,
    artifact), loaded, and evaluated fp32 on a Places-LT-test-sized random uint8 array."""
    import tempfile
    import time

    from lpt_core.released import import_released, load_released_artifact, released_top1

    p, dev, cmd = profile(ctx), ctx.device, ctx.command_for("released")
    sec = f"released checkpoint, {p.model.label}, 365 classes, random weights"
    rows, clock = [], time.perf_counter
    with tempfile.TemporaryDirectory() as tmp:
        t0 = clock()
        ckpt, backbone, prompt = _write_released_checkpoint(p.model, f"{tmp}/LPT_places.pth", ctx.seed)
        t1 = clock()
        out = import_released(ckpt, f"{tmp}/art", backbone=p.model.name, classes=_classes_file(tmp),
                              prompt=prompt, backbone_model=backbone)  # fmt: skip
        t2 = clock()
        model, meta = load_released_artifact(out, backbone=backbone, device=dev)
        t3 = clock()
        mib = os.path.getsize(ckpt) / 2**20
        rows += [BenchRow(sec, "write released-layout checkpoint", t1 - t0, "s", f"{mib:.0f} MiB torch.save", cmd),
                 BenchRow(sec, "lpt import released", t2 - t1, "s", "torch.load(weights_only=True), sha256, layout "
                          "and backbone-equality checks, artifact write", cmd),
                 BenchRow(sec, "load imported artifact", t3 - t2, "s", f"verify + build on {dev}", cmd)]  # fmt: skip
        rows.append(_released_eval_row(ctx, p, model, meta, sec, released_top1))
    return rows


def _write_released_checkpoint(spec: BenchBackbone, path: str, seed: int) -> tuple[str, torch.nn.Module, Any]:
    """A checkpoint as the release saved it (DataParallel state dict of the whole VPT_ViT) with
    the seeded random backbone and random prompt, pool, key and head tensors."""
    from lpt_core.bench.models import make_backbone
    from lpt_core.models import PromptConfig
    from lpt_core.released import released_prompt_layout

    backbone = make_backbone(spec, "cpu", seed)
    prompt = PromptConfig(group_start=spec.group_start)
    gen = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    layout = released_prompt_layout(len(backbone.blocks), int(backbone.embed_dim), 365, prompt)
    state |= {k: torch.randn(shape, generator=gen) * 0.02 for k, shape in layout.items()}
    torch.save({"config": {"note": "benchmark"}, "state_dict": {f"module.{k}": v for k, v in state.items()},
                "val_acc": 0.0}, path)  # fmt: skip
    return path, backbone, prompt


def _classes_file(tmp: str) -> str:
    """365 classes with Places-LT-like counts (4980 down to 5 images)."""
    import json

    counts = [max(5, int(4980 * (5 / 4980) ** (i / 364))) for i in range(365)]
    path = f"{tmp}/classes.json"
    with open(path, "w") as fh:
        json.dump({"class_names": [f"class_{i:03d}" for i in range(365)], "class_counts": counts}, fh)
    return path


def _released_eval_row(ctx: BenchContext, p: GpuProfile, model: torch.nn.Module, meta: dict[str, Any], sec: str,
                       top1_fn: Callable[..., dict[str, float]]) -> BenchRow:  # fmt: skip
    """Images/s of the released-way evaluation (fp32, as the release ran) on random uint8 images."""
    import time

    import numpy as np

    from lpt_core.bench.data import synthetic_labels

    size = 224 if not ctx.quick else p.model.img_size
    n, unique = p.released_images, min(p.released_images, 1024)
    base = np.random.default_rng(ctx.seed).integers(0, 256, (unique, size, size, 3), dtype=np.uint8)
    images = np.resize(base, (n, size, size, 3))  # repeats the unique block up to n images
    labels = synthetic_labels(n, 365, ctx.seed + 1)
    sync = sync_fn(ctx.device)
    start = time.perf_counter()
    top1 = top1_fn(model, meta, images, labels, device=ctx.device, batch_size=p.eval_batch, amp="off")
    if sync is not None:
        sync()
    seconds = time.perf_counter() - start
    return BenchRow(sec, f"evaluate {n} uint8 {size} px images (released groups)", n / seconds, "images/s",
                    f"{seconds:.1f} s, fp32 (amp off, as released), batch {p.eval_batch}; eval resize + centre crop "
                    f"on the device; top-1 {top1['overall']:.2f}% on random data (chance ~0.27%)",
                    ctx.command_for("released"))


@section("corruptions")
def corruptions(ctx: BenchContext) -> list[BenchRow]:
    """CIFAR-C generation on this host's CPU cores: per corruption, then all cores in parallel."""
    from lpt_core.bench.corruptions import CorruptionSizes, corruption_rows, parallel_generation

    p, cmd = profile(ctx), ctx.command_for("corruptions")
    sizes = CorruptionSizes(batch=p.corruption_images, per_image=max(4, p.corruption_images // 16), repeats=1)
    where = "host CPU, 1 process; no GPU kernels (numpy/scipy/scikit-image)"
    rows = corruption_rows(sizes, cmd, seed=ctx.seed, where=where)
    workers = os.cpu_count() or 1
    try:
        ips, seconds, failed = parallel_generation(p.corruption_images, workers, ctx.seed)
        rows.append(BenchRow(f"corruption throughput (host CPU, {workers} processes)", "all corruptions, severity 3",
                             ips, "images/s", f"{p.corruption_images} images per corruption, {seconds:.1f} s; "
                             f"CIFAR-100-C (15 x 5 x 10,000) would take ~{750000 / ips / 60:.1f} min; "
                             f"failed: {failed or 'none'}", cmd))
    except Exception as exc:  # noqa: BLE001
        rows.append(error_row("corruption throughput (parallel)", "all corruptions", "images/s", cmd, exc))
    return rows

