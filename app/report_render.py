"""Rendering of the nightly report document (:func:`app.report.build_report`) as Markdown and as
one self-contained HTML page (inline CSS and SVG charts, no scripts, no external resources).

The summary comes first and reads the same in both: the deployed model, each new batch with its
change and significance, each batch without labels with its estimate (the estimator named), shift
tests and class-prior change, the deployed model against full fine-tuning, the alerts and the gate.
Estimated values are marked "est." / "estimated" wherever they appear.
"""

from __future__ import annotations

import html
from typing import Any

from app import report_monitoring as monitoring
from app.report_format import (
    ci_pp,
    condition,
    figure,
    html_table,
    md_table,
    missing,
    pct,
    points,
    pp,
)

__all__ = ["condition", "html_page", "markdown", "summary_items", "table_cells"]

TABLE_HEAD = ("model", "role", "condition", "batch", "images", "top-1 [95% CI]", "many", "medium", "few", "gap",
              "change [95% CI]", "p")
CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1240px;color:#222;"
    "padding:0 1em}h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px "
    "solid #ddd}.meta{color:#666;font-size:.9em}table{border-collapse:collapse;margin:.6em 0}td,th{border:1px "
    "solid #ccc;padding:3px 6px;font-size:12px;text-align:right;white-space:nowrap}td:first-child,th:first-child,td.l{text-align:"
    "left}th{background:#f3f3f3}tr.reg td{background:#fde0dc}dl.summary{display:grid;grid-template-columns:"
    "max-content 1fr;gap:.35em 1.2em;font-size:15px;background:#f7f7f7;padding:1em;border-radius:6px}"
    "table.rows td:nth-child(-n+4),table.rows th:nth-child(-n+4){text-align:left}.wide{overflow-x:auto}"
    "dl.summary dt{font-weight:600}dl.summary dd{margin:0}.bad{color:#b00020;font-weight:600}.good{color:"
    "#17692b;font-weight:600}figure{margin:1em 0}svg{max-width:100%;height:auto}tr.est td{font-style:italic;"
    "background:#eef5fb}"
)


def verdict(row: dict[str, Any], alpha: float) -> str:
    """The plain-words outcome of a row's change since the previous comparable batch."""
    if "change" not in row:
        return "first batch of its kind for this model"
    if row.get("regression"):
        return "significant DROP"
    return "significant rise" if row["change"] > 0 and row["p_value"] < alpha else "no significant change"


def _subject_text(doc: dict[str, Any]) -> str:
    s = doc["subject"]
    if s is None:
        return "no LPT or VPT model is registered yet"
    what = f"{s['model']} ({s['method_label']}, {s['trainable_params']:,} trainable parameters)"
    if s["state"] == "deployed":
        return what
    return f"nothing is deployed; shown: the first candidate, {what}. Deploy with `lpt models promote NAME --reason ...`"


def batch_text(row: dict[str, Any], alpha: float) -> str:
    """One new batch of the subject: top-1 with interval, change with interval, p and verdict."""
    images = f"{row['n']} images" + (f": {row['labels_note']}" if row.get("labels_note") else "")
    head = f"{row['condition']} (batch {row['batch']}, {images}): top-1 {pct(row['top1'])} " \
           f"[{pct(row['ci_low'])}, {pct(row['ci_high'])}]"
    if "change" not in row:
        return f"{head}; {verdict(row, alpha)}"
    return (f"{head}; {pp(row['change'])} {ci_pp(*row['change_ci'])} since {row['prev_batch']} "
            f"(p = {row['p_value']:.2g}): {verdict(row, alpha)}")


def _measure(records: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return next((r for r in records if r["measure"] == key), {})


def versus_text(doc: dict[str, Any]) -> str:
    """The subject against full fine-tuning: this job's shifted batches, all batches, clean, gap."""
    v = doc["versus"]
    if v is None:
        return "no full fine-tuning model to compare with"
    a, b = v["model"], v["reference"]
    night, every = _measure(v["tonight"], "shifted"), _measure(v["all"], "shifted")
    parts = []
    if night.get("n_batches"):
        parts.append(f"on this job's {night['n_batches']} shifted batch(es) {a} {pct(night['value_a'])} vs {b} "
                     f"{pct(night['value_b'])}, {pp(night['diff'])} {ci_pp(night['ci_low'], night['ci_high'])}")
    else:
        parts.append("this job evaluated no shifted batch of both")
    if every.get("n_batches"):
        parts.append(f"on all {every['n_batches']} shifted batches both have {pp(every['diff'])} "
                     f"{ci_pp(every['ci_low'], every['ci_high'])}")
    clean, gap = _measure(v["all"], "clean"), _measure(v["all"], "gap")
    if clean.get("n_batches"):
        parts.append(f"clean {pct(clean['value_a'])} vs {pct(clean['value_b'])} ({pp(clean['diff'])} "
                     f"{ci_pp(clean['ci_low'], clean['ci_high'])}); robustness gap (clean - shifted) "
                     f"{points(gap.get('value_a'))} vs {points(gap.get('value_b'))}")
    return "; ".join(parts) + " (95% intervals, percentage points)"


def alerts_text(doc: dict[str, Any]) -> str:
    """How many alerts the job raised and of which kinds ("none" when quiet)."""
    if not doc["alerts"]:
        return "none"
    kinds: dict[str, int] = {}
    for line in doc["alerts"]:
        kind = line[1:line.index("]")] if line.startswith("[") else "regression"
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in kinds.items()) + " (listed below)"


