"""``dvc plots`` rendered offline: the Vega-Lite specs of ``dvc plots show --json`` drawn to SVG.

``dvc plots show`` writes an HTML page that loads vega, vega-lite and vega-embed from a CDN, so it
is blank on a closed network. Here each spec DVC builds (data inlined) is rendered by
``vl-convert-python``, which bundles Vega, into an SVG file, and ``index.html`` shows them inline:
one self-contained page without scripts.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any


def dvc_plot_specs(cwd: str | Path = ".") -> dict[str, list[dict[str, Any]]]:
    """{plot file: [Vega-Lite spec, ...]} from ``dvc plots show --json`` (run in ``cwd``)."""
    if shutil.which("dvc") is None:
        raise RuntimeError("the `dvc` command is not on PATH; install dvc (pip install 'dvc>=3.50,<4')")
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    proc = subprocess.run(["dvc", "plots", "show", "--json"], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"dvc plots show --json failed: {proc.stderr.strip() or proc.stdout.strip()}")
    data = json.loads(proc.stdout or "{}").get("data") or {}
    specs = {name: [e["content"] for e in entries if e.get("type") == "vega"] for name, entries in data.items()}
    if not any(specs.values()):
        raise FileNotFoundError("dvc reports no plots: run `dvc repro` first (the summarize stage writes them)")
    return specs


def render_dvc_plots(out: str | Path, cwd: str | Path = ".") -> list[Path]:
    """Render every DVC plot to ``out/<name>.svg`` plus ``out/index.html``; returns the paths written."""
    import vl_convert

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, figures = [], []
    for name, specs in sorted(dvc_plot_specs(cwd).items()):
        for i, spec in enumerate(specs):
            # a static picture: parameters keep their values, their sliders (bindings) are dropped
            spec = {**spec, "params": [{k: v for k, v in p.items() if k != "bind"} for p in spec.get("params", [])]}
            svg = vl_convert.vegalite_to_svg(spec)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + (f"-{i}" if i else "")
            path = out / f"{stem}.svg"
            path.write_text(svg, encoding="utf-8")
            written.append(path)
            figures.append(f"<figure><figcaption>{html.escape(name)}</figcaption>{svg}</figure>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>dvc plots</title><style>body{font-family:"
            "sans-serif;margin:2em}figure{display:inline-block;margin:1em}</style></head><body><h1>dvc plots</h1>"
            + "".join(figures) + "</body></html>\n")  # fmt: skip
    (out / "index.html").write_text(page, encoding="utf-8")
    return [*written, out / "index.html"]
