"""One evaluation worker's state across many (model artifact, shift batch) pairs.

A night evaluates tens of prompt sets (LPT, Dong et al., ICLR 2023, and its baselines) on each
new shift batch. Loading each pair from scratch rebuilds and fingerprints the ViT every time;
an :class:`EvalWorker` instead keeps

- the backbones (:class:`lpt_core.backbone_pool.BackbonePool`: built, moved to the device and
  fingerprinted once; prompt sets on the same backbone load only their own tensors),
- the loaded artifacts (``load_for_evaluation``: verified once per worker, then evaluated on
  every batch),
- the current shift batch (read and hash-verified once, staged on the device once, the next
  one read in the background while this one is evaluated when the caller says which it is).

Every pair is still one :func:`lpt_core.evaluate.evaluate_loaded` call, so its result is the
same as ``evaluate_artifact`` on that pair alone (tested). ``reuse=False`` drops everything
after each pair: the per-pair loading of before, kept for comparison and as a fallback.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpt_core.backbone_pool import BackbonePool
from lpt_core.evaluate import EvalConfig, EvalResult, LoadedArtifact, evaluate_loaded, load_for_evaluation


@dataclass
class WorkerStats:
    """What a worker did: pairs, loads and where the seconds went."""

    pairs: int = 0
    backbone_builds: int = 0
    fingerprints: int = 0
    artifact_loads: int = 0
    batch_reads: int = 0
    load_seconds: float = 0.0  # artifacts and backbones
    batch_seconds: float = 0.0  # reading, verifying and staging batches (waiting on a prefetch)
    forward_seconds: float = 0.0  # the results' eval_seconds: preprocessing and forward passes
    evaluate_seconds: float = 0.0  # evaluate_loaded in all: forward passes plus metrics

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


class EvalWorker:
    """Evaluates pairs with shared backbones, loaded artifacts and the current batch kept."""

    def __init__(
        self, cfg: EvalConfig | None = None, *, backbone_weights: str | Path | None = None, reuse: bool = True,
        compile: bool = False, backbone_capacity: int = 4, artifact_capacity: int = 64,
    ) -> None:  # fmt: skip
        if artifact_capacity < 1:
            raise ValueError(f"artifact_capacity must be >= 1, got {artifact_capacity}")
        self.cfg = cfg or EvalConfig()
        self.device = self.cfg.resolved_device()
        self.backbone_weights = backbone_weights
        self.reuse, self.compile, self.artifact_capacity = reuse, compile, artifact_capacity
        self.pool = BackbonePool(self.device, backbone_capacity)
        self._artifacts: OrderedDict[tuple[str, str | None], LoadedArtifact] = OrderedDict()
        self._batch: tuple[str, Any, np.ndarray] | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpt-batch-read")
        self._next: tuple[str, Future] | None = None
        self._stats = WorkerStats()

    @property
    def stats(self) -> WorkerStats:
        """Counts and seconds so far (backbone builds and fingerprints from the pool)."""
        self._stats.backbone_builds, self._stats.fingerprints = self.pool.builds, self.pool.fingerprints
        return self._stats

    def evaluate(
        self, artifact_dir: str | Path, batch_dir: str | Path, *, model_name: str | None = None,
        next_batch: str | Path | None = None,
    ) -> EvalResult:  # fmt: skip
        """Evaluate one artifact on one stored shift batch (the result of ``evaluate_loaded``).

        ``next_batch``: the batch of the caller's next pair; when it differs, it is read in the
        background meanwhile.
        """
        try:
            batch, images = self.batch(batch_dir)
            if next_batch is not None and str(next_batch) != str(batch_dir):
                self.prefetch(next_batch)
            loaded = self.artifact(artifact_dir, model_name)
            start = time.perf_counter()
            result = evaluate_loaded(loaded, images, batch.labels, self.cfg, shift_meta=_shift_meta(batch))
            self._stats.evaluate_seconds += time.perf_counter() - start
            self._stats.forward_seconds += float((result.run or {}).get("eval_seconds", 0.0))
            self._stats.pairs += 1
            return result
        finally:
            if not self.reuse:
                self.clear()

    def artifact(self, artifact_dir: str | Path, model_name: str | None = None) -> LoadedArtifact:
        """The loaded artifact (loaded on first use, onto a shared backbone where it has one)."""
        key = (str(Path(artifact_dir)), model_name)
        if key in self._artifacts:
            self._artifacts.move_to_end(key)
            return self._artifacts[key]
        start = time.perf_counter()
        meta = _raw_meta(Path(artifact_dir))  # unverified: load_for_evaluation verifies everything
        backbone = self.pool.lend(meta, self.backbone_weights) if meta is not None else None
        loaded = load_for_evaluation(artifact_dir, self.cfg, backbone=backbone, backbone_weights=self.backbone_weights,
                                     model_name=model_name)  # fmt: skip
        if self.compile:
            from lpt_core.fastpath import enable_compile

            enable_compile(loaded.model)
        self._artifacts[key] = loaded
        while len(self._artifacts) > self.artifact_capacity:
            self._artifacts.popitem(last=False)
        self._stats.artifact_loads += 1
        self._stats.load_seconds += time.perf_counter() - start
        return loaded

    def batch(self, batch_dir: str | Path) -> tuple[Any, np.ndarray]:
        """The shift batch (``lpt_core.data.batches.ShiftBatch``) and its images, staged on the
        device; read and verified once while it stays the current batch."""
        path = str(Path(batch_dir))
        if self._batch is not None and self._batch[0] == path:
            return self._batch[1], self._batch[2]
        from lpt_core.fastpath import stage_images

        start = time.perf_counter()
        self._batch = None  # the previous batch's device copy is freed before the next one lands
        pending = self._next[1] if self._next is not None and self._next[0] == path else None
        self._next = None
        batch = pending.result() if pending is not None else _read_batch(path)
        self._batch = (path, batch, stage_images(batch.images, self.device))
        self._stats.batch_reads += 1
        self._stats.batch_seconds += time.perf_counter() - start
        return self._batch[1], self._batch[2]

    def prefetch(self, batch_dir: str | Path) -> None:
        """Start reading ``batch_dir`` in the background (errors surface when it is used)."""
        path = str(Path(batch_dir))
        if self._next is None or self._next[0] != path:
            self._next = (path, self._reader.submit(_read_batch, path))

    def clear(self) -> None:
        """Drop every backbone, artifact and batch held (the next pair loads afresh)."""
        self.pool.clear()
        self._artifacts.clear()
        self._batch, self._next = None, None

    def close(self) -> None:
        """Drop everything and stop the background reader."""
        self.clear()
        self._reader.shutdown(wait=True)


def _read_batch(path: str) -> Any:
    """``load_batch`` (memory-mapped, content hash verified: every byte is read once here)."""
    from lpt_core.data.batches import load_batch

    return load_batch(Path(path))


def _shift_meta(batch: Any) -> dict[str, Any]:
    """The batch's ``batch.json``, plus ``labels_hash`` when its labels came later (a late label
    set keys the results measured on it)."""
    meta = dict(batch.meta)
    label_set = getattr(batch, "label_set", None)
    if label_set is not None and getattr(label_set, "origin", "") == "late":
        meta.setdefault("labels_hash", label_set.sha256)
    return meta


def _raw_meta(artifact_dir: Path) -> dict[str, Any] | None:
    """meta.json as stored, or None when it cannot be read (the verified load then names why)."""
    try:
        meta = json.loads((artifact_dir / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("backbone"), dict) else None
