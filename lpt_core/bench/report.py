"""Benchmark results: rows, the machine they ran on, and the JSON / Markdown writers.

Every row carries the shell command that reproduces it; the Markdown block carries the
machine and date on every row, so a table copied elsewhere keeps its provenance.
``BENCHMARKS.md`` holds one block per suite (``cpu``, ``gpu``) between HTML-comment markers,
and rewriting one suite leaves the other suite's block untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BenchRow:
    """One measured figure (or the error that prevented it)."""

    section: str
    name: str
    value: float | None
    unit: str
    detail: str = ""
    command: str = ""
    error: str | None = None
    group: str = ""  # the suite section (registry name) that produced the row

    def formatted_value(self) -> str:
        """The value for a table cell: 4 significant digits, or the error."""
        if self.error is not None:
            return f"ERROR: {self.error}"
        if self.value is None:
            return "n/a"
        return f"{self.value:.4g}"


def error_row(section: str, name: str, unit: str, command: str, exc: BaseException) -> BenchRow:
    """A row recording that one measurement failed (its section goes on)."""
    return BenchRow(section, name, None, unit, "", command, f"{type(exc).__name__}: {exc}")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (falls back to ``platform.processor()``)."""
    path = Path("/proc/cpuinfo")
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the numbers ran on: CPU, cores, threads, library versions, GPU name if any, date."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:
        info["timm"] = None
    return info


def machine_label(info: dict[str, Any]) -> str:
    """A short one-cell description of the machine."""
    hw = info.get("gpu") or f"{info.get('cpu')} ({info.get('cores')} cores)"
    return f"{hw}, torch {info.get('torch')}"


@dataclass
class BenchReport:
    """All rows of one suite run plus the machine description."""

    suite: str
    machine: dict[str, Any]
    rows: list[BenchRow] = field(default_factory=list)

    def add(self, row: BenchRow) -> BenchRow:
        """Append a row and return it."""
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe view of the report."""
        return {"suite": self.suite, "machine": self.machine, "rows": [asdict(r) for r in self.rows]}

    def groups(self) -> list[str]:
        """The suite sections present, in run order."""
        return list(dict.fromkeys(r.group for r in self.rows))

    def to_markdown(self, group: str | None = None) -> str:
        """Markdown tables (one per table title) of all rows or of one ``group``; machine and
        date on every row."""
        label, date = machine_label(self.machine), self.machine.get("date", "")
        rows = [r for r in self.rows if group is None or r.group == group]
        out = [f"Machine: {_machine_line(self.machine)}", ""]
        for section in dict.fromkeys(r.section for r in rows):
            out += [f"#### {section}", "", "| measurement | value | unit | detail | command | machine | date |",
                    "|---|---:|---|---|---|---|---|"]
            for r in (r for r in rows if r.section == section):
                cmd = f"`{r.command}`" if r.command else ""
                out.append(f"| {r.name} | {r.formatted_value()} | {r.unit} | {_cell(r.detail)} | {cmd} | {label} | {date} |")
            out.append("")
        return "\n".join(out)

    def to_text(self) -> str:
        """A plain-text table for the terminal."""
        width = max((len(r.name) for r in self.rows), default=10)
        lines, current = [], None
        for r in self.rows:
            if r.section != current:
                current = r.section
                lines.append(f"\n== {current}")
            lines.append(f"  {r.name:<{width}}  {r.formatted_value():>12} {r.unit:<10} {r.detail}")
        return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _machine_line(m: dict[str, Any]) -> str:
    parts = [f"CPU {m.get('cpu')} x {m.get('cores')} cores ({m.get('torch_threads')} torch threads)",
             f"GPU {m.get('gpu') or 'none'}", f"python {m.get('python')}", f"torch {m.get('torch')}",
             f"timm {m.get('timm')}", f"date {m.get('date')}"]
    return ", ".join(parts)


def write_json(report: BenchReport, path: str | Path) -> Path:
    """Write the report as JSON and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def read_json(path: str | Path) -> BenchReport:
    """Load a report written by :func:`write_json` (e.g. the GPU machine's ``gpu_bench.json``)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = {"suite", "machine", "rows"} - set(data)
    if missing:
        raise ValueError(f"{path} is not a benchmark report: keys {sorted(missing)} missing")
    return BenchReport(data["suite"], data["machine"], [BenchRow(**row) for row in data["rows"]])


def update_markdown(path: str | Path, report: BenchReport, preamble: str = "") -> Path:
    """Replace (or append) one block per suite section of ``report`` in the Markdown file.

    Blocks of sections not in ``report`` are kept, so ``--only`` reruns update just their rows.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else preamble
    for group in report.groups():
        key = f"{report.suite}:{group}" if group else report.suite
        start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
        block = f"{start}\n### {report.suite} / {group or 'all'}\n\n{report.to_markdown(group)}\n{end}"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            text = head + block + rest.split(end, 1)[1]
        else:
            text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
