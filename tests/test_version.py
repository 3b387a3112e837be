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
    assert re.fullmatch(re.escape(lpt_core.__version__) + r"\+src\.[0-9a-f]{12}", code_version())


def test_code_version_follows_the_evaluation_sources(tmp_path) -> None:
    """A copy of the package gives the same version; editing an evaluated file changes it, editing
    a file outside the evaluation path (the corruptions) does not."""
    import shutil

    from lpt_core.deps import ROOT, source_hash
    from lpt_core.version import EVALUATION_MODULES

    shutil.copytree(ROOT / "lpt_core", tmp_path / "lpt_core", ignore=shutil.ignore_patterns("__pycache__"))
    before = source_hash(EVALUATION_MODULES, tmp_path)
    assert before == source_hash(EVALUATION_MODULES)
    (tmp_path / "lpt_core/shifts/blur.py").write_text("# edited\n", encoding="utf-8")
    assert source_hash(EVALUATION_MODULES, tmp_path) == before
    metrics = tmp_path / "lpt_core/metrics.py"
    metrics.write_text(metrics.read_text() + "\n# edited\n", encoding="utf-8")
    assert source_hash(EVALUATION_MODULES, tmp_path) != before


def test_pipeline_and_job_agree() -> None:
    from lpt_core.evaluate import EvalResult

    default = next(f for f in EvalResult.__dataclass_fields__.values() if f.name == "code_version")
    assert default.default_factory() == Settings().resolved_code_version == code_version()
