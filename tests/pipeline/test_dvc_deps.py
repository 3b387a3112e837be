"""DVC dependencies that cannot drift: every repository file a stage's command imports (its
transitive closure, function-level imports included) is covered by the stage's deps in dvc.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lpt_core.cli.pipeline import command_module, stage_modules
from lpt_core.deps import ROOT, closure, covering, imported_names

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", sorted(stage_modules(ROOT / 'dvc.yaml')))
def test_stage_deps_cover_what_its_command_imports(stage: str) -> None:
    module = stage_modules(ROOT / 'dvc.yaml')[stage]
    spec = STAGES[stage].get("do") or STAGES[stage]
    deps = [str(d) for d in spec.get("deps", [])]
    missing = [p.relative_to(ROOT).as_posix() for p in closure((module,)) if not _covered(p, deps)]
    assert not missing, f"stage {stage} ({module}) imports files its deps miss (`lpt pipeline deps {stage}`): {missing}"


def test_every_stage_with_code_is_checked() -> None:
    with_code = {name for name, s in STAGES.items() if "cmd" in (s.get("do") or s)}
    assert set(stage_modules(ROOT / 'dvc.yaml')) == with_code  # no stage runs a command this test cannot read


def test_the_closure_sees_function_level_relative_and_importlib_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "lpt_core"
    (pkg / "sub").mkdir(parents=True)
    for name in ("__init__.py", "sub/__init__.py", "b.py", "c.py", "d.py", "e.py", "sub/f.py"):
        (pkg / name).write_text("")
    (pkg / "a.py").write_text("def f():\n    from lpt_core import c\n    import importlib\n"
                              "    importlib.import_module('lpt_core.d')\nfrom .sub import f\n")
    (pkg / "c.py").write_text("from . import e\n")
    files = {p.relative_to(tmp_path).as_posix() for p in closure(("lpt_core.a",), tmp_path)}
    assert files == {"lpt_core/__init__.py", "lpt_core/a.py", "lpt_core/c.py", "lpt_core/d.py", "lpt_core/e.py",
                     "lpt_core/sub/__init__.py", "lpt_core/sub/f.py"}
    assert "lpt_core.sub.f" in imported_names(pkg / "a.py", tmp_path)
    assert covering(closure(("lpt_core.a",), tmp_path), tmp_path) == [
        "lpt_core/__init__.py", "lpt_core/a.py", "lpt_core/c.py", "lpt_core/d.py", "lpt_core/e.py", "lpt_core/sub"]


def test_command_modules() -> None:
    assert command_module("python -m lpt_core.pipeline.prepare --params x") == "lpt_core.pipeline.prepare"
    assert command_module("lpt train --model lpt") == "lpt_core.cli.train"
    assert command_module("lpt ingest --results r") == "app.cli"
    assert command_module("echo hi") is None
    with pytest.raises(ValueError, match="no subcommand 'fly'"):
        command_module("lpt fly")
