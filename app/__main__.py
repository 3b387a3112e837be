"""``python -m app COMMAND``: the service subcommands alone (ingest, scheduler, models, db, report).

Same handlers as ``lpt COMMAND``, without building the core CLI's parsers, so a command that has
nothing to do does not import torch through other subcommand modules.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app.cli import register
from lpt_core.cli import run


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the service subcommand; user-facing errors exit with code 2."""
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
