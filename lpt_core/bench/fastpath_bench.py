"""The fast evaluation path and a whole night on one device, measured through the real code.

LPT (Dong et al., ICLR 2023) evaluation of a random-init ViT-B/16 @224 through
``lpt_core.evaluate.predict_outputs`` (what ``evaluate_loaded`` runs): uint8 32 px batches staged
on the device once (``lpt_core.fastpath.stage_images``), preprocessed there, bf16 autocast on
CUDA, inference mode, outputs kept on the device until the end; a batch-size sweep; LPT against
the plain forward and the run's matmul ceiling; the host path (pinned double buffer filled ahead
of the device); ``torch.compile`` with its compile time and break-even image count.

The night: ``models`` LPT artifacts x ``batches`` stored shift batches through one
``lpt_core.eval_worker.EvalWorker`` (backbone built and fingerprinted once, prompts loaded once,
each batch read once, the next one read in the background), against the throughput of one
warmed pair's forward passes.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lpt_core.bench.data import synthetic_images, synthetic_labels
from lpt_core.bench.models import BenchBackbone, build_variants, make_backbone
from lpt_core.bench.report import BenchRow, error_row
from lpt_core.bench.timing import time_interleaved

TARGET_CEILING = 0.60  # LPT images/s x FLOP per image / matmul FLOP/s
TARGET_RATIO = 1.5  # LPT time / plain forward time
TARGET_NIGHT = 0.80  # night images/s / single-pair images/s


def _outputs_runner(model: object, images: np.ndarray, batch: int, device: str) -> Callable[[], object]:
    from lpt_core.evaluate import predict_outputs

    return lambda: predict_outputs(model, images, batch_size=batch, device=device)


def _ips(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def fastpath_rows(spec: BenchBackbone, device: str, images_n: int, batches: tuple[int, ...], repeats: int,
                  ceiling: float, sync: Callable[[], None] | None, command: str, seed: int = 0,
                  compile_too: bool = True) -> tuple[list[BenchRow], int]:  # fmt: skip
    """Rows of the fast path, and the batch size that gave LPT the most images/s."""
    import torch

    from lpt_core.bench.costs import flops_per_image
    from lpt_core.fastpath import stage_images

    models = build_variants(spec, ("plain", "lpt_reuse"), device, seed)
    host = synthetic_images(images_n, 32, seed)
    start = time.perf_counter()
    staged = stage_images(host, device)
    if sync is not None:
        sync()
    stage_s = time.perf_counter() - start
    sec = f"fast path, {spec.label}, uint8 32 px batch of {images_n} staged on {device}"
    rows = [BenchRow(sec, "stage the batch on the device (once per batch)", stage_s * 1e3, "ms",
                     f"{host.nbytes / 2**20:.1f} MiB through pinned buffers, non-blocking" if device.startswith("cuda")
                     else "no copy: the host memory is this device's", command)]
    quick_repeats = max(1, repeats // 2)  # the sweep and the host path: enough to rank, cheaper
    sweep_rows, best = _batch_sweep(sec, models["lpt_reuse"], staged, batches, device, quick_repeats, sync, command)
    rows += sweep_rows
    f = flops_per_image(spec, ("plain", "lpt_reuse"))
    pair = time_interleaved({n: _outputs_runner(models[n], staged, best, device) for n in ("plain", "lpt_reuse")},
                            repeats=repeats, warmup=1, sync=sync)  # fmt: skip
    rows += _ceiling_rows(sec, pair, f, images_n, best, ceiling, command)
    host_run = _outputs_runner(models["lpt_reuse"], host, best, device)
    h = time_interleaved({"host": host_run}, repeats=quick_repeats, warmup=1, sync=sync)["host"]
    rows.append(BenchRow(sec, f"lpt from host memory, batch {best}", _ips(images_n, h.median_s), "images/s",
                         "uint8 chunks through two pinned buffers filled by a thread ahead of the device", command))
    if compile_too:
        try:
            rows += compile_rows(sec, models, staged, best, device, repeats, sync, command)
        except Exception as exc:  # noqa: BLE001 -- the eager rows stand without the compiled ones
            rows.append(error_row(sec, "torch.compile", "images/s", command, exc))
    del staged
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows, best


def _batch_sweep(sec: str, model: object, staged: np.ndarray, batches: tuple[int, ...], device: str, repeats: int,
                 sync: Callable[[], None] | None, command: str) -> tuple[list[BenchRow], int]:  # fmt: skip
    """LPT images/s per batch size (interleaved) and the best batch size."""
    n = len(staged)
    sweep = time_interleaved({b: _outputs_runner(model, staged, b, device) for b in batches},
                             repeats=repeats, warmup=1, sync=sync)  # fmt: skip
    best = max(batches, key=lambda b: _ips(n, sweep[b].median_s))
    rows = [BenchRow(sec, f"lpt, batch {b}", _ips(n, sweep[b].median_s), "images/s",
                     f"median of {sweep[b].repeats}; predict_outputs (the nightly path)"
                     + ("; best" if b == best else ""), command) for b in batches]
    return rows, best


def _ceiling_rows(sec: str, pair: dict, f: dict, n: int, batch: int, ceiling: float, command: str) -> list[BenchRow]:
    """LPT and plain images/s, LPT's share of the matmul ceiling and the LPT / plain time."""
    lpt_ips, plain_ips = _ips(n, pair["lpt_reuse"].median_s), _ips(n, pair["plain"].median_s)
    share = lpt_ips * f["lpt_reuse"] / ceiling if ceiling > 0 else 0.0
    ratio = pair["lpt_reuse"].median_s / pair["plain"].median_s
    ok = lambda good: "meets" if good else "MISSES"  # noqa: E731
    return [
        BenchRow(sec, f"plain forward, batch {batch}", plain_ips, "images/s",
                 f"{f['plain'] / 1e9:.1f} GFLOP/image; {plain_ips * f['plain'] / ceiling:.0%} of the ceiling", command),
        BenchRow(sec, f"lpt, batch {batch} (interleaved with plain)", lpt_ips, "images/s",
                 f"{f['lpt_reuse'] / 1e9:.1f} GFLOP/image; ceiling allows {ceiling / f['lpt_reuse']:.4g}/s", command),
        BenchRow(sec, "lpt share of the matmul ceiling", share * 100, "%",
                 f"target >= {TARGET_CEILING:.0%}: {ok(share >= TARGET_CEILING)}; ceiling {ceiling / 1e12:.4g} "
                 "TFLOP/s measured in this run", command),
        BenchRow(sec, "time lpt / plain forward", ratio, "x",
                 f"target <= {TARGET_RATIO}x: {ok(ratio <= TARGET_RATIO)}; FLOP ratio "
                 f"{f['lpt_reuse'] / f['plain']:.3f}", command),
    ]


