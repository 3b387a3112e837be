"""The code version every result carries: one definition for the pipeline and the nightly job.

Results are comparable (and the nightly job skips a (model, batch) pair) only when they were made
by the same code, so both writers must spell the version the same way. Imports no torch.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import lpt_core


def code_version() -> str:
    """``lpt_core.__version__`` plus ``+g<12-char commit>`` when the package is a git checkout."""
    root = Path(lpt_core.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return lpt_core.__version__
    commit = out.stdout.strip()
    return f"{lpt_core.__version__}+g{commit}" if commit else lpt_core.__version__
