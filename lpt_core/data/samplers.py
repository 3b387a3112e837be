"""Batch index samplers for long-tailed training (LPT, Dong et al., ICLR 2023).

LPT trains on two independent streams every step: a class-balanced batch (classes in random
order, ``per_class`` images of each class per block, images drawn per class from a reshuffled
cycle, as in the released code's ``ClassAwareSampler``) and an instance-balanced (uniform) batch.

Samplers yield *global* batches of indices from an explicit ``np.random.Generator``; a rank in a
distributed run takes its contiguous slice with :func:`shard` so that a 2-rank run sees exactly the
single-process global batch. Every sampler has ``state_dict``/``load_state_dict`` so that a resumed
run continues the same index stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from lpt_core.registry import Registry

SAMPLERS: Registry = Registry("sampler")


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Optimiser steps per epoch as in the released recipe: floor(N / B) + 1."""
    if num_images <= 0 or batch_size <= 0:
        raise ValueError(f"need num_images > 0 and batch_size > 0, got {num_images} and {batch_size}")
    return num_images // batch_size + 1


def shard(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s contiguous slice of a global batch; the batch must split evenly."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    if len(batch) % world_size:
        raise ValueError(f"global batch of {len(batch)} does not split evenly over {world_size} ranks")
    per = len(batch) // world_size
    return batch[rank * per : (rank + 1) * per]


class _CycleQueue:
    """A permutation of ``items`` consumed in order and reshuffled when exhausted."""

    def __init__(self, items: np.ndarray, rng: np.random.Generator) -> None:
        self.items = np.asarray(items, dtype=np.int64)
        self.rng = rng
        self.order = self.rng.permutation(self.items)
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        filled = 0
        while filled < n:
            if self.pos == len(self.order):
                self.order = self.rng.permutation(self.items)
                self.pos = 0
            k = min(n - filled, len(self.order) - self.pos)
            out[filled : filled + k] = self.order[self.pos : self.pos + k]
            self.pos += k
            filled += k
        return out

    def state(self) -> dict[str, Any]:
        return {"order": self.order.copy(), "pos": self.pos}

    def load(self, state: dict[str, Any]) -> None:
        order = np.asarray(state["order"], dtype=np.int64)
        if order.shape != self.items.shape or not np.array_equal(np.sort(order), np.sort(self.items)):
            raise ValueError("sampler state does not match the labels it is loaded into")
        self.order, self.pos = order, int(state["pos"])


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"labels must be non-negative integers, got dtype {labels.dtype}")
    return labels.astype(np.int64)


@SAMPLERS.register("instance")
class InstanceSampler:
    """Uniform (instance-balanced) batches: a reshuffled permutation of all indices."""

    def __init__(self, labels: np.ndarray, batch_size: int, rng: np.random.Generator) -> None:
        labels = _check_labels(labels)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = int(batch_size)
        self.rng = rng
        self._queue = _CycleQueue(np.arange(len(labels)), rng)

    def next_batch(self) -> np.ndarray:
        """The next global batch of ``batch_size`` indices."""
        return self._queue.take(self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the same stream (RNG state included)."""
        return {"rng": self.rng.bit_generator.state, "queue": self._queue.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a stream saved by :meth:`state_dict`."""
        self.rng.bit_generator.state = state["rng"]
        self._queue.load(state["queue"])


@SAMPLERS.register("class_aware")
class ClassAwareSampler:
    """Class-balanced batches: blocks of ``per_class`` images of one class, classes in random order.

    Class order is a permutation reshuffled after every class has been visited; each class draws
    its images from its own reshuffled cycle. Classes with no images are skipped.
    """

    def __init__(
        self, labels: np.ndarray, batch_size: int, rng: np.random.Generator, per_class: int = 4
    ) -> None:
        labels = _check_labels(labels)
        if batch_size <= 0 or per_class <= 0:
            raise ValueError(f"batch_size and per_class must be positive, got {batch_size}, {per_class}")
        self.batch_size, self.per_class, self.rng = int(batch_size), int(per_class), rng
        present = np.unique(labels)
        self._classes = _CycleQueue(present, rng)
        self._per_class = {int(c): _CycleQueue(np.flatnonzero(labels == c), rng) for c in present}
        self._pending = np.empty(0, dtype=np.int64)

    def next_batch(self) -> np.ndarray:
        """The next global batch; a block may straddle two batches when B % per_class != 0."""
        need = self.batch_size - len(self._pending)
        n_blocks = max(0, -(-need // self.per_class))
        classes = self._classes.take(n_blocks)
        blocks = [self._per_class[int(c)].take(self.per_class) for c in classes]
        stream = np.concatenate([self._pending, *blocks]) if blocks else self._pending
        self._pending = stream[self.batch_size :].copy()
        return stream[: self.batch_size]

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the same stream (RNG state included)."""
        return {
            "rng": self.rng.bit_generator.state,
            "classes": self._classes.state(),
            "per_class": {c: q.state() for c, q in self._per_class.items()},
            "pending": self._pending.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a stream saved by :meth:`state_dict`."""
        if set(state["per_class"]) != set(self._per_class):
            raise ValueError("sampler state was saved for a different set of classes")
        self.rng.bit_generator.state = state["rng"]
        self._classes.load(state["classes"])
        for c, q in self._per_class.items():
            q.load(state["per_class"][c])
        self._pending = np.asarray(state["pending"], dtype=np.int64)


def build_sampler(name: str, labels: np.ndarray, batch_size: int, rng: np.random.Generator, **kw: Any):
    """Build the sampler registered as ``name`` (``class_aware`` or ``instance``)."""
    return SAMPLERS.get(name)(labels, batch_size, rng, **kw)


class DualSampler:
    """Per step, an independent class-balanced batch and an instance-balanced batch.

    The two streams use generators spawned from ``seed``, so they are independent and the whole
    stream is a function of the seed alone.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int, per_class: int = 4) -> None:
        cb_rng, ib_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        self.class_balanced = ClassAwareSampler(labels, batch_size, cb_rng, per_class=per_class)
        self.instance = InstanceSampler(labels, batch_size, ib_rng)
        self.num_images = len(labels)
        self.batch_size = int(batch_size)

    def steps_per_epoch(self) -> int:
        """floor(N / B) + 1."""
        return steps_per_epoch(self.num_images, self.batch_size)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """(class-balanced indices, instance-balanced indices), each a global batch."""
        return self.class_balanced.next_batch(), self.instance.next_batch()

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """Both streams' states."""
        return {"cb": self.class_balanced.state_dict(), "ib": self.instance.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore both streams."""
        self.class_balanced.load_state_dict(state["cb"])
        self.instance.load_state_dict(state["ib"])
