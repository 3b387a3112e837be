"""Pipeline results and the nightly job key results by the same code version.

If they spelled it differently, the first nightly run after `dvc repro` would re-evaluate every
pipeline pair instead of only the new ones.
"""

from __future__ import annotations

import re

import lpt_core
from app.settings import Settings
from lpt_core.version import code_version


def test_code_version_format() -> None:
    assert re.fullmatch(re.escape(lpt_core.__version__) + r"(\+g[0-9a-f]{12})?", code_version())


def test_pipeline_and_job_agree() -> None:
    from lpt_core.evaluate import EvalResult

    default = next(f for f in EvalResult.__dataclass_fields__.values() if f.name == "code_version")
    assert default.default_factory() == Settings().resolved_code_version == code_version()
