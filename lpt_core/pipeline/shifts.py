"""Stage ``shifts``: the evaluation shift sets (clean + corruptions x severities of the test split).

Every set uses the same seeded subset of test rows, so clean and corrupted accuracies are paired.
Each set is a shift-batch folder (``images.npy``, ``labels.npy``, ``batch.json``, validation
report) with a stable id (``clean``, ``<corruption>-s<severity>``), listed in ``index.json``.
Corruptions follow the CIFAR-C protocol of Hendrycks & Dietterich (ICLR 2019), see lpt_core.shifts.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lpt_core.data.store import PreparedDataset, load_prepared
from lpt_core.pipeline.common import parse, section, stage_parser, write_json

log = logging.getLogger(__name__)
BATCH_SCHEMA = "lpt-shift-batch/1"


@dataclass(frozen=True)
class ShiftsConfig:
    """The ``shifts`` section: which corruptions and severities, how many test images, the seed."""

    corruptions: tuple[str, ...] = ("gaussian_noise", "defocus_blur", "contrast", "jpeg_compression")
    severities: tuple[int, ...] = (1, 3, 5)
    size: int | None = None  # None = the whole test split
    seed: int = 0
    clean: bool = True


def shift_plan(cfg: ShiftsConfig) -> list[tuple[str, str, int]]:
    """The (id, corruption, severity) of every set, clean first; unknown names raise."""
    from lpt_core import shifts

    plan = [("clean", "none", 0)] if cfg.clean else []
    for corruption in cfg.corruptions:
        shifts.CORRUPTIONS.get(corruption)
        for severity in cfg.severities:
            if not 1 <= int(severity) <= 5:
                raise ValueError(f"shifts.severities must be in 1..5, got {severity}")
            plan.append((f"{corruption}-s{int(severity)}", corruption, int(severity)))
    if not plan:
        raise ValueError("shifts: nothing to build (clean: false and no corruptions)")
    return plan


def _rows(data: PreparedDataset, cfg: ShiftsConfig) -> np.ndarray:
    n = len(data.test) if cfg.size is None else int(cfg.size)
    if not 1 <= n <= len(data.test):
        raise ValueError(f"shifts.size must be in 1..{len(data.test)} (the test split), got {cfg.size}")
    return np.sort(np.random.default_rng(cfg.seed).choice(len(data.test), size=n, replace=False))


def write_set(folder: Path, images: np.ndarray, labels: np.ndarray, meta: dict[str, Any], num_classes: int) -> dict:
    """Validate one set with Great Expectations and write it as a shift-batch folder; returns batch.json."""
    from lpt_core.validation import batch_content_hash, validate_batch

    report = validate_batch(images, labels, num_classes=num_classes, image_shape=tuple(images.shape[1:3]),
                            severity=meta["severity"])  # fmt: skip
    report.raise_for_failure()
    folder.mkdir(parents=True)
    np.save(folder / "images.npy", images)
    np.save(folder / "labels.npy", labels.astype(np.int64))
    report.write(folder, stem="validation")
    # No creation time: the stage's output is the same bytes for the same inputs (DVC hashes it).
    meta = {"schema": BATCH_SCHEMA, **meta, "size": int(len(labels)),
            "content_hash": batch_content_hash(images, labels),
            "validation": {"success": bool(report.success), "result_path": "validation.json"}}  # fmt: skip
    (folder / "batch.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def build_shifts(cfg: ShiftsConfig, prepared_dir: Path, out: Path) -> list[dict[str, Any]]:
    """Write every shift set of ``cfg`` under ``out`` (replacing it) plus ``index.json``."""
    from lpt_core import shifts

    data = load_prepared(prepared_dir)
    rows = _rows(data, cfg)
    clean = np.ascontiguousarray(data.test.images[rows])
    labels = np.asarray(data.test.labels[rows], dtype=np.int64)
    name = data.meta.get("name", prepared_dir.name)
    if out.exists():
        shutil.rmtree(out)
    index = []
    for set_id, corruption, severity in tqdm(shift_plan(cfg), desc="shift sets"):
        images = clean if corruption == "none" else shifts.corrupt(clean, corruption, severity, cfg.seed)
        meta = {"id": set_id, "kind": "clean" if corruption == "none" else "generated", "source": f"{name}:test",
                "dataset": name, "corruption": corruption, "severity": severity, "seed": cfg.seed}  # fmt: skip
        written = write_set(out / set_id, images, labels, meta, data.num_classes)
        index.append({k: written[k] for k in ("id", "kind", "corruption", "severity", "size", "content_hash")})
    write_json(out / "index.json", {"dataset": name, "test_rows": rows.tolist(), "sets": index})
    return index


def main(argv: Sequence[str] | None = None) -> int:
    """Build the shift sets of the ``shifts`` section from ``--data`` into ``--out``."""
    parser = stage_parser("shifts", main.__doc__ or "")
    parser.add_argument("--data", required=True, type=Path, help="prepared target dataset")
    parser.add_argument("--out", required=True, type=Path, help="folder of shift sets to (re)write")
    args = parse(parser, argv)
    index = build_shifts(section(args.params, "shifts", ShiftsConfig), args.data, args.out)
    log.info("wrote %d shift sets to %s", len(index), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
