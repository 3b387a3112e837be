"""Stage ``summarize``: DVC metrics and plot data from the result files.

``metrics/models/<model>.json`` (for ``dvc metrics show/diff``: one row per model): clean top-1,
mean top-1 over the corrupted sets, the robustness gap, and shifted many/medium/few top-1.
``plots/summary.csv`` has every column per model (clean and shifted, overall and per shot group).
Plot CSVs (``dvc plots``, ``lpt pipeline plots`` or the dashboard; no network needed):
``plots/severity.csv`` (top-1 per model, corruption and severity) and ``plots/class_frequency.csv``
(clean per-class accuracy vs training count). The groups are LPT's (Dong et al., ICLR 2023)
many/medium/few shot groups.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lpt_core.pipeline.common import parse, stage_parser, write_json

log = logging.getLogger(__name__)
GROUPS = ("overall", "many", "medium", "few")
READABLE_SCHEMAS = ("lpt-result/1", "lpt-result/2")
#: the columns of metrics/models/<model>.json (a handful, so `dvc metrics show` stays readable)
METRIC_COLUMNS = ("clean_top1", "shifted_top1", "robustness_gap", "shifted_top1_many", "shifted_top1_medium",
                  "shifted_top1_few")


def load_results(results_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """Every ``<dir>/<model>/<shift>.json`` of ``results_dirs`` (schema ``lpt-result/1`` or ``/2``; others raise)."""
    results = []
    for path in sorted(p for d in results_dirs for p in d.glob("*/*.json")):
        data = json.loads(path.read_text())
        if data.get("schema") not in READABLE_SCHEMAS:
            raise ValueError(f"{path} has schema {data.get('schema')!r}, expected one of {list(READABLE_SCHEMAS)}")
        results.append(data)
    if not results:
        raise FileNotFoundError(f"no result files under {[str(d) for d in results_dirs]}/*/*.json; run evaluate")
    return results


def top1_table(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (model, shift, group) with the top-1 accuracy."""
    rows = []
    for r in results:
        for m in r["metrics"]:
            if m["name"] == "top1" and m["group"] in GROUPS:
                rows.append({"model": r["model"]["name"], "method": r["model"]["method"], "shift": r["shift"]["id"],
                             "corruption": r["shift"]["corruption"], "severity": int(r["shift"]["severity"]),
                             "group": m["group"], "top1": float(m["value"])})  # fmt: skip
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per model: clean and mean-shifted top-1, overall and per shot group (absent groups omitted)."""
    out: dict[str, dict[str, float]] = {}
    for model, rows in table.groupby("model"):
        entry: dict[str, float] = {}
        clean = rows[rows["corruption"] == "none"]
        shifted = rows[rows["corruption"] != "none"]
        for group in GROUPS:
            suffix = "" if group == "overall" else f"_{group}"
            c, s = clean[clean["group"] == group]["top1"], shifted[shifted["group"] == group]["top1"]
            if len(c):
                entry[f"clean_top1{suffix}"] = round(float(c.mean()), 4)
            if len(s):
                entry[f"shifted_top1{suffix}"] = round(float(s.mean()), 4)
        if "clean_top1" in entry and "shifted_top1" in entry:
            entry["robustness_gap"] = round(entry["clean_top1"] - entry["shifted_top1"], 4)
        out[str(model)] = entry
    return out


def write_metrics(entries: dict[str, dict[str, float]], folder: Path) -> list[Path]:
    """``folder/<model>.json`` with the :data:`METRIC_COLUMNS` of each model (``folder`` replaced)."""
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    return [write_json(folder / f"{model}.json", {k: entry[k] for k in METRIC_COLUMNS if k in entry})
            for model, entry in sorted(entries.items())]  # fmt: skip


def summary_table(entries: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Every summary column, one row per model (the README's quickstart table)."""
    columns = ["model"] + [f"{c}_top1{s}" for c in ("clean", "shifted") for s in ("", "_many", "_medium", "_few")]
    rows = [{"model": m, **e} for m, e in sorted(entries.items())]
    return pd.DataFrame(rows).reindex(columns=[*columns, "robustness_gap"])


def severity_curves(table: pd.DataFrame) -> pd.DataFrame:
    """Overall top-1 per (model, corruption, severity); clean rows repeated as severity 0 of each corruption."""
    overall = table[table["group"] == "overall"]
    clean = overall[overall["corruption"] == "none"]
    shifted = overall[overall["corruption"] != "none"]
    rows = [shifted]
    for corruption in sorted(shifted["corruption"].unique()):
        rows.append(clean.assign(corruption=corruption))
    curves = pd.concat(rows, ignore_index=True)
    return curves[["model", "corruption", "severity", "top1"]].sort_values(["model", "corruption", "severity"])


def class_frequency(results: list[dict[str, Any]]) -> pd.DataFrame:
    """Clean per-class accuracy against the training count of each class, per model."""
    rows = []
    for r in results:
        if r["shift"]["corruption"] != "none":
            continue
        pc = r["per_class"]
        for cid, count, acc in zip(pc["class_ids"], pc["train_counts"], pc["accuracy"]):
            rows.append({"model": r["model"]["name"], "class_id": int(cid), "train_count": int(count),
                         "accuracy": float(acc) if acc is not None and np.isfinite(acc) else float("nan")})  # fmt: skip
    return pd.DataFrame(rows).sort_values(["model", "train_count"], ascending=[True, False])


def main(argv: Sequence[str] | None = None) -> int:
    """Summarise ``--results`` into ``--metrics`` (a JSON per model) and ``--plots`` (CSV folder)."""
    parser = stage_parser("summarize", main.__doc__ or "", params=False)
    parser.add_argument("--results", required=True, type=Path, nargs="+",
                        help="results folders (<dir>/<model>/<shift>.json), e.g. results baselines")
    parser.add_argument("--metrics", required=True, type=Path, help="folder of per-model metrics JSON (replaced)")
    parser.add_argument("--plots", required=True, type=Path, help="folder for the plot CSVs")
    args = parse(parser, argv, torch_threads=False)
    results = load_results(args.results)
    table = top1_table(results)
    write_metrics(summary(table), args.metrics)
    args.plots.mkdir(parents=True, exist_ok=True)
    summary_table(summary(table)).to_csv(args.plots / "summary.csv", index=False, float_format="%.4f")
    severity_curves(table).to_csv(args.plots / "severity.csv", index=False, float_format="%.4f")
    class_frequency(results).to_csv(args.plots / "class_frequency.csv", index=False, float_format="%.4f")
    log.info("summarised %d result files", len(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
