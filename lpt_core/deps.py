"""The source files a module runs: its transitive import closure inside this repository.

One definition serves three purposes that must agree: the DVC stages' dependencies (a test checks
that every stage's deps in dvc.yaml cover the closure of the module its command runs), the code
version results carry (a hash of the evaluation path's closure, so two results are comparable
exactly when the code that computed them is the same), and the key that lets a training run resume
only its own checkpoint. The closure is found statically (``ast``): every ``import`` and
``from ... import`` anywhere in a file, function-level imports included, plus
``importlib.import_module("literal")``. Imports no torch.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL_PACKAGES = ("lpt_core", "app", "dashboards")


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The file of ``module`` (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``) under ``root``, or None."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, root: Path = ROOT) -> set[str]:
    """Every module name ``path`` may import (absolute, with the parents of dotted names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = _module_name(path, root)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif _is_import_module_call(node):
            names.add(node.args[0].value)  # type: ignore[attr-defined]
    return {parent for name in names for parent in _parents(name)}


def _resolve_from(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".") if package else []
    parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
    return ".".join([*parts, node.module] if node.module else parts)


def _is_import_module_call(node: ast.AST) -> bool:
    """``importlib.import_module("x")`` or ``import_module("x")`` with a literal name."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name == "import_module" and isinstance(node.args[0].value, str)


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@lru_cache(maxsize=64)
def closure(modules: tuple[str, ...], root: Path = ROOT) -> tuple[Path, ...]:
    """Files of ``modules`` and of every repository module they import, transitively, sorted."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] not in LOCAL_PACKAGES:
            continue
        path = module_file(name, root)
        if path is None:
            continue  # an attribute imported with `from pkg import name`, not a module
        seen[name] = path
        todo.extend(imported_names(path, root) - set(seen))
    missing = [m for m in modules if m not in seen]
    if missing:
        raise ValueError(f"modules {missing} are not in this repository ({root})")
    return tuple(sorted(set(seen.values())))


def source_hash(modules: Iterable[str], root: Path = ROOT) -> str:
    """sha256 over the relative paths and bytes of the closure of ``modules``."""
    digest = hashlib.sha256()
    for path in closure(tuple(sorted(modules)), root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def covering(files: Iterable[Path], root: Path = ROOT) -> list[str]:
    """The shortest list of repository paths (folders where every ``.py`` below is in ``files``,
    else single files) that covers ``files``: what a DVC stage's ``deps`` should name."""
    wanted = {Path(f).resolve() for f in files}
    out: list[str] = []

    def walk(folder: Path) -> None:
        below = {p.resolve() for p in folder.rglob("*.py") if "__pycache__" not in p.parts}
        if below and below <= wanted:
            out.append(folder.relative_to(root).as_posix())
            return
        out.extend(p.relative_to(root).as_posix() for p in sorted(folder.glob("*.py")) if p.resolve() in wanted)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"):
            walk(sub)

    for package in LOCAL_PACKAGES:
        if (root / package).is_dir():
            walk(root / package)
    return out
