"""The nightly report (HTML with inline SVG, Markdown, JSON) of one job run.

Per batch evaluated by the job: every model's top-1 (LPT/VPT prompt sets next to full fine-tuning
and linear probing), many/medium/few under shift, the robustness gap (the model's latest clean
top-1 minus its shifted top-1, per group) and the change since the previous night: the same model's
latest earlier evaluation on a batch of the same kind (dataset, corruption, severity), with a Wald
confidence interval. A regression is flagged only when a pooled two-proportion z-test rejects "no
change" at ``alert_alpha``. Costs per method: trainable and stored parameters, evaluation time.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from app.db import repository as repo
from app.db.repository import ScoreRow
from app.db.schema import JobRun, utcnow
from app.db.session import session_scope
from app.settings import Settings
from app.stats import is_significant_drop, two_proportion_change

GROUPS = ("overall", "many", "medium", "few")
METHOD_COLOURS = {"lpt": "#1f77b4", "vpt": "#17becf", "full_ft": "#d62728", "linear": "#7f7f7f"}


@dataclass
class Report:
    """Where the report went, and the significant regressions it found."""

    paths: dict[str, Path]
    rows: list[dict[str, Any]]
    regressions: list[dict[str, Any]] = field(default_factory=list)
    alert_lines: list[str] = field(default_factory=list)


def write_report(engine: Engine, settings: Settings, job_run_id: int) -> Report:
    """Build the report of ``job_run_id`` and write report.{html,md,json} under reports_dir."""
    with session_scope(engine) as s:
        job = s.get(JobRun, job_run_id)
        if job is None:
            raise KeyError(f"unknown job run {job_run_id}")
        all_rows = repo.scores(s, groups=GROUPS)
        alerts = [f"[{a.kind}] {a.message}" for a in repo.alerts_for_job(s, job_run_id)]
        model_ids = {m.name: m.id for m in repo.list_models(s)}
    rows, regressions = compare_rows(all_rows, job_run_id, settings.alert_alpha, model_ids)
    costs = cost_table(all_rows)
    alert_lines = alerts + [r["message"] for r in regressions]
    doc = {"job_run_id": job_run_id, "trigger": job.trigger, "code_version": job.code_version,
           "generated_at": utcnow().isoformat(), "alpha": settings.alert_alpha,
           "test": "two-proportion z-test against the same model's previous evaluation on the same batch kind",
           "rows": rows, "regressions": regressions, "costs": costs, "alerts": alert_lines}
    stem = f"{utcnow():%Y-%m-%d}_job{job_run_id}"
    out = Path(settings.reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "html": out / f"{stem}.html"}
    paths["json"].write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    paths["md"].write_text(render_markdown(doc), encoding="utf-8")
    paths["html"].write_text(render_html(doc), encoding="utf-8")
    return Report(paths, rows, regressions, alert_lines)


def compare_rows(
    all_rows: list[ScoreRow], job_run_id: int, alpha: float, model_ids: dict[str, int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Tonight's rows with clean gap and change since the previous night; plus the regressions."""
    clean: dict[tuple[str, str], ScoreRow] = {}
    history: dict[tuple[str, str, str, int, str], list[ScoreRow]] = defaultdict(list)
    for r in all_rows:  # oldest first, so later rows win
        if r.corruption == "none":
            clean[(r.model, r.grp)] = r
        history[(r.model, r.dataset, r.corruption, r.severity, r.grp)].append(r)
    rows, regressions = [], []
    for r in (r for r in all_rows if r.job_run_id == job_run_id):
        ref = clean.get((r.model, r.grp))
        row = {"model": r.model, "method": r.method, "state": r.state, "batch": r.batch_id, "kind": r.batch_kind,
               "corruption": r.corruption, "severity": r.severity, "group": r.grp, "top1": r.value,
               "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.n,
               "gap": None if ref is None or r.corruption == "none" else ref.value - r.value}
        prev = [p for p in history[(r.model, r.dataset, r.corruption, r.severity, r.grp)] if p.job_run_id != job_run_id]
        if prev and r.n > 0 and prev[-1].n > 0:
            change = two_proportion_change(prev[-1].value, prev[-1].n, r.value, r.n, alpha)
            row.update(prev_batch=prev[-1].batch_id, change=change.delta, change_ci=[change.ci_low, change.ci_high],
                       p_value=change.p_value, regression=is_significant_drop(change, alpha))
            if row["regression"]:
                regressions.append({**row, "model_id": model_ids.get(r.model), "batch_id": r.batch_id,
                                    "message": f"{r.model} on {r.batch_id} ({r.grp}): top-1 {change.delta:+.4f} vs "
                                               f"{prev[-1].batch_id} (p = {change.p_value:.2g})"})
        rows.append(row)
    return rows, regressions