def answer_text(doc: dict[str, Any]) -> str:
    """One sentence: did the deployed model drop significantly, and where does it stand against
    full fine-tuning under shift."""
    s, batches = doc["subject"], doc["batches"]
    if s is None:
        return "no LPT or VPT model to judge yet"
    drops = [r for r in batches if r.get("regression_groups")]
    if drops:
        head = f"{s['model']} fell significantly on {len(drops)} of this job's {len(batches)} batch(es) (red rows below)"
    elif batches:
        head = f"{s['model']} holds up: no significant drop on this job's {len(batches)} labelled batch(es)"
    elif doc["monitoring"]["unlabeled"]:
        head = f"{s['model']} was evaluated only on batches without labels in this job"
    else:
        head = f"this job did not evaluate {s['model']}"
    unlabeled = doc["monitoring"]["unlabeled"]
    if unlabeled:
        shifted = sum(r["shift"] is not None and r["shift"]["verdict"] == "shift detected" for r in unlabeled)
        head += (f"; {len(unlabeled)} batch(es) without labels: estimated top-1 "
                 f"{', '.join(pct(r['top1']) for r in unlabeled)} ({unlabeled[0]['estimator_short']}), "
                 f"shift detected on {shifted}")
    every = _measure(doc["versus"]["all"], "shifted") if doc["versus"] else {}
    if every.get("n_batches"):
        rel = "above" if every["ci_low"] > 0 else "below" if every["ci_high"] < 0 else "not distinguishable from"
        head += (f"; under shift it is {rel} {doc['reference']['method_label']} ({pp(every['diff'])} "
                 f"{ci_pp(every['ci_low'], every['ci_high'])}, {every['n_batches']} batches)")
    return head


def summary_items(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) lines of the summary, in reading order."""
    items = [("Answer", answer_text(doc)), ("Deployed", _subject_text(doc))]
    items += [("New batch", batch_text(r, doc["alpha"])) for r in doc["batches"]]
    unlabeled = doc["monitoring"]["unlabeled"]
    short = doc["monitoring"]["estimator_short"]
    for row in unlabeled:
        items += [("Unlabeled batch", monitoring.estimate_text(row, short)), ("Shift tests", monitoring.shift_text(row, doc["alpha"])),
                  ("Class prior", monitoring.prior_text(row))]
    if not doc["batches"] and not unlabeled:
        items.append(("New batches", "this job did not evaluate the deployed model"))
    if errors := monitoring.errors_text(doc):
        items.append(("Estimates vs labels", errors))
    ref = doc["reference"]
    items.append((f"vs {ref['method_label'] if ref else 'full fine-tuning'}", versus_text(doc)))
    items += [("Alerts", alerts_text(doc)), ("Gate", doc["gate"]["decision"])]
    return items


def table_cells(row: dict[str, Any], short: bool = False) -> list[str]:
    """The compact table's cells of one model-and-batch row (``short``: the batch id's tail);
    an estimated row's values read "est." and name the estimator."""
    batch = "…" + row["batch"][-12:] if short and len(row["batch"]) > 16 else row["batch"]
    head = [row["model"], row["role"], row["condition"], batch]
    if row.get("kind") == "estimated":
        return head + [f"{row['n']}, no labels", f"est. {pct(row['top1'])} ({row['estimator_short']})",
                       *(f"est. {pct(row[g])}" if not missing(row[g]) else "-" for g in ("many", "medium", "few")),
                       "-", "- (no labels)", "-"]
    change = "" if "change" not in row else f"{pp(row['change'])} {ci_pp(*row['change_ci'])}"
    images = str(row["n"]) + (" (late labels)" if row.get("labels_note") else "")
    return head + [images, f"{pct(row['top1'])} [{pct(row['ci_low'])}, {pct(row['ci_high'])}]", pct(row["many"]),
                   pct(row["medium"]), pct(row["few"]), points(row["gap"]),
                   change or "-", f"{row['p_value']:.2g}" if "p_value" in row else "-"]


def _title(doc: dict[str, Any]) -> str:
    job = doc["job"]
    return f"Nightly report · job {job['job_run_id']} ({job['trigger']}) · {str(job['started_at'])[:10]}"


