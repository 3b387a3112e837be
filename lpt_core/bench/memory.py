"""Peak memory of one call: resident set size on the CPU, allocator peak on a CUDA device.

CPU tensors are allocated by torch's C++ allocator, which ``tracemalloc`` does not see, so the
CPU figure is the kernel's resident-set high-water mark (``VmHWM``), reset before the call by
writing ``5`` to ``/proc/self/clear_refs`` (Linux). Where that reset is not allowed the figure
falls back to ``ru_maxrss``, which cannot be reset: the result then says so in ``method``.
"""

from __future__ import annotations

import gc
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class PeakMemory:
    """Peak memory of one call, in bytes."""

    peak_bytes: int  # the high-water mark during the call
    baseline_bytes: int  # what was in use just before the call
    method: str  # how it was measured

    @property
    def delta_bytes(self) -> int:
        """Extra memory the call needed above the baseline."""
        return max(0, self.peak_bytes - self.baseline_bytes)


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"field {field!r} not found in {_STATUS}")


def _trim_heap() -> None:
    """Return freed heap pages to the OS (glibc), so reused pages do not hide a call's needs."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the baseline is merely higher
        pass


def _reset_rss_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_cpu_memory(fn: Callable[[], object]) -> PeakMemory:
    """Run ``fn`` once and return the process's peak resident memory during it."""
    gc.collect()
    _trim_heap()
    if _STATUS.exists() and _reset_rss_peak():
        baseline = _status_kib("VmRSS") * 1024
        fn()
        return PeakMemory(_status_kib("VmHWM") * 1024, baseline, "VmHWM after clear_refs")
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    fn()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return PeakMemory(peak, baseline, "ru_maxrss (process-lifetime peak, not resettable)")


def peak_anon_memory(fn: Callable[[], object], interval_s: float = 0.005) -> PeakMemory:
    """Run ``fn`` once and return the peak of its anonymous resident memory (``RssAnon``).

    Pages of memory-mapped files count in ``VmHWM`` but the kernel can drop or write them back
    at will; ``RssAnon`` is what must fit in RAM. It has no kernel high-water mark, so a thread
    samples it every ``interval_s`` during the call (Linux only).
    """
    import threading

    gc.collect()
    _trim_heap()
    baseline = _status_kib("RssAnon") * 1024
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _status_kib("RssAnon") * 1024)
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    peak = max(peak, _status_kib("RssAnon") * 1024)
    return PeakMemory(peak, baseline, f"RssAnon sampled every {interval_s * 1000:g} ms")


def peak_cuda_memory(fn: Callable[[], object], device: object = None) -> PeakMemory:
    """Run ``fn`` once and return the CUDA caching allocator's peak allocated bytes during it."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return PeakMemory(torch.cuda.max_memory_allocated(device), baseline, "torch.cuda.max_memory_allocated")


def peak_memory(fn: Callable[[], object], device: str) -> PeakMemory:
    """Peak memory of ``fn`` on ``device`` (``"cpu"`` or a CUDA device string)."""
    if device == "cpu":
        return peak_cpu_memory(fn)
    if device.startswith("cuda"):
        return peak_cuda_memory(fn, device)
    raise ValueError(f"peak memory is measured on 'cpu' or 'cuda[:i]', got device {device!r}")