def cost_table(all_rows: list[ScoreRow]) -> list[dict[str, Any]]:
    """Per method: parameter counts and mean evaluation time over its overall-group runs."""
    acc: dict[str, dict[str, Any]] = {}
    for r in all_rows:
        if r.grp != "overall":
            continue
        c = acc.setdefault(r.method, {"method": r.method, "trainable_params": r.trainable_params,
                                      "stored_params": r.stored_params, "runs": 0, "eval_seconds": 0.0,
                                      "images_per_second": 0.0})
        c["runs"] += 1
        c["eval_seconds"] += r.eval_seconds
        c["images_per_second"] += r.images_per_second
    for c in acc.values():
        c["mean_eval_seconds"] = c.pop("eval_seconds") / c["runs"]
        c["mean_images_per_second"] = c.pop("images_per_second") / c["runs"]
    return sorted(acc.values(), key=lambda c: c["method"])


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v, digits) for v in value) + "]"
    return str(value)


TABLE_COLUMNS = ("batch", "corruption", "severity", "model", "method", "state", "group", "top1", "gap", "change",
                 "change_ci", "p_value", "regression")


def render_markdown(doc: dict[str, Any]) -> str:
    """The report as Markdown."""
    lines = [f"# Nightly report: job {doc['job_run_id']} ({doc['trigger']})", "",
             f"Code version `{doc['code_version']}`, generated {doc['generated_at']}. Regressions: {doc['test']}, "
             f"alpha = {doc['alpha']}.", "", "## Accuracy per batch", "",
             "| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in TABLE_COLUMNS) + " |" for r in doc["rows"]]
    lines += ["", "## Cost per method", "", "| method | trainable params | stored params | runs | mean eval s | images/s |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {c['method']} | {c['trainable_params']} | {c['stored_params']} | {c['runs']} | "
              f"{c['mean_eval_seconds']:.3f} | {c['mean_images_per_second']:.1f} |" for c in doc["costs"]]
    lines += ["", "## Alerts", ""] + ([f"- {a}" for a in doc["alerts"]] or ["- none"])
    return "\n".join(lines) + "\n"


def render_html(doc: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no external resources)."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in TABLE_COLUMNS)
    body = "".join(
        "<tr" + (' class="reg"' if r.get("regression") else "") + ">"
        + "".join(f"<td>{esc(_fmt(r.get(c)))}</td>" for c in TABLE_COLUMNS) + "</tr>"
        for r in doc["rows"]
    )
    costs = "".join(f"<tr><td>{esc(c['method'])}</td><td>{c['trainable_params']}</td><td>{c['stored_params']}</td>"
                    f"<td>{c['mean_eval_seconds']:.3f}</td></tr>" for c in doc["costs"])
    alerts = "".join(f"<li>{esc(a)}</li>" for a in doc["alerts"]) or "<li>none</li>"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>lpt nightly report, job {doc['job_run_id']}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px;font-size:12px}tr.reg{background:#fdd}</style></head><body>"
        f"<h1>Nightly report: job {doc['job_run_id']} ({esc(doc['trigger'])})</h1>"
        f"<p>Code version <code>{esc(doc['code_version'])}</code>, generated {esc(doc['generated_at'])}. "
        f"Regressions: {esc(doc['test'])}, alpha = {doc['alpha']}.</p>"
        f"<h2>Top-1 per batch</h2>{bar_chart_svg(doc['rows'])}"
        f"<h2>Accuracy per batch</h2><table><tr>{head}</tr>{body}</table>"
        "<h2>Cost per method</h2><table><tr><th>method</th><th>trainable params</th><th>stored params</th>"
        f"<th>mean eval s</th></tr>{costs}</table><h2>Alerts</h2><ul>{alerts}</ul></body></html>\n"
    )


def bar_chart_svg(rows: list[dict[str, Any]], width: int = 720, height: int = 240) -> str:
    """Grouped bars of overall top-1 per batch, one bar per model, coloured by method (inline SVG)."""
    overall = [r for r in rows if r["group"] == "overall"]
    batches = list(dict.fromkeys(r["batch"] for r in overall))
    if not batches:
        return "<p>No overall results in this run.</p>"
    esc, pad, slot = html.escape, 30, (width - 40) / len(batches)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 40}' role='img'>"]
    for i, batch in enumerate(batches):
        bars = [r for r in overall if r["batch"] == batch]
        w = max(slot * 0.8 / len(bars), 1.0)
        for j, r in enumerate(bars):
            h = max(0.0, min(1.0, r["top1"])) * (height - pad)
            x, y = 40 + i * slot + j * w, height - h
            colour = METHOD_COLOURS.get(r["method"], "#999")
            parts.append(f"<rect x='{x:.1f}' y='{y:.1f}' width='{w:.1f}' height='{h:.1f}' fill='{colour}'>"
                         f"<title>{esc(r['model'])} on {esc(batch)}: {r['top1']:.4f}</title></rect>")
        parts.append(f"<text x='{40 + i * slot:.1f}' y='{height + 14}' font-size='10'>{esc(batch[:18])}</text>")
    parts.append(f"<line x1='38' y1='{pad}' x2='38' y2='{height}' stroke='#000'/>"
                 f"<text x='0' y='{pad + 4}' font-size='10'>1.0</text><text x='0' y='{height}' font-size='10'>0.0</text>")
    legend = " ".join(f"<tspan fill='{c}'>&#9632; {m}</tspan>" for m, c in METHOD_COLOURS.items())
    parts.append(f"<text x='40' y='{height + 34}' font-size='11'>{legend}</text></svg>")
    return "".join(parts)
