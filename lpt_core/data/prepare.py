"""The prepare stage: raw source -> class subset -> long-tailed train / held-out val / balanced test.

Builds the long-tailed training sets of LPT (Dong et al., "LPT: Long-tailed Prompt Tuning for
Image Classification", ICLR 2023) such as CIFAR-100-LT, and the quickstart's Fashion-MNIST sets,
then writes them with :func:`lpt_core.data.store.save_prepared`.
"""

from __future__ import annotations

import inspect
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpt_core.data import longtail
from lpt_core.data.sources import SOURCES, RawDataset, load_source
from lpt_core.data.store import (
    PROTOCOLS,
    ArraySplit,
    PreparedDataset,
    file_backed,
    image_hashes,
    save_prepared,
    take_rows,
)

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class PrepareConfig:
    """The ``prepare`` section of params.yaml.

    ``rho: null`` keeps every training image of the chosen classes (no long tail: the
    quickstart's base-class set, or a source that is long-tailed already such as Places-LT).
    ``n_max: null`` with a ``rho`` uses the largest class's available count. ``val_per_class``,
    when set, replaces ``val_fraction``. ``options`` go to the source (e.g. ``lists_dir``).
    ``protocol``: ``heldout`` (a validation split held out from the long-tailed training set,
    for model selection) or ``released`` (the LPT release's: train on the whole long-tailed
    split; the val split is the source's official validation list where it has one, e.g.
    Places_LT_val.txt, else empty; the hold-out keys are then unused).
    """

    source: str
    name: str = ""
    root: str | None = None
    download: bool = False
    classes: tuple[str, ...] | None = None
    n_max: int | None = None
    rho: float | None = None
    val_fraction: float = 0.1
    val_per_class: int | None = None
    test_per_class: int | None = None
    seed: int = 0
    image_size: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    protocol: str = "heldout"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"prepare.protocol must be one of {list(PROTOCOLS)}, got {self.protocol!r}")
        if self.classes is not None and not isinstance(self.classes, tuple):
            # params.yaml gives a list; keep the frozen config immutable.
            object.__setattr__(self, "classes", tuple(self.classes))
        if self.rho is not None and self.rho < 1:
            raise ValueError(f"prepare.rho must be >= 1 (or null for no long tail), got {self.rho}")
        if self.n_max is not None and self.n_max < 1:
            raise ValueError(f"prepare.n_max must be >= 1, got {self.n_max}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"prepare.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_per_class is not None and self.val_per_class < 0:
            raise ValueError(f"prepare.val_per_class must be >= 0, got {self.val_per_class}")
        if self.test_per_class is not None and self.test_per_class < 1:
            raise ValueError(f"prepare.test_per_class must be >= 1, got {self.test_per_class}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"prepare.image_size must be >= 1, got {self.image_size}")

    @property
    def holdout(self) -> float | int:
        """The hold-out rule passed to :func:`longtail.holdout_split`."""
        return int(self.val_per_class) if self.val_per_class is not None else float(self.val_fraction)

    def dataset_name(self) -> str:
        """``name`` or one derived from the source and profile (e.g. ``cifar100-lt-r100``)."""
        if self.name:
            return self.name
        return f"{self.source}-lt-r{self.rho:g}" if self.rho is not None else f"{self.source}-all"


def prepare(cfg: PrepareConfig, out_dir: str | Path) -> PreparedDataset:
    """Build the prepared dataset described by ``cfg`` and save it to ``out_dir``.

    A source that decodes images (``image_size`` among its options) decodes them at
    ``cfg.image_size`` directly, unless the options set its size. When the source's images are
    memory-mapped (``decode_dir``, CIFAR-C files), the selected rows are streamed through
    memory-mapped scratch files next to ``out_dir``, so the dataset is never held in RAM.
    """
    out_dir = Path(out_dir)
    options = dict(cfg.options)
    takes = inspect.signature(SOURCES.get(cfg.source)).parameters
    if cfg.image_size is not None and "image_size" in takes and "image_size" not in options:
        options["image_size"] = cfg.image_size
    if "official_val" in takes and "official_val" not in options:  # decode the val list only when used
        options["official_val"] = cfg.protocol == "released"
    raw = load_source(cfg.source, cfg.root, download=cfg.download, **options)
    streamed = file_backed(raw.train.images) or file_backed(raw.test.images)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.scratch-", dir=out_dir.parent) if streamed else None
    try:
        data = build_prepared(raw, cfg, Path(scratch.name) if scratch else None)
        save_prepared(out_dir, data)
    finally:
        if scratch is not None:
            scratch.cleanup()
    sizes = {k: len(getattr(data, k)) for k in ("train", "val", "test")}
    log.info("prepared %s in %s: %s%s", data.meta["name"], out_dir, sizes, " (streamed from disk)" if streamed else "")
    return data


def build_prepared(raw: RawDataset, cfg: PrepareConfig, scratch: Path | None = None) -> PreparedDataset:
    """The prepared dataset for ``raw``; see :class:`PrepareConfig`. Selected rows are copied into
    memory, or with ``scratch`` into memory-mapped files in that folder (no other I/O)."""
    spill = (lambda name: scratch / f"{name}.npy") if scratch is not None else (lambda name: None)
    train, test, official_val, names = _subset_classes(raw, cfg.classes, spill)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"source {cfg.source!r} gives {len(train)} train / {len(test)} test images; need both")
    num = len(names)
    pool = _exclude_test_duplicates(train, test)
    available = np.bincount(train.labels[pool], minlength=num)
    if cfg.rho is None:
        counts = available.tolist()
        chosen = pool
    else:
        n_max = cfg.n_max if cfg.n_max is not None else int(available.max())
        counts = longtail.longtail_counts(n_max, num, cfg.rho)
        chosen = pool[longtail.make_longtail(train.labels[pool], counts, cfg.seed)]
    if cfg.test_per_class is not None:
        test = test.subset(longtail.cap_per_class(test.labels, cfg.test_per_class, cfg.seed + 2), spill("test"))
    if cfg.protocol == "released":  # no hold-out: the whole long-tailed split trains
        val_split = official_val if official_val is not None else train.subset(np.zeros(0, np.int64))
        splits = {"train": train.subset(np.sort(chosen), spill("train")), "val": val_split}
    else:
        tr_idx, val_idx = longtail.holdout_split(chosen, train.labels, cfg.holdout, cfg.seed + 1)
        splits = {"train": train.subset(tr_idx, spill("train")), "val": train.subset(val_idx, spill("val"))}
    val_origin = "val" if cfg.protocol == "released" and official_val is not None else "train"
    splits = {"train": _finish(splits["train"], "train", cfg), "val": _finish(splits["val"], val_origin, cfg),
              "test": _finish(test, "test", cfg)}  # fmt: skip
    meta = _meta(cfg, raw, names, counts, int(len(train) - len(pool)), splits, official_val is not None)
    return PreparedDataset(**splits, class_names=names, meta=meta)


def _subset_classes(
    raw: RawDataset, classes: tuple[str, ...] | None, spill: Callable[[str], Path | None]
) -> tuple[ArraySplit, ArraySplit, ArraySplit | None, list[str]]:
    """(train, test, official val or None, class names), restricted to ``classes`` when given."""
    if not classes:
        return raw.train, raw.test, raw.val, list(raw.class_names)
    tr_rows, tr_lab, names = longtail.select_classes(raw.train.labels, raw.class_names, classes)
    te_rows, te_lab, _ = longtail.select_classes(raw.test.labels, raw.class_names, classes)

    def relabel(split: ArraySplit, rows: np.ndarray, labels: np.ndarray, name: str) -> ArraySplit:
        return ArraySplit(take_rows(split.images, rows, spill(name)), labels, None, _source_index(split)[rows])

    val = None
    if raw.val is not None:
        va_rows, va_lab, _ = longtail.select_classes(raw.val.labels, raw.class_names, classes)
        val = relabel(raw.val, va_rows, va_lab, "classes-val")
    train = relabel(raw.train, tr_rows, tr_lab, "classes-train")
    return train, relabel(raw.test, te_rows, te_lab, "classes-test"), val, names


def _exclude_test_duplicates(train: ArraySplit, test: ArraySplit) -> np.ndarray:
    """Train rows whose exact pixels do not occur in the test split (so train/test never overlap)."""
    dup = np.isin(image_hashes(train.images), image_hashes(test.images))
    if dup.any():
        log.warning("excluding %d training images that also occur in the test split", int(dup.sum()))
    return np.flatnonzero(~dup)


def _finish(split: ArraySplit, origin: str, cfg: PrepareConfig) -> ArraySplit:
    """Resize to ``cfg.image_size`` if needed and give each row a stable id ``source:origin:index``
    (``origin``: the source split the row comes from, train / val / test)."""
    images = split.images
    if cfg.image_size is not None and images.shape[1:3] != (cfg.image_size, cfg.image_size):
        images = resize_images(images, cfg.image_size)
    src = _source_index(split)
    ids = np.array([f"{cfg.source}:{origin}:{int(i)}" for i in src], dtype=str)
    return ArraySplit(np.ascontiguousarray(images), split.labels, ids, src)


def _source_index(split: ArraySplit) -> np.ndarray:
    return np.arange(len(split)) if split.source_index is None else np.asarray(split.source_index)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 (N, H, W, 3) images to (N, size, size, 3) with PIL."""
    from PIL import Image

    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, im in enumerate(images):
        out[i] = np.asarray(Image.fromarray(np.asarray(im)).resize((size, size), Image.BILINEAR))
    return out


def _meta(
    cfg: PrepareConfig, raw: RawDataset, names: list[str], counts: list[int], excluded: int,
    splits: dict[str, ArraySplit], official_val: bool,
) -> dict[str, Any]:  # fmt: skip
    profile = {
        "kind": "all" if cfg.rho is None else "longtail",
        "n_max": None if cfg.rho is None else int(counts[0]),
        "rho": cfg.rho,
        "num_classes": len(names),
        "counts_before_holdout": [int(c) for c in counts],
        "val_rule": _val_rule(cfg, official_val),
        "test_per_class": cfg.test_per_class,
        "excluded_test_duplicates": excluded,
    }  # fmt: skip
    if official_val:
        profile["official_val_counts"] = np.bincount(splits["val"].labels, minlength=len(names)).tolist()
    cfg_dict = asdict(cfg)
    cfg_dict["classes"] = list(cfg.classes) if cfg.classes else None
    return {
        "name": cfg.dataset_name(),
        "source": raw.source or cfg.source,
        "seed": cfg.seed,
        "image_size": int(splits["train"].images.shape[1]),
        "protocol": cfg.protocol,
        "full_train_class_counts": [int(c) for c in counts],
        "profile": profile,
        "config": cfg_dict,
    }


def _val_rule(cfg: PrepareConfig, official_val: bool) -> dict[str, Any]:
    """How the val split was made: a hold-out rule, the source's official list, or none."""
    if cfg.protocol == "released":
        return {"official_list": True} if official_val else {"none": True}
    if cfg.val_per_class is not None:
        return {"val_per_class": cfg.val_per_class}
    return {"val_fraction": cfg.val_fraction}


