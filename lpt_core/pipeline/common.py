"""Shared plumbing of the stage entry points: argument parsing, logging, device choice, JSON output."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from lpt_core.config import load_section
from lpt_core.fsutil import atomic_file

C = TypeVar("C")


def stage_parser(stage: str, description: str, *, params: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the ``--params`` (when the stage has a section) and ``--device`` options."""
    parser = argparse.ArgumentParser(prog=f"python -m lpt_core.pipeline.{stage}", description=description)
    if params:
        parser.add_argument("--params", required=True, type=Path, help="params.yaml to read the stage's section from")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    return parser


def setup_logging() -> None:
    """INFO logging to stderr (DVC shows it while the stage runs)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def section(params: Path, name: str, cls: type[C]) -> C:
    """The params section ``name`` as the frozen dataclass ``cls``."""
    return load_section(params, name, cls)


def default_device(device: str | None) -> str:
    """``device`` if given, else "cuda" when a GPU is visible, else "cpu"."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (temp file + rename)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def cap_torch_threads() -> int:
    """Use one torch thread per CPU this process may run on, unless OMP_NUM_THREADS says otherwise.

    Without this, a stage on the 2-core CI box ran its training steps 3x slower (3.05 s vs
    1.08 s per LPT step) than with OMP_NUM_THREADS=2. Returns the thread count in effect.
    """
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    return torch.get_num_threads()


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, torch_threads: bool = True) -> argparse.Namespace:
    """Parse ``argv``, set up logging and (for torch stages) cap torch's threads to the usable CPUs."""
    args = parser.parse_args(argv)
    setup_logging()
    if torch_threads:
        cap_torch_threads()
    return args
