"""Peak RAM of preparing an image-folder dataset: decoded into memory, or streamed through
memory-mapped files (``decode_dir``, :mod:`lpt_core.data.image_sources`). The second is what
lets Places-LT, ImageNet-LT or iNaturalist 2018 be prepared on a machine with less RAM than
the decoded dataset."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from lpt_core.bench.report import BenchRow

MIB = 2**20
CLASSES = 5


def write_folder_dataset(root: Path, per_class: int, size: int, seed: int) -> int:
    """PNG images of random noise in ``root/{train,test}/<class>/``; returns the decoded bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    count = 0
    for split, n in (("train", per_class), ("test", max(1, per_class // 4))):
        for c in range(CLASSES):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
            count += n
    return count * size * size * 3


def prepare_memory_rows(quick: bool, command: str, seed: int = 0) -> list[BenchRow]:
    """Per dataset size and mode, the peak anonymous memory of ``prepare`` over its baseline.

    In memory it grows with the dataset (about twice the decoded bytes); streamed it stays at
    the copy and decode chunks (``ROW_CHUNK_BYTES``, ``DECODE_CHUNK_BYTES``: 32 MiB each)."""
    from lpt_core.bench.memory import peak_anon_memory
    from lpt_core.data.prepare import PrepareConfig, prepare

    sizes, px = ((8, 16), 32) if quick else ((400, 800), 112)
    rows = []
    for per_class in sizes:
        with tempfile.TemporaryDirectory(prefix="lpt-bench-prepare-") as tmp:
            root = Path(tmp)
            decoded = write_folder_dataset(root / "images", per_class, px, seed)
            label = f"{CLASSES} classes x {per_class} images, {px} px, {decoded / MIB:.0f} MiB decoded"
            for mode, options in (("in memory", {}), ("streamed", {"decode_dir": str(root / "decoded")})):
                cfg = PrepareConfig(source="folder", root=str(root / "images"), val_fraction=0.1, seed=seed,
                                    image_size=px, options=options)
                m = peak_anon_memory(lambda: prepare(cfg, root / "prepared" / mode.split()[0]))  # noqa: B023
                rows.append(BenchRow("peak memory", f"prepare, {decoded / MIB:.0f} MiB of images, {mode}",
                                     m.delta_bytes / MIB, "MiB", f"folder source, {label}; peak over baseline; "
                                     f"{m.method}", command))
    return rows
