"""The label-free part of the nightly report, rendered (MONITORING_SPEC.md): per batch without
labels the estimate with its estimator named (ATC, Garg et al., ICLR 2022; DoC, Guillory et al.,
ICCV 2021), predicted-group estimates, the shift tests with raw and Benjamini-Hochberg adjusted
p-values, the class prior estimated by BBSE (Lipton et al., ICML 2018), and the estimators' errors
where labels exist; as summary lines, Markdown and an HTML section."""

from __future__ import annotations

import html
from typing import Any

from app.report_format import (
    figure,
    html_table,
    md_table,
    missing,
    pct,
    points,
    pp,
    pval,
)


def _tail(batch_id: str) -> str:
    return "…" + batch_id[-12:] if len(batch_id) > 16 else batch_id


def estimate_text(row: dict[str, Any], short: dict[str, str]) -> str:
    """A batch without labels: the headline estimate (DoC beside it), the predicted-group
    estimates, and why no change is tested."""
    doc_est = row["estimates"].get("doc")
    beside = f"; {short.get('doc', 'doc')} {pct(doc_est)}" if doc_est is not None else ""
    groups = ", ".join(f"{g} {pct(row[g])}" for g in ("many", "medium", "few") if not missing(row[g]))
    text = (f"{row['condition']} (batch {row['batch']}, {row['n']} images, no labels): estimated top-1 "
            f"{pct(row['top1'])} ({row['estimator_short']}{beside})")
    if groups:
        text += f"; predicted-group estimates ({row['estimator_short']}): {groups}"
    return f"{text}; {row['no_test']}"


def _test(t: dict[str, Any]) -> str:
    return f"{t['detector_label']} p = {pval(t['p_value'])} (BH-adjusted {pval(t['p_adjusted'])})"


def shift_text(row: dict[str, Any], alpha: float) -> str:
    """The shift tests of one (model, batch): which detected a shift, each with its raw and
    Benjamini-Hochberg adjusted p-value."""
    s = row.get("shift") or {}
    if not s.get("tests"):
        return f"{row['batch']}: no shift test stored"
    found = [t for t in s["tests"] if t["verdict"] == "shift detected"]
    rest = [_test(t) for t in s["tests"] if t not in found]
    if s["verdict"] == "not yet adjusted":
        return f"{row['batch']}: {', '.join(rest)}; not yet adjusted over the night's tests"
    if found:
        text = f"{row['batch']}: shift DETECTED by {', '.join(_test(t) for t in found)}"
        text += f"; not by {', '.join(rest)}" if rest else ""
    else:
        text = f"{row['batch']}: no shift detected ({', '.join(rest)})"
    return f"{text}; Benjamini-Hochberg over the night's tests, alpha = {alpha}"


def _change(c: dict[str, Any]) -> str:
    return (f"class {c['class_id']} ({c['shot_group']}-shot, {c['train_count']} training images) "
            f"{pct(c['reference_share'])} → {pct(c['batch_share'])} ({pp(c['change'])})")


def prior_text(row: dict[str, Any]) -> str:
    """The classes whose share of a batch (estimated by BBSE) grew and shrank most from the
    reference prior, growth first."""
    s = row.get("shift") or {}
    changes = s.get("prior_changes") or []
    if not changes:
        return f"{row['batch']}: no class-prior estimate"
    grew = [_change(c) for c in changes if c["change"] > 0]
    shrank = [_change(c) for c in changes if c["change"] < 0]
    parts = ([f"growing {', '.join(grew)}"] if grew else []) + ([f"shrinking {', '.join(shrank)}"] if shrank else [])
    tv = f"; total variation {s['total_variation']:.2f} from the reference prior" if s.get("total_variation") else ""
    return f"{row['batch']} (BBSE, from {row['model']}'s predictions): {'; '.join(parts)}{tv}"


def errors_text(doc: dict[str, Any]) -> str | None:
    """The subject's estimators' mean absolute error on this job's labelled batches (None if none)."""
    subject = doc["subject"]["model"] if doc["subject"] else None
    mine = [e for e in doc["monitoring"]["errors"] if e["model"] == subject]
    if not mine:
        return None
    short = doc["monitoring"]["estimator_short"]
    parts = ", ".join(f"{short.get(e['estimator'], e['estimator'])} {points(e['mae'])}" for e in mine)
    return f"mean absolute error against the measured top-1 on this job's {mine[0]['n_batches']} labelled batch(es): {parts}"


MONITORING_NOTE = (
    "Label-free estimates, for batches without labels: ATC (Garg et al., ICLR 2022) counts the images whose "
    "confidence exceeds a threshold fitted on labelled reference data; DoC (Guillory et al., ICCV 2021) lowers the "
    "reference accuracy by the drop in mean confidence. An estimated row's many / medium / few are predicted-group "
    "estimates (\"pred.\"): the images whose PREDICTED class is in the group (true groups need labels). No change is tested "
    "for an estimate. Shift tests: BBSD (Kolmogorov-Smirnov on the softmax outputs, Bonferroni over classes); for "
    "LPT also its prompt-selection frequencies (chi-square) and query-key cosine; p-values adjusted by "
    "Benjamini-Hochberg over the night's tests. Class prior: estimated by BBSE from the predictions.")


