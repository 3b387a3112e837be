"""``lpt monitoring measure``: how well the label-free estimates and shift tests work on the
pipeline's models (see :mod:`lpt_core.bench.monitoring`), written into docs/MONITORING.md."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def _cmd_measure(args: argparse.Namespace) -> int:
    from lpt_core.bench.monitoring import measure, summary_tables, write_report
    from lpt_core.config import read_params
    from lpt_core.pipeline.common import cap_torch_threads

    for flag, value in (("--clean-batches", args.clean_batches), ("--per-class", args.per_class),
                        ("--reference-per-class", args.reference_per_class)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if not 0.0 < args.alpha < 1.0:
        raise ValueError(f"--alpha must lie in (0, 1), got {args.alpha}")
    raw = args.raw_root or Path((read_params(args.params).get("paths") or {}).get("target_raw", "."))
    cap_torch_threads()
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    m = measure(args.models, args.data, args.shifts, raw_root=raw, alpha=args.alpha,
                clean_batches=args.clean_batches, per_class=args.per_class,
                reference_per_class=args.reference_per_class, methods=methods)  # fmt: skip
    for name, table in summary_tables(m).items():
        print(f"\n{name}\n{table.to_string()}")
    if args.out is not None:
        write_report(m, args.out, "lpt " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        print(f"wrote {args.out}")
    if args.json is not None:
        doc = {"settings": m.settings, **{k: getattr(m, k).to_dict(orient="records") for k in ("errors", "alarms", "costs")}}
        args.json.write_text(json.dumps(doc, indent=1, default=float), encoding="utf-8")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``monitoring`` to the ``lpt`` parser."""
    p = subparsers.add_parser("monitoring", help="measure the label-free estimates and shift tests")
    sub = p.add_subparsers(dest="monitoring_command", required=True, metavar="ACTION")
    m = sub.add_parser("measure", help="estimation error, false alarms, detection and cost on the pipeline's models")
    m.add_argument("--params", type=Path, default=Path("params.yaml"), help="for paths.target_raw (held-out images)")
    m.add_argument("--models", type=Path, default=Path("models"))
    m.add_argument("--data", type=Path, default=Path("data/prepared/target"))
    m.add_argument("--shifts", type=Path, default=Path("data/shifts/eval"))
    m.add_argument("--raw-root", type=Path, default=None, help="raw data of the target task (default: params)")
    m.add_argument("--methods", default="lpt,vpt,linear,full_ft", help="comma-separated model names")
    m.add_argument("--alpha", type=float, default=0.05)
    m.add_argument("--clean-batches", type=int, default=20, help="disjoint clean batches for the false-alarm rate")
    m.add_argument("--per-class", type=int, default=100, help="held-out images per class in each clean batch")
    m.add_argument("--reference-per-class", type=int, default=400,
                   help="images per class of the labelled held-out reference the service's reference is compared with")
    m.add_argument("--out", type=Path, default=None, help="Markdown file whose measured block is replaced")
    m.add_argument("--json", type=Path, default=None, help="every row as JSON")
    m.set_defaults(func=_cmd_measure)


__all__ = ["register"]
