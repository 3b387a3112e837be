"""Data validation with Great Expectations (GX Core 1.x): prepared datasets and shift batches.

Arrays are summarised into small pandas tables (one row per image, per split or per class) and
each table is checked by an expectation suite built in code, through one ephemeral GX context
per process (GX is imported lazily: its import alone takes seconds). A report carries the
GX results (``to_json_dict()``), the failed expectations with their offending values, and can
be written as JSON plus a self-contained HTML page that reads offline (GX's own Data Docs
pull their CSS/JS from CDNs).
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lpt_core.data import longtail
from lpt_core.data.store import PreparedDataset, image_hashes

_STATE: dict[str, Any] = {}


class DataValidationError(ValueError):
    """Data failed validation; ``report`` lists every failed expectation."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.summary())


@dataclass
class ValidationReport:
    """Outcome of one validation: overall success, failures, the GX results and where they were written."""

    suite: str
    success: bool
    failures: list[dict[str, Any]]
    result: dict[str, Any]
    paths: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A human-readable multi-line summary naming each failed expectation and its offending values."""
        if self.success:
            return f"{self.suite}: all expectations passed"
        lines = [plain_words(f) for f in self.failures]  # plain words first, then the expectation details
        lines.append(f"{self.suite}: {len(self.failures)} expectation(s) failed")
        for f in self.failures:
            lines.append(f"  - [{f['table']}] {f['expectation']} {f['target']}: {f['offending']}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def raise_for_failure(self) -> None:
        """Raise :class:`DataValidationError` unless every expectation passed."""
        if not self.success:
            raise DataValidationError(self)

    def write(self, out_dir: str | Path, stem: str = "validation") -> dict[str, str]:
        """Write ``<stem>.json`` (GX results) and ``<stem>.html`` (offline) to ``out_dir``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        doc = {"suite": self.suite, "success": self.success, "failures": self.failures, "gx": self.result}
        (out / f"{stem}.json").write_text(json.dumps(doc, indent=2, default=str))
        (out / f"{stem}.html").write_text(render_html(self))
        self.paths = {"json": str(out / f"{stem}.json"), "html": str(out / f"{stem}.html")}
        return self.paths


def _plural(word: str, n: Any) -> str:
    return word if n == 1 else (word[:-1] + "ies" if word.endswith("y") else word + "s")


def _num(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def plain_words(f: dict[str, Any]) -> str:
    """One failed expectation in plain words, e.g. "64 labels out of range 0..4; first: 7 at index 0"."""
    kind, exp, off = f["expectation"], f["expected"], f["offending"]
    column = f["target"].get("column") or " and ".join(str(v) for v in f["target"].values())
    values, count = off.get("values") or [], off.get("unexpected_count")
    first = f"; first: {values[0]!r}" if values else ""
    first += f" at index {off['first_index']}" if values and off.get("first_index") is not None else ""
    if kind == "expect_column_values_to_be_between":
        lo, hi = _num(exp.get("min_value")), _num(exp.get("max_value"))
        bounds = f"{lo}..{hi}" if lo is not None and hi is not None else f">= {lo}" if hi is None else f"<= {hi}"
        return f"{count} {_plural(column, count)} out of range {bounds}{first}"
    if kind == "expect_column_values_to_be_in_set":
        if count == 1 and values:
            return f"{column} is {values[0]!r}, expected one of {exp.get('value_set')}"
        return f"{count} {_plural(column, count)} not in {exp.get('value_set')}{first}"
    if kind == "expect_column_values_to_not_be_in_set":
        return f"{count} {_plural(column, count)} already registered (a duplicate){first}"
    if kind == "expect_column_values_to_not_be_null":
        return f"{count} missing {_plural(column, count)}{first}"
    if kind == "expect_column_values_to_be_unique":
        return f"{count} duplicate {_plural(column, count)}{first}"
    if kind == "expect_column_pair_values_to_be_equal" and values:
        return f"{column} differ: {' vs '.join(str(v) for v in values[0])}"
    return f"{kind} failed on {column}: {off}"


# --------------------------------------------------------------------------- GX plumbing


def _gx() -> tuple[Any, Any, Any]:
    """(gx module, expectations module, the process's ephemeral context), created once."""
    if "ctx" not in _STATE:
        # GX logs every internal registration at INFO; keep the CLI's INFO output readable.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        _STATE.update(gx=gx, gxe=gxe, ctx=ctx, ds=ctx.data_sources.add_or_update_pandas("lpt"))
    return _STATE["gx"], _STATE["gxe"], _STATE["ctx"]


def _run_table(table: str, df: pd.DataFrame, expectations: list[Any]) -> Any:
    """Validate ``df`` against a suite of ``expectations`` named after ``table``; returns the GX result."""
    gx, _, ctx = _gx()
    batch_defs = _STATE.setdefault("batch_defs", {})
    if table not in batch_defs:
        asset = _STATE["ds"].add_dataframe_asset(table)
        batch_defs[table] = asset.add_batch_definition_whole_dataframe(table)
    batch_def = batch_defs[table]
    suite = ctx.suites.add_or_update(gx.ExpectationSuite(name=f"lpt-{table}", expectations=expectations))
    vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(data=batch_def, suite=suite, name=table))
    return vd.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")


