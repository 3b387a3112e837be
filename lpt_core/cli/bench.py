"""``lpt bench cpu|gpu``: the performance suites (see BENCHMARKS.md for the latest results)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand to the ``lpt`` parser."""
    parser = subparsers.add_parser("bench", help="run the CPU or GPU benchmark suite")
    parser.add_argument("suite", choices=("cpu", "gpu"), help="which suite to run")
    parser.add_argument("--quick", action="store_true",
                        help="tiny models and sizes: checks the harness end to end in seconds; not a measurement")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown file whose block for this suite is replaced (e.g. BENCHMARKS.md)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--only", default=None,
                        help="comma-separated section names (default: all; an unknown name lists the valid ones)")
    parser.add_argument("--device", default=None, help="gpu suite only: torch device (default cuda, cpu to test)")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="run nothing: write this report JSON (e.g. the H200's gpu_bench.json) into --out")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    if args.from_json is not None:
        from lpt_core.bench.report import read_json

        report = read_json(args.from_json)
        if report.suite != args.suite:
            raise ValueError(f"{args.from_json} holds the {report.suite!r} suite, not {args.suite!r}")
    elif args.suite == "cpu":
        from lpt_core.bench.cpu import run_cpu_suite

        report = run_cpu_suite(quick=args.quick, only=only)
    else:
        from lpt_core.bench.gpu import run_gpu_suite

        report = run_gpu_suite(quick=args.quick, only=only, device=args.device or "cuda")
    print(report.to_text())
    from lpt_core.bench.report import update_markdown, write_json

    if args.out is not None:
        update_markdown(args.out, report, preamble=_PREAMBLE)
        print(f"wrote {args.out}")
    if args.json is not None:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    return 0


_PREAMBLE = """# Benchmarks

Written by `lpt bench cpu --out BENCHMARKS.md` and `lpt bench gpu --out BENCHMARKS.md`
(`scripts/gpu_check.sh` on a GPU machine). Each suite's block below is replaced when that suite
is rerun; every row names the command that reproduces it, the machine and the date.
Ratios are of medians of interleaved repeated runs in the same process.
"""
