"""The import rules of docs/ARCHITECTURE.md: lpt_core is a library, dashboards only read through app."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "lpt_core": {"app", "dashboards", "sqlalchemy", "apscheduler", "streamlit"},
    "app": {"dashboards", "streamlit"},
    "dashboards": {"torch", "timm", "apscheduler"},
}
DASHBOARD_ALLOWED_APP = {"app.db.views", "app.db.session", "app.settings", "app.db.repository", "app.db.schema"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from app.db import views` imports the module app.db.views
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_forbidden_imports(package: str) -> None:
    bad = []
    for path in _files(package):
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_dashboards_use_only_the_read_side_of_app() -> None:
    bad = []
    for path in _files("dashboards"):
        if path.name == "seed_demo.py":  # the documented demo seeder writes through the repository
            continue
        for name in _imports(path):
            allowed = DASHBOARD_ALLOWED_APP - {"app.db.repository"}
            if name.split(".")[0] == "app" and not any(name == a or name.startswith(a + ".") for a in allowed):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "dashboards may only import app.db.views, app.db.session, app.settings:\n" + "\n".join(bad)


def test_layering_rules_see_files() -> None:
    """Guard against the rule passing vacuously because the packages moved."""
    assert _files("lpt_core"), "lpt_core has no Python files"
