"""Where the nightly job evaluates its work units (``app.units``): ``LPT_EXECUTOR``.

- ``local`` (default): one worker, this process; each pair begins, is verified, evaluated and
  recorded before the next (``PairRecorder.evaluate``), exactly as the job always did. Needs no
  Ray.
- ``ray``: Ray actors, each holding its backbones (``app.ray_executor``); results come back to
  this process, which alone writes the store.

Both take the job's evaluator (``PairSpec -> Result dict``; the real one by default, a fake in
tests) and report per-worker counts for the job summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from app.settings import Settings

if TYPE_CHECKING:
    from app.jobs import Evaluator, PairRecorder
    from app.units import WorkUnit


class Executor(Protocol):
    """Runs work units, recording every pair through the job's :class:`app.jobs.PairRecorder`."""

    workers: int

    def run(self, units: Sequence[WorkUnit], recorder: PairRecorder) -> None:
        """Evaluate and record every pair of ``units``."""

    def worker_stats(self) -> list[dict[str, Any]]:
        """Per worker: what it did (pairs, backbone builds, artifact loads, batch reads, seconds)."""

    def close(self) -> None:
        """Release workers (and a Ray instance started for the job)."""


class LocalExecutor:
    """Every unit in this process, one pair after the other, with one evaluator."""

    workers = 1

    def __init__(self, evaluator: Evaluator, *, owned: bool = False) -> None:
        self.evaluator, self.owned = evaluator, owned

    def run(self, units: Sequence[WorkUnit], recorder: PairRecorder) -> None:
        """Each unit's pairs in order; the evaluator is told the order first (batch prefetch)."""
        expect = getattr(self.evaluator, "expect", None)
        for unit in units:
            if expect is not None:
                expect(unit.specs)
            for spec, version_id in unit.pairs:
                recorder.evaluate(spec, version_id, self.evaluator)

    def worker_stats(self) -> list[dict[str, Any]]:
        """The evaluator's counts, when it keeps any (the real one does)."""
        stats = getattr(self.evaluator, "stats", None)
        return [{"worker": "local", **stats()}] if callable(stats) else []

    def close(self) -> None:
        """Release the evaluator's backbones and batch when this executor made it."""
        close = getattr(self.evaluator, "close", None)
        if self.owned and callable(close):
            close()


def make_executor(settings: Settings, evaluator: Evaluator | None = None) -> Executor:
    """The executor ``settings.executor`` names, running ``evaluator`` (default: the real one)."""
    if settings.executor == "ray":
        from app.ray_executor import RayExecutor

        return RayExecutor(settings, evaluator)
    if settings.executor != "local":
        raise ValueError(f"unknown executor {settings.executor!r}; expected 'local' or 'ray'")
    if evaluator is None:
        from app.evaluator import RealEvaluator

        return LocalExecutor(RealEvaluator(settings), owned=True)
    return LocalExecutor(evaluator)
