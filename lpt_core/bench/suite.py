"""Running a benchmark suite: named sections, each isolated so one failure never stops the rest.

A section is a function ``(ctx) -> list[BenchRow]`` registered in a suite's registry. The
runner prints a progress line per section (flushed, for remote logs), turns an exception into
an error row naming the section, and returns the whole report.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from lpt_core.bench.report import BenchReport, BenchRow, machine_info
from lpt_core.registry import Registry


@dataclass(frozen=True)
class BenchContext:
    """What every section needs: size profile, device, seed and how to name its command."""

    suite: str  # "cpu" or "gpu"
    quick: bool  # tiny models and sizes: a smoke run of the harness, not a measurement
    device: str = "cpu"
    seed: int = 0
    command: str = "lpt bench cpu"  # the base command; sections append ``--only <name>``
    options: dict = field(default_factory=dict)  # suite-specific knobs (e.g. batch sizes)

    def command_for(self, section: str) -> str:
        """The shell command that reproduces one section's rows."""
        return f"{self.command} --only {section}" + (" --quick" if self.quick else "")


Section = Callable[[BenchContext], list[BenchRow]]


def log(message: str) -> None:
    """A progress line on stderr, flushed at once (remote runs read it as it comes)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_sections(registry: Registry, order: Sequence[str], ctx: BenchContext,
                 only: Sequence[str] | None = None, report: BenchReport | None = None) -> BenchReport:
    """Run the registry's sections named in ``order`` (or only those in ``only``), in that order."""
    names = list(only) if only else list(order)
    for name in names:
        registry.get(name)  # an unknown section raises before anything runs
    report = report or BenchReport(ctx.suite, machine_info())
    for name in names:
        log(f"section {name}: start")
        start = time.perf_counter()
        try:
            rows = registry.get(name)(ctx)
        except Exception as exc:  # noqa: BLE001 -- a failed section is reported, the suite goes on
            traceback.print_exc(file=sys.stderr)
            rows = [BenchRow(name, "section failed", None, "", command=ctx.command_for(name),
                             error=f"{type(exc).__name__}: {exc}")]
        for row in rows:
            row = replace(row, group=name)
            report.add(row)
            log(f"  {row.name}: {row.formatted_value()} {row.unit}")
        log(f"section {name}: done in {time.perf_counter() - start:.1f} s")
    return report