def _collect(suite: str, tables: dict[str, tuple[pd.DataFrame, list[Any]]]) -> ValidationReport:
    results, failures = {}, []
    for name, (df, exps) in tables.items():
        res = _run_table(name, df, exps)
        doc = without_run_details(res.to_json_dict())
        results[name] = doc
        failures += [_failure(name, r) for r in doc["results"] if not r["success"]]
    return ValidationReport(suite, not failures, failures, {"suite": suite, "tables": results})


#: keys of a GX result that describe the run (times, random ids), not the data
RUN_DETAIL_KEYS = frozenset({"ge_load_time", "run_id", "validation_time", "validation_id"})


def without_run_details(doc: Any) -> Any:
    """``doc`` without :data:`RUN_DETAIL_KEYS` at any depth, nor the random ``id`` GX gives an
    expectation added to a suite: the same data gives the same report bytes."""
    if isinstance(doc, dict):
        expectation = "type" in doc and "kwargs" in doc
        return {k: without_run_details(v) for k, v in doc.items()
                if k not in RUN_DETAIL_KEYS and not (expectation and k == "id")}
    if isinstance(doc, list):
        return [without_run_details(v) for v in doc]
    return doc


def _failure(table: str, r: dict[str, Any]) -> dict[str, Any]:
    cfg = r["expectation_config"]
    kwargs = {k: v for k, v in cfg["kwargs"].items() if k != "batch_id"}
    target = {k: v for k, v in kwargs.items() if k.startswith("column")}
    res = r.get("result") or {}
    if "partial_unexpected_list" in res:
        offending: Any = {"unexpected_count": res.get("unexpected_count"), "values": res["partial_unexpected_list"]}
        if res.get("partial_unexpected_index_list"):
            offending["first_index"] = res["partial_unexpected_index_list"][0]
    else:
        offending = {"observed_value": res.get("observed_value")}
    exc = (r.get("exception_info") or {}).get("exception_message")
    if exc:
        offending["exception"] = exc
    expected = {k: v for k, v in kwargs.items() if not k.startswith("column") and k != "value_set"}
    if "value_set" in kwargs:
        vs = list(kwargs["value_set"])
        expected["value_set"] = vs if len(vs) <= 10 else f"{len(vs)} values"
    return {"table": table, "expectation": cfg["type"], "target": target, "expected": expected, "offending": offending}