TEST_HEAD = ("model", "condition", "batch", "test", "statistic", "p", "BH-adjusted p", "verdict")


PRIOR_HEAD = ("batch", "class", "shot group", "training images", "training prior", "reference prior",
              "batch prior (estimated)", "change from reference")


def _estimate_table(doc: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """Every estimator's top-1 per (model, batch without labels), and the predicted-group estimates
    (the condition is in the compact table above)."""
    short = doc["monitoring"]["estimator_short"]
    head = ("model", "batch", "images", *(f"{v} (est.)" for v in short.values()),
            "pred. many (est.)", "pred. medium (est.)", "pred. few (est.)")
    rows = [[r["model"], _tail(r["batch"]), str(r["n"]),
             *(pct(r["estimates"].get(k)) for k in short), pct(r["many"]), pct(r["medium"]), pct(r["few"])]
            for r in doc["rows"] if r["kind"] == "estimated"]
    return head, rows


def _test_rows(doc: dict[str, Any], estimated: bool) -> list[list[str]]:
    """The shift tests of the batches without labels (``estimated``) or of the labelled ones."""
    return [[r["model"], r["condition"], _tail(r["batch"]), t["detector_label"], f"{t['statistic']:.3g}", pval(t["p_value"]),
             pval(t["p_adjusted"]), t["verdict"]] for r in doc["rows"] if (r["kind"] == "estimated") == estimated
            for t in (r.get("shift") or {}).get("tests", [])]


def _error_table(doc: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """Per model: each estimator's mean absolute error on this job's labelled batches."""
    short = doc["monitoring"]["estimator_short"]
    by_model: dict[str, dict[str, Any]] = {}
    for e in doc["monitoring"]["errors"]:
        by_model.setdefault(e["model"], {"n": e["n_batches"]})[e["estimator"]] = e["mae"]
    rows = [[m, str(v["n"]), *(points(v.get(k)) for k in short)] for m, v in by_model.items()]
    return ("model", "labelled batches", *(f"{v}: mean abs. error" for v in short.values())), rows


def _prior_rows(doc: dict[str, Any]) -> list[list[str]]:
    return [[c["batch_id"], str(c["class_id"]), c["shot_group"], str(c["train_count"]), pct(c["training_share"]),
             pct(c["reference_share"]), pct(c["batch_share"]), pp(c["change"])] for c in doc["monitoring"]["priors"]]


def markdown_section(doc: dict[str, Any]) -> list[str]:
    """The label-free section as Markdown lines."""
    lines = ["", "## Label-free monitoring", "", MONITORING_NOTE, ""]
    head, rows = _estimate_table(doc)
    if rows:
        lines += ["### Batches without labels: estimated top-1", ""] + md_table(head, rows) + [""]
    tests = _test_rows(doc, True) + _test_rows(doc, False)
    lines += ["### Shift tests", ""] + (md_table(TEST_HEAD, tests) if tests else ["none stored"])
    if doc["monitoring"]["errors"]:
        lines += ["", "### Estimates against measurements (this job's labelled batches)", ""]
        lines += md_table(*_error_table(doc))
    return lines


def html_section(doc: dict[str, Any], svgs: dict[str, str]) -> str:
    """The label-free section: estimates of batches without labels, shift tests, class priors,
    estimates against measurements."""
    esc = html.escape
    head, rows = _estimate_table(doc)
    parts = [f"<section id='monitoring'><h2>Label-free monitoring</h2><p class='meta'>{esc(MONITORING_NOTE)}</p>"]
    if rows:
        parts.append(f"<h3>Batches without labels: estimated top-1</h3><div class='wide'>"
                     f"{html_table(head, rows)}</div>")
    tests, labelled = _test_rows(doc, True), _test_rows(doc, False)
    parts.append("<h3>Shift tests</h3>" + (f"<div class='wide'>{html_table(TEST_HEAD, tests, css='rows')}</div>"
                                            if tests else "<p>No batch without labels in this job.</p>"))
    if labelled:
        parts.append(f"<details><summary>shift tests on this job's labelled batches ({len(labelled)})</summary>"
                     f"<div class='wide'>{html_table(TEST_HEAD, labelled, css='rows')}</div></details>")
    if "priors" in svgs:
        parts.append(f"<h3>Class prior (estimated)</h3>{figure(svgs, 'priors')}<details><summary>table</summary>"
                     f"{html_table(PRIOR_HEAD, _prior_rows(doc))}</details>")
    if "estimates" in svgs:
        parts.append(f"<h3>Estimates against measurements</h3>{figure(svgs, 'estimates')}{figure(svgs, 'errors')}")
    if doc["monitoring"]["errors"]:
        parts.append(f"<p>On this job's labelled batches:</p>{html_table(*_error_table(doc))}")
    return "".join(parts) + "</section>"
