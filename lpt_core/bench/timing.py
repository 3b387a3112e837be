"""Wall-clock timing for benchmarks: warm-up, interleaved repeated runs and medians.

Interleaving (A B C, B C A, C A B, ...) spreads slow drift of a shared machine (other
processes, thermal state, frequency scaling) over every candidate, so a ratio of two medians
taken in the same run is far steadier than two separately timed numbers.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TimingStats:
    """Seconds per call of one timed candidate."""

    name: str
    median_s: float
    min_s: float
    max_s: float
    repeats: int

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the samples were."""
        return (self.max_s - self.min_s) / self.median_s if self.median_s > 0 else 0.0


def _stats(name: str, samples: list[float]) -> TimingStats:
    return TimingStats(name, statistics.median(samples), min(samples), max(samples), len(samples))


def time_interleaved(
    candidates: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
) -> dict[str, TimingStats]:
    """Time each zero-argument callable ``repeats`` times, interleaved and rotated.

    Every candidate is first called ``warmup`` times untimed (lazy init, allocator, autotuning).
    ``sync`` (e.g. ``torch.cuda.synchronize``) is called before starting and after stopping
    each clock so asynchronous device work is inside the measured interval.
    Returns the per-candidate statistics, keyed like ``candidates``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if not candidates:
        raise ValueError("time_interleaved needs at least one candidate")
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    if sync is not None:
        sync()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_time_once(candidates[name], sync))
    return {name: _stats(name, samples[name]) for name in names}


def _time_once(fn: Callable[[], object], sync: Callable[[], None] | None) -> float:
    if sync is not None:
        sync()
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


def ratio(stats: Mapping[str, TimingStats], numerator: str, denominator: str) -> float:
    """Median time of ``numerator`` divided by that of ``denominator`` (both must be present)."""
    for name in (numerator, denominator):
        if name not in stats:
            raise KeyError(f"no timing named {name!r}; have {sorted(stats)}")
    return stats[numerator].median_s / stats[denominator].median_s
