"""Versioning data folders with DVC through its command line, one writer at a time.

DVC calls are serialised across processes with a file lock in the repository's ``.dvc/tmp``
(two concurrent ``dvc add`` in one repo fail with "is busy"). The version of a folder is the
md5 DVC writes into the ``<folder>.dvc`` file next to it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml
from filelock import FileLock

LOCK_NAME = "lpt-dvc.lock"


class DvcError(RuntimeError):
    """DVC is missing, the folder is not in a DVC repository, or a DVC command failed."""


def find_dvc_root(path: str | Path) -> Path | None:
    """The nearest ancestor of ``path`` (or ``path`` itself) holding a ``.dvc`` directory, else ``None``."""
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def require_dvc_root(path: str | Path) -> Path:
    """Like :func:`find_dvc_root` but raise a :class:`DvcError` saying what to do when there is none."""
    root = find_dvc_root(path)
    if root is None:
        raise DvcError(
            f"{Path(path).resolve()} is not inside a DVC repository (no .dvc/ found in it or its parents); "
            f"run `git init && dvc init` at the project root, or pass --no-dvc (use_dvc=False) to store "
            f"without versioning"
        )
    if shutil.which("dvc") is None:
        raise DvcError("the `dvc` command is not on PATH; install dvc or pass --no-dvc")
    return root


def dvc_file(path: str | Path) -> Path:
    """The ``.dvc`` file DVC writes for the tracked ``path``."""
    path = Path(path)
    return path.with_name(path.name + ".dvc")


def dvc_add(path: str | Path, *, timeout: float = 600.0) -> str:
    """``dvc add path`` under the repository's lock; returns the md5 recorded in the ``.dvc`` file."""
    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"cannot dvc add {path}: it does not exist")
    root = require_dvc_root(path)
    (root / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    with FileLock(str(root / ".dvc" / "tmp" / LOCK_NAME), timeout=timeout):
        proc = subprocess.run(
            ["dvc", "add", str(path.relative_to(root))],
            cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise DvcError(f"`dvc add {path}` failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    md5 = dvc_hash(path)
    if md5 is None:
        raise DvcError(f"`dvc add {path}` succeeded but wrote no md5 to {dvc_file(path)}")
    return md5


def dvc_hash(path: str | Path) -> str | None:
    """The md5 of ``path`` from its ``.dvc`` file (``None`` when the folder is not versioned)."""
    f = dvc_file(path)
    if not f.is_file():
        return None
    try:
        doc = yaml.safe_load(f.read_text()) or {}
        md5 = doc["outs"][0]["md5"]
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as exc:
        raise DvcError(f"{f} is not a valid .dvc file: {exc}") from exc
    return str(md5)


def dvc_forget(path: str | Path) -> None:
    """Remove the ``.dvc`` file of ``path`` (rollback of a failed registration); the cache is left alone."""
    dvc_file(path).unlink(missing_ok=True)
