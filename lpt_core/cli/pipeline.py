"""``lpt pipeline profiles|use|deps|plots|repro``: drive the DVC pipeline (dvc.yaml) and its profiles.

A profile is a small override file ``profiles/<name>.yaml`` merged onto the quickstart base
``profiles/quickstart.yaml`` (which ``params.yaml`` equals on a fresh clone): mappings merge key
by key, anything else replaces. ``lpt pipeline use NAME`` prints what changes and writes the
merged ``params.yaml``; ``--print-overrides`` gives the same changes as ``dvc exp run -S`` flags.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

PROFILES_DIR = Path("profiles")
BASE_PROFILE = "quickstart"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lpt pipeline`` and its actions to the ``lpt`` parser."""
    p = subparsers.add_parser("pipeline", help="the DVC pipeline: params profiles, stage deps, plots, dvc repro")
    sub = p.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")
    ls = sub.add_parser("profiles", help="list the params profiles in profiles/")
    ls.add_argument("--dir", type=Path, default=PROFILES_DIR)
    ls.set_defaults(func=_profiles)
    use = sub.add_parser("use", help="write params.yaml = the quickstart base + profiles/NAME.yaml; print the changes")
    use.add_argument("name", help="profile name (see `lpt pipeline profiles`)")
    use.add_argument("--dir", type=Path, default=PROFILES_DIR)
    use.add_argument("--params", type=Path, default=Path("params.yaml"))
    use.add_argument("--print-overrides", action="store_true",
                     help="only print the changes as `dvc exp run` -S flags; write nothing")
    use.set_defaults(func=_use)
    deps = sub.add_parser("deps", help="the repository files a stage's command imports (what its deps must cover)")
    deps.add_argument("stage", nargs="?", help="stage name as in dvc.yaml (default: every stage)")
    deps.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    deps.set_defaults(func=_deps)
    plots = sub.add_parser("plots", help="render `dvc plots show --json` to SVG files and an index.html, offline")
    plots.add_argument("--out", type=Path, default=Path("dvc_plots"))
    plots.set_defaults(func=_plots)
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


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping at the top, got {type(data).__name__}")
    return data


def profile_params(name: str, folder: Path) -> dict[str, Any]:
    """The full params of profile ``name``: its overrides merged onto the quickstart base."""
    from lpt_core.sections import merge

    profiles = list_profiles(folder)
    if name not in profiles:
        raise KeyError(f"unknown profile {name!r}; valid names: {', '.join(profiles) or '(none)'}")
    base = _load(folder / f"{BASE_PROFILE}.yaml")
    return base if name == BASE_PROFILE else merge(base, _load(folder / f"{name}.yaml"))


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf value) pairs; lists and empty mappings are leaves."""
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{dotted}.")
        else:
            yield dotted, value


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs (missing = None)."""
    a, b = dict(flatten(old)), dict(flatten(new))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def use_profile(name: str, folder: Path, params: Path) -> list[tuple[str, Any, Any]]:
    """Write profile ``name``'s full params to ``params``; returns what changed there."""
    merged = profile_params(name, folder)
    before = _load(params) if params.is_file() else {}
    diff = changes(before, merged)
    if name == BASE_PROFILE:
        shutil.copyfile(folder / f"{BASE_PROFILE}.yaml", params)  # keep the base's comments
    else:
        header = f"# Generated by `lpt pipeline use {name}`: {folder / BASE_PROFILE}.yaml + {folder / name}.yaml\n"
        params.write_text(header + yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
    return diff


def _profiles(args: argparse.Namespace) -> int:
    for name, title in list_profiles(args.dir).items():
        print(f"{name:24s} {title}")
    return 0


def _use(args: argparse.Namespace) -> int:
    if args.print_overrides:
        base = profile_params(BASE_PROFILE, args.dir)
        diff = changes(base, profile_params(args.name, args.dir))
        flags = [f"-S {shlex.quote(f'{k}={json.dumps(new)}')}" for k, _, new in diff]
        print("dvc exp run " + " ".join(flags))
        return 0
    diff = use_profile(args.name, args.dir, args.params)
    for key, old, new in diff:
        print(f"  {key}: {json.dumps(old)} -> {json.dumps(new)}")
    print(f"{args.params} <- profile {args.name} ({len(diff)} value(s) changed); now run `dvc repro`")
    return 0


def _deps(args: argparse.Namespace) -> int:
    from lpt_core.deps import closure, covering

    stages = stage_modules(args.dvc_yaml)
    if args.stage is not None and args.stage not in stages:
        raise KeyError(f"unknown stage {args.stage!r}; stages: {', '.join(stages)}")
    for stage, module in stages.items():
        if args.stage in (None, stage):
            print(f"{stage} ({module}):")
            print("\n".join(f"  - {path}" for path in covering(closure((module,)))))
    return 0


def _plots(args: argparse.Namespace) -> int:
    from lpt_core.plots import render_dvc_plots

    paths = render_dvc_plots(args.out)
    print(f"wrote {len(paths) - 1} plot(s) and {args.out / 'index.html'} (no scripts, opens offline)")
    return 0


def _repro(args: argparse.Namespace) -> int:
    if shutil.which("dvc") is None:
        raise RuntimeError("the `dvc` command is not on PATH; install dvc (pip install 'dvc>=3.50,<4')")
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    return subprocess.run(["dvc", "repro", *args.dvc_args], env=env, check=False).returncode


def command_module(cmd: str) -> str | None:
    """The module a stage command runs: ``python -m X ...`` -> X; ``lpt SUB ...`` -> the module that
    implements subcommand SUB (of the ``lpt`` parser); None for any other command."""
    words = cmd.split()
    if len(words) >= 3 and words[0] in ("python", "python3") and words[1] == "-m":
        return words[2]
    if len(words) >= 2 and words[0] == "lpt":
        from lpt_core.cli import build_parser

        for action in build_parser()._subparsers._group_actions:  # type: ignore[union-attr]
            sub = getattr(action, "choices", {}).get(words[1])
            if sub is not None:
                return sub.get_default("func").__module__
        raise ValueError(f"stage command {cmd!r}: `lpt` has no subcommand {words[1]!r}")
    return None


def stage_modules(dvc_yaml: str | Path = "dvc.yaml") -> dict[str, str]:
    """Stage name (a foreach group's name for its members) -> the module its command runs."""
    stages = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in stages.items():
        cmd = (stage.get("do") or stage)["cmd"]
        module = command_module(" ".join(cmd) if isinstance(cmd, list) else str(cmd))
        if module is not None:
            out[name] = module
    return out
