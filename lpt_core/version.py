"""The code version every result carries: one definition for the pipeline and the nightly job.

Results are comparable (and the nightly job skips a (model, batch) pair) only when they were made
by the same code, so both writers must spell the version the same way. The version is the package
version plus a hash of the source files the evaluation path runs (:mod:`lpt_core.deps`), not a
git commit: a commit that only touches documentation, the service or the dashboard changes no
result, and a fresh clone computes the same version, so the pipeline's outputs are the same bytes
on every clone of the same code. Imports no torch.
"""

from __future__ import annotations

import lpt_core
from lpt_core.deps import source_hash

#: the modules that compute a result from an artifact and images
EVALUATION_MODULES = ("lpt_core.evaluate", "lpt_core.artifacts")


def code_version() -> str:
    """``lpt_core.__version__`` plus ``+src.<12 hex>`` of the evaluation path's source files."""
    return f"{lpt_core.__version__}+src.{source_hash(EVALUATION_MODULES)[:12]}"
