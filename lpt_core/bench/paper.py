"""The paper profile's cost on a device: a few real ``fit`` steps per LPT phase and one full
evaluation pass, ViT-B/16 @224 with random weights on synthetic CIFAR-100-LT-shaped data.

LPT (Dong et al., ICLR 2023) trains with dual sampling at batch 256 + 256; CIFAR-100-LT
(rho = 100) has 10,847 training images and a 10,000-image test set. The data here are smooth
random 32 px images with those shapes and class counts (no download), so only the costs mean
anything, never the accuracies.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np

from lpt_core.bench.data import synthetic_images, synthetic_labels
from lpt_core.bench.models import build_variants
from lpt_core.bench.report import BenchRow, error_row
from lpt_core.bench.suite import BenchContext


def synthetic_cifar_lt(num_classes: int, n_max: int, rho: float, test_images: int, seed: int = 0) -> Any:
    """A ``PreparedDataset`` shaped like CIFAR-LT: long-tailed train, 1 image/class val, test."""
    from lpt_core.data.longtail import longtail_counts
    from lpt_core.data.store import ArraySplit, PreparedDataset

    counts = np.asarray(longtail_counts(n_max, num_classes, rho), dtype=np.int64)
    train_y = np.repeat(np.arange(num_classes, dtype=np.int64), counts)
    val_y = np.arange(num_classes, dtype=np.int64)
    test_y = synthetic_labels(test_images, num_classes, seed + 2)
    return PreparedDataset(
        train=ArraySplit(synthetic_images(len(train_y), 32, seed), train_y),
        val=ArraySplit(synthetic_images(len(val_y), 32, seed + 1), val_y),
        test=ArraySplit(synthetic_images(test_images, 32, seed + 2), test_y),
        class_names=[f"class_{i}" for i in range(num_classes)],
        meta={"name": "synthetic-cifar100-lt", "note": "benchmark data; accuracies are meaningless"},
    )


def paper_profile_rows(ctx: BenchContext, p: Any) -> list[BenchRow]:
    """Rows: s/step and images/s of ``fit`` per phase; images/s of one ``predict`` pass."""
    import torch

    from lpt_core.evaluate import predict
    from lpt_core.train import TrainConfig, fit

    cmd, spec = ctx.command_for("paper"), p.model
    data = synthetic_cifar_lt(spec.num_classes, 500, 100.0, p.paper_eval_images, ctx.seed)
    model = build_variants(spec, ("phase1",), ctx.device, ctx.seed)["phase1"]
    sec = f"paper profile, {spec.label}, synthetic CIFAR-100-LT (rho 100, {len(data.train.labels)} train images)"
    batch = 256 if not ctx.quick else p.train_batch
    cfg = TrainConfig(epochs=1, batch_size=batch, max_steps_per_epoch=p.paper_steps, select="last", val_every=0,
                      progress=False, warmup_epochs=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for phase in ("phase1", "phase2"):
            try:
                start = time.perf_counter()
                res = fit(model, data, cfg, f"{tmp}/{phase}", device=ctx.device, phase=phase, resume=False)
                seconds = time.perf_counter() - start
                rows.append(BenchRow(sec, f"fit {phase}: {p.paper_steps} steps", seconds / p.paper_steps, "s/step",
                                     f"dual batch {batch}+{batch}, amp {cfg.amp}, incl. start-up and checkpoint; "
                                     f"fit's own images/s {res.images_per_second:.4g}", cmd))
            except Exception as exc:  # noqa: BLE001 -- phase 2 and the evaluation still run
                rows.append(error_row(sec, f"fit {phase}", "s/step", cmd, exc))
    if ctx.device.startswith("cuda"):
        torch.cuda.synchronize(ctx.device)
    for _attempt in ("warm-up", "timed"):  # the first call warms up, the second is timed
        start = time.perf_counter()
        predict(model, data.test.images, batch_size=1024 if not ctx.quick else 16, device=ctx.device)
        seconds = time.perf_counter() - start
    rows.append(BenchRow(sec, f"evaluate {len(data.test.labels)} images (lpt_core.evaluate.predict)",
                         len(data.test.labels) / seconds, "images/s",
                         f"{seconds:.2f} s for one pass after a warm-up pass; LPT phase 2 with block reuse, "
                         f"amp auto (bf16 on CUDA)", cmd))
    return rows
