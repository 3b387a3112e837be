"""The import rules of docs/ARCHITECTURE.md: lpt_core is a library, dashboards only read through
app's data layer, SQL lives in the data-layer modules, and no import hides behind importlib."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "lpt_core": {"app", "dashboards", "sqlalchemy", "apscheduler", "streamlit"},
    "app": {"dashboards", "streamlit"},
    "dashboards": {"torch", "timm", "apscheduler", "lpt_core"},
}
#: what the dashboard pages may import from app (the read side of the data layer, and the charts)
DASHBOARD_ALLOWED_APP = {"app.db.views", "app.db.views_monitoring", "app.db.session", "app.settings", "app.charts",
                         "app.charts_monitoring"}
#: the demo seeder writes, through the repository and the registry (and nothing else of app)
SEEDER_ALLOWED_APP = DASHBOARD_ALLOWED_APP | {"app.db.repository", "app.db.registry", "app.db.schema"}
#: the modules that may hold SQL: the data layer and its migrations
SQL_MODULES = {"app/db/repository.py", "app/db/registry.py", "app/db/views.py", "app/db/upsert.py",
               "app/db/monitoring.py", "app/db/views_monitoring.py",
               "app/db/session.py", "app/db/migrate.py"}
SQL_NAMES = {"select", "insert", "update", "delete", "text", "func", "and_", "or_", "case", "cast", "exists",
             "literal_column", "table", "column"}
#: dynamic imports with a computed name, and why each is fine
DYNAMIC_IMPORTS_ALLOWED = {"lpt_core/data/sources.py"}  # numpy's own modules (numpy 1 and 2 names), not ours


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from app.db import views` imports the module app.db.views
            names += [f"{node.module}.{a.name}" for a in node.names]
        elif _dynamic_import(node) and isinstance(node.args[0], ast.Constant):
            names.append(str(node.args[0].value))
    return names


def _dynamic_import(node: ast.AST) -> bool:
    """``importlib.import_module(...)``, ``import_module(...)`` or ``__import__(...)``."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("import_module", "__import__")


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_forbidden_imports(package: str) -> None:
    bad = [f"{_rel(path)} imports {name}" for path in _files(package) for name in _imports(path)
           if name.split(".")[0] in FORBIDDEN[package]]  # fmt: skip
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_dashboards_use_only_the_read_side_of_app() -> None:
    bad = []
    for path in _files("dashboards"):
        allowed = SEEDER_ALLOWED_APP if path.name == "seed_demo.py" else DASHBOARD_ALLOWED_APP
        for name in _imports(path):
            if name.split(".")[0] == "app" and not any(name == a or name.startswith(a + ".") for a in allowed):
                bad.append(f"{_rel(path)} imports {name}")
    assert not bad, f"dashboards may only import {sorted(DASHBOARD_ALLOWED_APP)}:\n" + "\n".join(bad)


def test_no_import_hides_behind_a_computed_name() -> None:
    bad = [f"{_rel(path)}:{node.lineno}" for package in FORBIDDEN for path in _files(package)
           if _rel(path) not in DYNAMIC_IMPORTS_ALLOWED
           for node in ast.walk(_tree(path)) if _dynamic_import(node) and not isinstance(node.args[0], ast.Constant)]
    assert not bad, "dynamic imports with a computed module name (the rules above cannot see them):\n" + "\n".join(bad)


def _sql_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlalchemy":
            builders = sorted({a.name for a in node.names} & SQL_NAMES)
            if builders or node.module.startswith(("sqlalchemy.sql", "sqlalchemy.dialects")):
                found.append(f"imports {builders or node.module} from {node.module}")
        elif isinstance(node, ast.Attribute) and node.attr in ("exec_driver_sql", "execute", "scalars", "query"):
            found.append(f"calls .{node.attr}() at line {node.lineno}")
    return found


@pytest.mark.parametrize("package", ["app", "dashboards"])
def test_sql_lives_in_the_data_layer(package: str) -> None:
    bad = [f"{_rel(path)} {use}" for path in _files(package)
           if _rel(path) not in SQL_MODULES and "/migrations/" not in _rel(path) for use in _sql_uses(path)]
    assert not bad, f"SQL outside {sorted(SQL_MODULES)}:\n" + "\n".join(bad)


def test_the_rules_can_fail(tmp_path: Path) -> None:
    """The checks see what they must: a dynamic import, a hidden module name and a raw query."""
    f = tmp_path / "m.py"
    f.write_text("import importlib\nimportlib.import_module('app.db.views')\nname = 'x'\n__import__(name)\n"
                 "from sqlalchemy import select, text\ndef q(s):\n    return s.execute(text('SELECT 1'))\n")
    assert "app.db.views" in _imports(f)
    assert sum(_dynamic_import(n) for n in ast.walk(_tree(f))) == 2
    assert len(_sql_uses(f)) == 2


def test_layering_rules_see_files() -> None:
    """Guard against the rule passing vacuously because the packages moved."""
    assert _files("lpt_core") and _files("app") and _files("dashboards")
