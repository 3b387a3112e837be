"""Stages ``prepare`` (the long-tailed target set) and ``prepare_base`` (the pretraining base-class set)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from lpt_core.data.prepare import PrepareConfig, prepare
from lpt_core.pipeline.common import parse, section, stage_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Build the prepared dataset of params section ``--section`` into ``--out``."""
    parser = stage_parser("prepare", main.__doc__ or "")
    parser.add_argument("--section", default="prepare", help="params section: prepare or prepare_base")
    parser.add_argument("--data-root", type=Path, default=None, help="raw data folder (overrides the section's root)")
    parser.add_argument("--out", required=True, type=Path, help="prepared dataset folder to write")
    args = parse(parser, argv, torch_threads=False)
    cfg = section(args.params, args.section, PrepareConfig)
    if args.data_root is not None:
        cfg = dataclasses.replace(cfg, root=str(args.data_root))
    prepare(cfg, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
