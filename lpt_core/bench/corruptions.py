"""Corruption generation throughput: each CIFAR-C corruption batch-vectorised vs a per-image loop.

``lpt_core.shifts.corrupt`` works on a whole uint8 batch; the per-image loop calls it once per
image (what a naive port of ``make_cifar_c.py`` does). Both run in the same interleaved timing,
on the same smooth synthetic 32 px images.
"""

from __future__ import annotations

from dataclasses import dataclass

from lpt_core.bench.data import synthetic_images
from lpt_core.bench.report import BenchRow
from lpt_core.bench.timing import time_interleaved


@dataclass(frozen=True)
class CorruptionSizes:
    """How many images each mode corrupts per timed call."""

    batch: int  # images in the batch-vectorised call
    per_image: int  # images in the per-image loop
    repeats: int
    severity: int = 3
    image_size: int = 32


QUICK_SIZES = CorruptionSizes(batch=8, per_image=4, repeats=1)
FULL_SIZES = CorruptionSizes(batch=256, per_image=32, repeats=3)


def corruption_throughput(name: str, sizes: CorruptionSizes, seed: int = 0) -> dict[str, float]:
    """Images/s of corruption ``name``: ``batched``, ``per_image`` and their ratio ``speedup``."""
    from lpt_core.shifts import corrupt

    images = synthetic_images(sizes.batch, sizes.image_size, seed=seed)
    few = images[: sizes.per_image]
    corrupt(images[:1], name, sizes.severity, seed)  # warm-up: lazy imports, caches, kernels

    def batched() -> None:
        corrupt(images, name, sizes.severity, seed)

    def per_image() -> None:
        for i in range(len(few)):
            corrupt(few[i : i + 1], name, sizes.severity, seed)

    stats = time_interleaved({"batched": batched, "per_image": per_image}, repeats=sizes.repeats, warmup=0)
    b = sizes.batch / stats["batched"].median_s
    p = sizes.per_image / stats["per_image"].median_s
    return {"batched": b, "per_image": p, "speedup": b / p}


def corruption_rows(sizes: CorruptionSizes, command: str, names: tuple[str, ...] | None = None,
                    seed: int = 0, where: str = "") -> list[BenchRow]:
    """One row per corruption (images/s batched, per-image and speed-up); failures become error rows."""
    from lpt_core.shifts import ALL_CORRUPTIONS

    rows = []
    section = "corruption throughput" + (f" ({where})" if where else "")
    for name in names or ALL_CORRUPTIONS:
        detail = (f"severity {sizes.severity}, {sizes.image_size} px; batch of {sizes.batch} vs loop over "
                  f"{sizes.per_image}; median of {sizes.repeats}")
        try:
            r = corruption_throughput(name, sizes, seed)
        except Exception as exc:  # noqa: BLE001 -- one broken corruption must not hide the others
            rows.append(BenchRow(section, name, None, "images/s", detail, command, f"{type(exc).__name__}: {exc}"))
            continue
        rows.append(BenchRow(section, name, r["batched"], "images/s",
                             f"batched; per-image loop {r['per_image']:.4g} images/s; "
                             f"speed-up x{r['speedup']:.3g}; {detail}", command))
    return rows


def _corrupt_chunk(args: tuple[str, int, int, int]) -> tuple[str, int, str | None]:
    """Worker: corrupt ``n`` synthetic images with one corruption; returns (name, n, error)."""
    name, n, severity, seed = args
    try:
        from lpt_core.shifts import corrupt

        corrupt(synthetic_images(n, 32, seed=seed), name, severity, seed)
    except Exception as exc:  # noqa: BLE001 -- reported by the parent
        return name, 0, f"{type(exc).__name__}: {exc}"
    return name, n, None


def parallel_generation(images_per_corruption: int, workers: int, seed: int = 0,
                        severity: int = 3) -> tuple[float, float, dict[str, str]]:
    """All 19 corruptions in ``workers`` spawned processes; (images/s, seconds, failures by name).

    Each corruption's images are split into chunks so slow corruptions spread over the cores.
    """
    import time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from lpt_core.shifts import ALL_CORRUPTIONS

    chunk = max(1, images_per_corruption // max(1, workers // 4))
    jobs = [(name, min(chunk, images_per_corruption - start), severity, seed + start)
            for name in ALL_CORRUPTIONS for start in range(0, images_per_corruption, chunk)]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(_corrupt_chunk, [(n, 1, severity, seed) for n in ALL_CORRUPTIONS[:workers]]))  # warm-up
        start = time.perf_counter()
        results = list(pool.map(_corrupt_chunk, jobs))
        seconds = time.perf_counter() - start
    failed = {name: err for name, _, err in results if err}
    done = sum(n for _, n, _ in results)
    return done / seconds, seconds, failed