def _array_row(name: str, images: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Shape, dtype, range and NaN facts of one image array and its labels (``None``: unlabeled)."""
    shape = tuple(images.shape) + (-1,) * max(0, 4 - images.ndim)
    floating = np.issubdtype(images.dtype, np.floating)
    size = int(images.size)
    row = {
        "array": name, "dtype": str(images.dtype), "ndim": int(images.ndim),
        "height": int(shape[1]), "width": int(shape[2]), "channels": int(shape[3]) if images.ndim >= 4 else -1,
        "n_images": int(shape[0]) if images.ndim else 0,
        "min": float(np.nanmin(images)) if size else 0.0, "max": float(np.nanmax(images)) if size else 0.0,
        "nan_count": int(np.isnan(images).sum()) if floating else 0,
    }  # fmt: skip
    if labels is not None:
        row.update(n_labels=int(len(labels)) if labels.ndim else 0, labels_ndim=int(labels.ndim))
    return row


def _array_expectations(gxe: Any, image_shape: tuple[int, int], min_images: int, labeled: bool = True) -> list[Any]:
    h, w = image_shape
    label_exps = [
        gxe.ExpectColumnValuesToBeInSet(column="labels_ndim", value_set=[1]),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="n_images", column_B="n_labels"),
    ]
    return [
        gxe.ExpectColumnValuesToBeInSet(column="dtype", value_set=["uint8"]),
        gxe.ExpectColumnValuesToBeInSet(column="ndim", value_set=[4]),
        gxe.ExpectColumnValuesToBeInSet(column="height", value_set=[h]),
        gxe.ExpectColumnValuesToBeInSet(column="width", value_set=[w]),
        gxe.ExpectColumnValuesToBeInSet(column="channels", value_set=[3]),
        *(label_exps if labeled else []),
        gxe.ExpectColumnValuesToBeBetween(column="n_images", min_value=min_images),
        gxe.ExpectColumnValuesToBeBetween(column="min", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="max", max_value=255),
        gxe.ExpectColumnValuesToBeInSet(column="nan_count", value_set=[0]),
    ]


# --------------------------------------------------------------------------- prepared datasets


def expected_counts(meta: dict[str, Any]) -> tuple[list[int], list[int]]:
    """(train, val) per-class counts the stored profile implies, recomputed from its parameters
    (the released protocol: no hold-out; val = the official list's recorded counts, or none)."""
    prof = meta["profile"]
    if prof["kind"] == "longtail":
        before = longtail.longtail_counts(int(prof["n_max"]), int(prof["num_classes"]), float(prof["rho"]))
    else:
        before = [int(c) for c in prof["counts_before_holdout"]]
    rule = prof["val_rule"]
    if "official_list" in rule:  # released protocol: whole split trains, the source's val list validates
        return before, [int(c) for c in prof["official_val_counts"]]
    if "none" in rule:  # released protocol without an official list: empty val split
        return before, [0] * len(before)
    hold = int(rule["val_per_class"]) if "val_per_class" in rule else float(rule["val_fraction"])
    val = longtail.holdout_sizes(before, hold)
    return [b - v for b, v in zip(before, val)], val


def _count_rows(data: PreparedDataset) -> pd.DataFrame:
    train_exp, val_exp = expected_counts(data.meta)
    rows = []
    for split, exp in (("train", train_exp), ("val", val_exp)):
        obs = np.bincount(getattr(data, split).labels, minlength=data.num_classes)
        n = max(len(obs), len(exp))
        exp_full = list(exp) + [0] * (n - len(exp))
        rows += [{"split": split, "label": c, "observed": int(obs[c]) if c < len(obs) else 0,
                  "expected": int(exp_full[c])} for c in range(n)]  # fmt: skip
    return pd.DataFrame(rows)


def validate_prepared(data: PreparedDataset, out_dir: str | Path | None = None) -> ValidationReport:
    """Validate a prepared dataset: label range, per-class counts per the profile, unique ids,
    no train/test overlap by content hash, image shape, dtype and value range."""
    _, gxe, _ = _gx()
    num = data.num_classes
    test_hashes = image_hashes(data.test.images)
    frames, arrays = [], []
    for split in ("train", "val", "test"):
        s = getattr(data, split)
        sha = image_hashes(s.images) if split != "test" else np.full(len(s), None, dtype=object)
        ids = s.ids if s.ids is not None else np.array([f"{split}-{i}" for i in range(len(s))])
        frames.append(pd.DataFrame({"split": split, "id": ids, "label": s.labels, "train_sha256": sha}))
        arrays.append(_array_row(split, np.asarray(s.images), np.asarray(s.labels)))
    images = pd.concat(frames, ignore_index=True)
    shape = tuple(data.meta.get("image_shape", data.train.images.shape[1:]))[:2]
    arrays_df = pd.DataFrame(arrays)
    arrays_df["nonempty_or_val"] = (arrays_df["n_images"] > 0) | (arrays_df["array"] == "val")
    tables = {
        "prepared_images": (images, [
            gxe.ExpectColumnValuesToNotBeNull(column="label"),
            gxe.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=num - 1),
            gxe.ExpectColumnValuesToBeUnique(column="id"),
            gxe.ExpectColumnValuesToNotBeInSet(column="train_sha256", value_set=sorted(set(test_hashes))),
        ]),
        "prepared_arrays": (arrays_df, [
            *_array_expectations(gxe, (int(shape[0]), int(shape[1])), 0),
            gxe.ExpectColumnValuesToBeInSet(column="nonempty_or_val", value_set=[True]),
        ]),
        "prepared_class_counts": (_count_rows(data), [
            gxe.ExpectColumnPairValuesToBeEqual(column_A="observed", column_B="expected"),
        ]),
    }  # fmt: skip
    report = _collect("prepared_dataset", tables)
    if out_dir is not None:
        report.write(out_dir)
    return report


# --------------------------------------------------------------------------- shift batches


def batch_content_hash(images: np.ndarray, labels: np.ndarray | None) -> str:
    """sha256 of the batch's image bytes (C order) followed by its int64 label bytes; with
    ``labels=None`` (an unlabeled batch) of the image bytes only."""
    import hashlib

    h = hashlib.sha256()
    arrays = [np.ascontiguousarray(images)]
    if labels is not None:
        arrays.append(np.ascontiguousarray(np.asarray(labels).astype(np.int64)))
    for a in arrays:
        h.update(a.data.cast("B") if a.size else b"")  # cast() rejects zero-size shapes
    return h.hexdigest()


def validate_batch(
    images: np.ndarray, labels: np.ndarray | None, *, num_classes: int, image_shape: tuple[int, int],
    severity: int | np.ndarray | None = None, registered_hashes: set[str] | frozenset[str] = frozenset(),
    registered_image_hashes: set[str] | frozenset[str] = frozenset(), out_dir: str | Path | None = None,
) -> ValidationReport:  # fmt: skip
    """Validate a shift batch: labels within the trained classes, consistent shapes, no NaN or
    empty arrays, equal lengths, severity in 1..5 when given, not a duplicate of a registered batch
    (its content hash not in ``registered_hashes``, its images-only hash not in
    ``registered_image_hashes``). ``labels=None`` validates an unlabeled batch: the same checks
    without the label ones."""
    _, gxe, _ = _gx()
    labels = None if labels is None else np.asarray(labels)
    arrays = pd.DataFrame([_array_row("batch", images, labels)])
    arrays["content_hash"] = batch_content_hash(images, labels)
    n_rows = int(images.shape[0]) if images.ndim else 0
    per_image = pd.DataFrame({"label": labels.reshape(-1)} if labels is not None else {"row": np.arange(n_rows)})
    image_exps = [] if labels is None else [
        gxe.ExpectColumnValuesToNotBeNull(column="label"),
        gxe.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=num_classes - 1),
    ]  # fmt: skip
    array_exps = _array_expectations(gxe, image_shape, 1, labeled=labels is not None)
    array_exps.append(gxe.ExpectColumnValuesToNotBeInSet(column="content_hash", value_set=sorted(registered_hashes)))
    if registered_image_hashes:
        arrays["images_hash"] = batch_content_hash(images, None)
        array_exps.append(gxe.ExpectColumnValuesToNotBeInSet(column="images_hash",
                                                             value_set=sorted(registered_image_hashes)))  # fmt: skip
    _severity_checks(gxe, severity, per_image, image_exps, arrays, array_exps)
    tables = {"batch_arrays": (arrays, array_exps)}
    if image_exps:
        tables = {"batch_images": (per_image, image_exps), **tables}
    report = _collect("shift_batch", tables)
    if out_dir is not None:
        report.write(out_dir)
    return report