def compile_rows(sec: str, models: dict, staged: np.ndarray, batch: int, device: str, repeats: int,
                 sync: Callable[[], None] | None, command: str) -> list[BenchRow]:  # fmt: skip
    """torch.compile of the shared forward: compile seconds, compiled images/s, break-even images."""
    from lpt_core.fastpath import COMPILE_SECONDS, enable_compile

    n, rows = len(staged), []
    eager = time_interleaved({m: _outputs_runner(models[m], staged, batch, device) for m in ("plain", "lpt_reuse")},
                             repeats=repeats, warmup=0, sync=sync)  # fmt: skip
    for m in ("plain", "lpt_reuse"):
        enable_compile(models[m])
    before = sum(COMPILE_SECONDS.values())
    start = time.perf_counter()
    for m in ("plain", "lpt_reuse"):
        _outputs_runner(models[m], staged, batch, device)()
    if sync is not None:
        sync()
    first_s = time.perf_counter() - start
    comp = time_interleaved({m: _outputs_runner(models[m], staged, batch, device) for m in ("plain", "lpt_reuse")},
                            repeats=repeats, warmup=0, sync=sync)  # fmt: skip
    compile_s = sum(COMPILE_SECONDS.values()) - before
    rows.append(BenchRow(sec, "torch.compile: compile time (plain + lpt graphs)", compile_s, "s",
                         f"first compiled pass of both {first_s:.1f} s; one graph per architecture and batch shape, "
                         "shared by every prompt set (the model is an argument)", command))
    for m in ("plain", "lpt_reuse"):
        e, c = eager[m].median_s, comp[m].median_s
        gain = (e - c) / n  # seconds saved per image
        even = f"pays after {compile_s / gain:,.0f} images" if gain > 0 else "never pays (not faster)"
        rows.append(BenchRow(sec, f"{m} compiled, batch {batch}", _ips(n, c), "images/s",
                             f"eager {_ips(n, e):.4g}/s, x{e / c:.3f}; {even}", command))
    rows.append(BenchRow(sec, "time lpt / plain forward, both compiled", comp["lpt_reuse"].median_s /
                         comp["plain"].median_s, "x", f"target <= {TARGET_RATIO}x", command))  # fmt: skip
    for m in ("plain", "lpt_reuse"):
        enable_compile(models[m], False)
    return rows


