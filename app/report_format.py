"""Formatting shared by the report's renderings (:mod:`app.report_render`,
:mod:`app.report_monitoring`): accuracies, differences, p-values, conditions, tables, figures."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any


def condition(corruption: str, severity: int) -> str:
    """"clean", "<corruption> s<severity>", the corruption alone for mixed severities (0), or
    "production (shift unknown)" for a batch of unknown shift (corruption "unknown")."""
    if corruption == "none":
        return "clean"
    if corruption == "unknown":
        return "production (shift unknown)"
    return f"{corruption} s{int(severity)}" if int(severity) > 0 else f"{corruption} (mixed severities)"


def missing(v: Any) -> bool:
    """Whether a value is absent (None or NaN)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def pct(v: Any) -> str:
    """An accuracy as "55.4%" ("-" when missing)."""
    return "-" if missing(v) else f"{100 * v:.1f}%"


def pp(v: Any) -> str:
    """A difference of accuracies as "+4.6 pp" ("-" when missing)."""
    return "-" if missing(v) else f"{100 * v:+.1f} pp"


def points(v: Any) -> str:
    """A size in percentage points as "4.6 pp" ("-" when missing)."""
    return "-" if missing(v) else f"{100 * v:.1f} pp"


def ci_pp(lo: Any, hi: Any) -> str:
    """An interval of differences as "[-1.2, +10.4]"."""
    return "" if missing(lo) or missing(hi) else f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"


def pval(v: Any) -> str:
    """A p-value with two significant digits ("-" when missing)."""
    return "-" if missing(v) else f"{v:.2g}"


def md_table(head: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    """A Markdown table as lines."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def html_table(head: tuple[str, ...], rows: list[list[str]], classes: Callable[[int], str] | None = None,
                css: str = "") -> str:
    """An HTML table (cells escaped); ``classes(i)`` adds attributes to row i, ``css`` a class."""
    esc = html.escape
    body = "".join(f"<tr{classes(i) if classes else ''}>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>"
                   for i, r in enumerate(rows))
    table = f"<table class='{css}'>" if css else "<table>"
    return table + "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + f"</tr>{body}</table>"


def figure(svgs: dict[str, str], name: str) -> str:
    """The named chart as a ``<figure>``, or "" when the report has no such chart."""
    return f"<figure>{svgs[name]}</figure>" if name in svgs else ""
