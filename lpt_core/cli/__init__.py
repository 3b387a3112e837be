"""The ``lpt`` command.

Subcommands come from the modules in ``CORE_MODULES`` (each exposes ``register(subparsers)``)
and from installed plugins in the entry-point group ``lpt.commands`` (the service in ``app``
registers itself there), so this library never imports ``app``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

# Cheap to import: each module imports torch and the rest inside its handlers.
from lpt_core.cli import bench, calibrate, data, evaluate, imports, info, monitoring, pipeline, train

#: the core subcommand modules, each with ``register(subparsers)``
CORE_MODULES = (info, data, train, evaluate, calibrate, monitoring, pipeline, bench, imports)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every core and plugin subcommand registered."""
    parser = argparse.ArgumentParser(prog="lpt", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in CORE_MODULES:
        module.register(sub)
    for ep in entry_points(group="lpt.commands"):
        ep.load()(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` with ``parser`` and run the chosen subcommand; returns the exit code.

    Expected, user-facing failures print one clear line and return 2 (``-v`` shows the traceback).
    """
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `lpt ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
        if args.verbose:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # no repr quotes
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lpt`` console script; returns the process exit code."""
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