def _costs(doc: dict[str, Any]) -> list[list[str]]:
    return [[c["method"], f"{c['trainable_params']:,}", f"{c['stored_params']:,}", str(c["runs"]),
             f"{c['mean_eval_seconds']:.2f}", f"{c['mean_images_per_second']:.0f}"] for c in doc["costs"]]


COST_HEAD = ("method", "trainable params", "stored params", "runs", "mean eval s", "images/s")
CLASS_HEAD = ("class", "training images", "condition", "top-1", "images")


def _classes(doc: dict[str, Any]) -> list[list[str]]:
    return [[str(c["class_id"]), str(c["train_count"]), c["condition"], pct(c["value"]), str(c["n"])]
            for c in doc["per_class"]]


def markdown(doc: dict[str, Any]) -> str:
    """The report as Markdown (the HTML file has the charts)."""
    lines = [f"# {_title(doc)}", "", "## Summary", ""]
    lines += [f"- **{label}:** {text}" for label, text in summary_items(doc)]
    lines += ["", f"Changes: {doc['test']}, alpha = {doc['alpha']}. Gate rule: {doc['gate']['rule']}.", "",
              "## Every model on this job's batches", ""]
    lines += md_table(TABLE_HEAD, [table_cells(r) for r in doc["rows"]])
    if doc["per_class"]:
        lines += ["", f"## Per-class accuracy of {doc['subject']['model']}", ""]
        lines += md_table(CLASS_HEAD, _classes(doc))
    lines += monitoring.markdown_section(doc)
    lines += ["", "## Alerts", ""] + ([f"- {a}" for a in doc["alerts"]] or ["- none"])
    lines += ["", "## Cost per method", ""] + md_table(COST_HEAD, _costs(doc))
    return "\n".join(lines) + "\n"


def html_page(doc: dict[str, Any], svgs: dict[str, str]) -> str:
    """The report as one self-contained HTML page; ``svgs`` maps chart names to inline SVG."""
    esc = html.escape
    summary = "".join(f"<dt>{esc(k)}</dt><dd{' class=bad' if _bad(v) else ''}>{esc(v)}</dd>"
                      for k, v in summary_items(doc))
    rows = doc["rows"]
    table = html_table(TABLE_HEAD, [table_cells(r, short=True) for r in rows], lambda i: _row_class(rows[i]),
                        css="rows")
    alerts = "".join(f"<li>{esc(a)}</li>" for a in doc["alerts"]) or "<li>none</li>"
    subject = doc["subject"]["model"] if doc["subject"] else "the deployed model"
    classes = (f"<section id='classes'><h2>Per-class accuracy of {esc(subject)}</h2>{figure(svgs, 'classes')}"
               f"<details><summary>table</summary>{html_table(CLASS_HEAD, _classes(doc))}</details></section>"
               if doc["per_class"] else "")
    trend = f"<section id='trend'><h2>Trend</h2>{figure(svgs, 'trend')}</section>" if "trend" in svgs else ""
    job = doc["job"]
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(_title(doc))}</title>"
        f"<style>{CSS}</style></head><body><h1>{esc(_title(doc))}</h1>"
        f"<p class='meta'>Code version <code>{esc(str(job['code_version']))}</code>; generated "
        f"{esc(doc['generated_at'][:19])} UTC.</p>"
        f"<section id='summary'><h2>Summary</h2><dl class='summary'>{summary}</dl>{figure(svgs, 'versus')}</section>"
        f"<section id='batches'><h2>Every model on this job's batches</h2>{figure(svgs, 'batches')}<div class='wide'>{table}</div>"
        f"<p class='meta'>Batch: the end of its id (full ids in the summary and the JSON). Gap: the model's "
        f"latest clean top-1 minus this batch's. Change: since the model's "
        f"previous batch of the same kind; {esc(doc['test'])}, alpha = {doc['alpha']}; red rows fell "
        f"significantly (overall or a shot group); blue italic rows are estimated (no labels: est. values, "
        f"many/medium/few predicted-group).</p></section>{trend}{monitoring.html_section(doc, svgs)}{classes}"
        f"<section id='alerts'><h2>Alerts and gate</h2><ul>{alerts}</ul><p>Gate: {esc(doc['gate']['decision'])}. "
        f"Rule: {esc(doc['gate']['rule'])}.</p></section>"
        f"<section id='costs'><h2>Cost per method</h2>{html_table(COST_HEAD, _costs(doc))}</section>"
        "</body></html>\n"
    )


def _bad(text: str) -> bool:
    return "DROP" in text or "fell" in text or "DETECTED" in text


def _row_class(row: dict[str, Any]) -> str:
    if row.get("regression_groups"):
        return ' class="reg"'
    return ' class="est"' if row.get("kind") == "estimated" else ""