def _severity_checks(
    gxe: Any, severity: Any, per_image: pd.DataFrame, image_exps: list[Any], arrays: pd.DataFrame, array_exps: list[Any]
) -> None:  # fmt: skip
    """Severity (scalar or one per image) in 1..5 when given (0 = n/a is not checked)."""
    if severity is None or (np.isscalar(severity) and int(severity) == 0):  # type: ignore[arg-type]
        return
    sev = np.broadcast_to(np.asarray(severity), per_image.shape[:1]) if np.ndim(severity) == 0 else severity
    if len(sev) == len(per_image):
        per_image["severity"] = np.asarray(sev)
        image_exps.append(gxe.ExpectColumnValuesToBeBetween(column="severity", min_value=1, max_value=5))
    else:
        arrays["severity_rows"] = len(sev)
        array_exps.append(gxe.ExpectColumnPairValuesToBeEqual(column_A="severity_rows", column_B="n_images"))


# --------------------------------------------------------------------------- offline HTML


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:13px;vertical-align:top}"
    "th{background:#f3f3f3}.ok{color:#17692b}.bad{color:#b00020;font-weight:bold}code{font-size:12px}"
)


def render_html(report: ValidationReport) -> str:
    """A self-contained HTML page of ``report`` (inline CSS, no scripts, no external resources)."""
    verdict = '<span class="ok">PASSED</span>' if report.success else '<span class="bad">FAILED</span>'
    rows = []
    for table, doc in report.result.get("tables", {}).items():
        for r in doc["results"]:
            f = _failure(table, r)
            status = '<span class="ok">ok</span>' if r["success"] else '<span class="bad">failed</span>'
            cells = [table, f["expectation"], json.dumps(f["target"]), json.dumps(f["expected"], default=str),
                     json.dumps(f["offending"], default=str)[:2000]]  # fmt: skip
            rows.append("<tr><td>" + status + "</td>" + "".join(f"<td><code>{html.escape(c)}</code></td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("status", "table", "expectation", "column", "expected", "observed"))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report.suite)} validation</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(report.suite)}: {verdict}</h1>"
        f"<p>{len(report.failures)} failed expectation(s). Produced by lpt_core.validation (Great Expectations).</p>"
        f"<table><tr>{head}</tr>{''.join(rows)}</table></body></html>"
    )
