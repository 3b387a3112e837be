"""``lpt pipeline profiles|use|repro``: drive the DVC pipeline (dvc.yaml) and its params profiles."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

PROFILES_DIR = Path("profiles")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lpt pipeline`` and its actions to the ``lpt`` parser."""
    p = subparsers.add_parser("pipeline", help="the DVC pipeline: params profiles and dvc repro")
    sub = p.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")
    ls = sub.add_parser("profiles", help="list the params profiles in profiles/")
    ls.add_argument("--dir", type=Path, default=PROFILES_DIR)
    ls.set_defaults(func=_profiles)
    use = sub.add_parser("use", help="copy profiles/NAME.yaml over params.yaml")
    use.add_argument("name", help="profile name (see `lpt pipeline profiles`)")
    use.add_argument("--dir", type=Path, default=PROFILES_DIR)
    use.add_argument("--params", type=Path, default=Path("params.yaml"))
    use.set_defaults(func=_use)
    rep = sub.add_parser("repro", help="`dvc repro` with analytics off (extra arguments go to dvc)")
    rep.add_argument("dvc_args", nargs=argparse.REMAINDER, help="stages or dvc options, e.g. evaluate@lpt")
    rep.set_defaults(func=_repro)


def list_profiles(folder: Path) -> dict[str, str]:
    """Profile name -> its first comment line, for every ``*.yaml`` in ``folder``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"profiles folder {folder} does not exist (run from the repository root)")
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[:1]
        out[path.stem] = first[0].lstrip("# ").strip() if first else ""
    return out


def use_profile(name: str, folder: Path, params: Path) -> Path:
    """Copy ``folder/name.yaml`` to ``params``; an unknown name raises listing the valid ones."""
    profiles = list_profiles(folder)
    if name not in profiles:
        raise KeyError(f"unknown profile {name!r}; valid names: {', '.join(profiles) or '(none)'}")
    shutil.copyfile(folder / f"{name}.yaml", params)
    return params


def _profiles(args: argparse.Namespace) -> int:
    for name, title in list_profiles(args.dir).items():
        print(f"{name:24s} {title}")
    return 0


def _use(args: argparse.Namespace) -> int:
    use_profile(args.name, args.dir, args.params)
    print(f"{args.params} <- {args.dir / (args.name + '.yaml')}; now run `dvc repro` (or `lpt pipeline repro`)")
    return 0


def _repro(args: argparse.Namespace) -> int:
    if shutil.which("dvc") is None:
        raise RuntimeError("the `dvc` command is not on PATH; install dvc (pip install 'dvc>=3.50,<4')")
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    return subprocess.run(["dvc", "repro", *args.dvc_args], env=env, check=False).returncode