def write_night(root: Path, spec: BenchBackbone, models: int, batches: int, images: int,
                seed: int = 0) -> tuple[list[Path], list[Path]]:  # fmt: skip
    """``models`` LPT artifacts (phase 2, own prompts) on one seeded backbone and ``batches``
    stored shift batches of ``images`` uint8 32 px images under ``root``."""
    from lpt_core.artifacts import save_artifact
    from lpt_core.models import MethodConfig, PromptConfig, build_classifier
    from lpt_core.models.backbone import pin_fingerprint
    from lpt_core.validation import batch_content_hash

    backbone = make_backbone(spec, "cpu", seed)
    pin_fingerprint(backbone)
    cfg = MethodConfig(prompt=PromptConfig(group_start=spec.group_start))
    counts = [max(5, int(500 * 0.01 ** (i / max(1, spec.num_classes - 1)))) for i in range(spec.num_classes)]
    arts = []
    for i in range(models):
        model = build_classifier("lpt", backbone, spec.num_classes, cfg, seed=seed + i)
        model.set_phase("phase2")
        arts.append(save_artifact(root / "models" / f"lpt{i:02d}", model.eval(),
                                  {"class_names": [f"c{c}" for c in range(spec.num_classes)], "class_counts": counts}))
    dirs = []
    for j in range(batches):
        x, y = synthetic_images(images, 32, seed + 100 + j), synthetic_labels(images, spec.num_classes, seed + j)
        d = root / "shifts" / f"night-b{j:02d}"
        d.mkdir(parents=True)
        np.save(d / "images.npy", x)
        np.save(d / "labels.npy", y)
        meta = {"schema": "lpt-shift-batch/1", "id": d.name, "kind": "generated", "source": "bench",
                "dataset": "synthetic", "corruption": "none", "severity": 0, "size": images,
                "content_hash": batch_content_hash(x, y), "created_at": datetime.now(timezone.utc).isoformat(),
                "validation": {"success": True, "result_path": ""}}
        (d / "batch.json").write_text(json.dumps(meta), encoding="utf-8")
        dirs.append(d)
    return arts, dirs


def night_rows(spec: BenchBackbone, device: str, models: int, batches: int, images: int, batch_size: int,
               sync: Callable[[], None] | None, command: str, seed: int = 0) -> list[BenchRow]:  # fmt: skip
    """The night through one EvalWorker vs one warmed pair's forward throughput."""
    from lpt_core.eval_worker import EvalWorker
    from lpt_core.evaluate import EvalConfig

    cfg = EvalConfig(device=device, batch_size=batch_size)
    sec = f"a night, {models} LPT models x {batches} batches of {images} images, {spec.label}, batch {batch_size}"
    with tempfile.TemporaryDirectory(prefix="lpt-bench-night-") as tmp:
        start = time.perf_counter()
        arts, dirs = write_night(Path(tmp), spec, models, batches, images, seed)
        setup_s = time.perf_counter() - start
        single_s = _single_pair_seconds(EvalWorker(cfg), arts, dirs)
        order = [(a, d) for d in dirs for a in arts]
        wall, stats = _time_night(EvalWorker(cfg), order, sync)
    single_ips = _ips(images, single_s)
    night_ips = _ips(len(order) * images, wall)
    share = night_ips / single_ips if single_ips > 0 else 0.0
    return [
        BenchRow(sec, "single pair (forward passes of one warmed pair)", single_ips, "images/s",
                 f"eval_seconds {single_s:.3f} s; setup of the night {setup_s:.1f} s "
                 "(not timed below)", command),
        BenchRow(sec, "whole night (one EvalWorker, batch by batch)", night_ips, "images/s",
                 f"{len(order)} pairs in {wall:.1f} s incl. the backbone build, artifact loads, batch reads and "
                 f"staging, metrics; builds {stats.backbone_builds}, artifact loads {stats.artifact_loads}, batch "
                 f"reads {stats.batch_reads}; load {stats.load_seconds:.1f} s, batches {stats.batch_seconds:.1f} s, "
                 f"forward {stats.forward_seconds:.1f} s, metrics "
                 f"{stats.evaluate_seconds - stats.forward_seconds:.1f} s",
                 command),
        BenchRow(sec, "night / single pair", share * 100, "%",
                 f"target >= {TARGET_NIGHT:.0%}: {'meets' if share >= TARGET_NIGHT else 'MISSES'}", command),
    ]


def _single_pair_seconds(worker: object, arts: list[Path], dirs: list[Path]) -> float:
    """The forward seconds (``eval_seconds``) of one pair on a warmed worker."""
    try:
        worker.evaluate(arts[0], dirs[0])  # first use: kernels, allocator, the backbone build
        return float(worker.evaluate(arts[-1], dirs[0]).run["eval_seconds"])
    finally:
        worker.close()


def _time_night(
    worker: object, order: list[tuple[Path, Path]], sync: Callable[[], None] | None
) -> tuple[float, object]:
    """Wall seconds of every pair of ``order`` on a fresh worker (next batch hinted), and its stats."""
    try:
        if sync is not None:
            sync()
        start = time.perf_counter()
        for i, (art, batch) in enumerate(order):
            worker.evaluate(art, batch, next_batch=order[i + 1][1] if i + 1 < len(order) else None)
        if sync is not None:
            sync()
        return time.perf_counter() - start, worker.stats
    finally:
        worker.close()
