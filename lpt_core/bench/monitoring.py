"""How good the label-free monitoring is on the quickstart (MONITORING_SPEC.md, "Checks that keep
these honest"): estimation error with the labels hidden, false alarms on clean batches, detection
of corruptions, and what it costs a nightly pair. ``lpt monitoring measure`` runs it after
``dvc repro`` and writes docs/MONITORING.md's measured block.

- Estimation error: every pipeline shift set (clean + its corruptions x severities) and four
  corruptions the pipeline does not use (shot noise, motion blur, fog, pixelate) at severities 1,
  3 and 5 on held-out clean images; each estimator's absolute error against the measured top-1,
  overall and per predicted shot group, per method.
- False alarms: disjoint clean batches of held-out images (training images of the target classes
  that neither the long-tailed training split nor the reference used; same distribution as the
  test split): a batch alarms when Benjamini-Hochberg over its detectors rejects at alpha.
- Detection: held-out images corrupted at severities 3 and 5, every benchmark corruption of the
  pipeline plus the four above, the same rule.
- Cost: the wall time of the estimates and tests (``monitor_batch``) against the forward pass.
- The reference: every estimate and test three times, from (1) the artifact's own calibration (its
  validation split weighted to the balanced deployment prior: what the service uses), (2) the same
  split unweighted (``target_prior: train``, the reference's own long-tailed mix: what the weighting
  buys) and (3) a labelled held-out sample of ``reference_per_class`` images per class, disjoint
  from every measured batch (what ``lpt calibrate --batch`` on a labelled sample gives; it shows
  how much of the error is the small validation split).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

EXTRA_CORRUPTIONS = ("shot_noise", "motion_blur", "fog", "pixelate")
METHODS = ("lpt", "vpt", "linear", "full_ft")
SERVICE_REFERENCE = "validation split, weighted (the service's)"


@dataclass
class Measurement:
    """Every row the measurement produced (long frames) plus the settings it ran with."""

    errors: pd.DataFrame  # method, set, kind, reference, estimator, group, estimate, measured, abs_error
    alarms: pd.DataFrame  # method, set, kind (clean | shifted), corruption, severity, alarm, p_<detector>
    costs: pd.DataFrame  # method, set, forward_s, monitor_s
    settings: dict[str, Any] = field(default_factory=dict)


def held_out_pool(prepared_dir: Path, raw_root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of the target classes in the source's training split that the prepared
    train and validation splits do not use (the test split comes from the source's test split)."""
    from lpt_core.data.prepare import PrepareConfig, _subset_classes
    from lpt_core.data.sources import load_source
    from lpt_core.data.store import load_prepared

    data = load_prepared(prepared_dir)
    cfg = PrepareConfig(**{k: v for k, v in data.meta["config"].items() if k in PrepareConfig.__dataclass_fields__})
    raw = load_source(cfg.source, raw_root or cfg.root, **dict(cfg.options))
    train = _subset_classes(raw, cfg.classes, lambda name: None)[0]
    used = set(np.concatenate([_source_rows(prepared_dir, s) for s in ("train", "val")]).tolist())
    keep = np.array([i for i, src in enumerate(train.source_index) if int(src) not in used])
    images = np.asarray(train.images[keep])
    if images.shape[1:3] != data.test.images.shape[1:3]:
        from lpt_core.data.prepare import resize_images

        images = resize_images(images, data.test.images.shape[1])
    return images, np.asarray(train.labels[keep], dtype=np.int64)


def _source_rows(prepared_dir: Path, split: str) -> np.ndarray:
    manifest = pd.read_csv(Path(prepared_dir) / split / "manifest.csv")
    return manifest["source_index"].to_numpy()


def balanced_batches(labels: np.ndarray, per_class: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` disjoint row sets of ``per_class`` rows of every class."""
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    need = per_class * count
    short = [len(rows) for rows in by_class if len(rows) < need]
    if short:
        raise ValueError(f"{count} disjoint batches of {per_class} per class need {need} held-out images per "
                         f"class; the smallest class has {min(short)}")  # fmt: skip
    return [np.sort(np.concatenate([rows[i * per_class:(i + 1) * per_class] for rows in by_class]))
            for i in range(count)]  # fmt: skip


def reference_rows(labels: np.ndarray, exclude: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` rows of every class outside ``exclude`` (a labelled calibration sample)."""
    rng = np.random.default_rng(seed + 7919)
    free = np.setdiff1d(np.arange(len(labels)), exclude)
    rows = []
    for c in np.unique(labels):
        candidates = free[labels[free] == c]
        if len(candidates) < per_class:
            raise ValueError(f"a held-out reference of {per_class} images per class needs that many held-out images "
                             f"beyond the measured batches; class {int(c)} has {len(candidates)}")  # fmt: skip
        rows.append(rng.choice(candidates, per_class, replace=False))
    return np.sort(np.concatenate(rows))


def _one_set(loaded: Any, images: np.ndarray, labels: np.ndarray, alpha: float,
             references: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Forward once; per reference calibration, the estimate errors and the batch's BH verdict.
    The first reference (the artifact's own, what the service runs) is timed against the forward."""
    from lpt_core.evaluate import predict_outputs
    from lpt_core.monitoring import benjamini_hochberg, monitor_batch

    t0 = time.perf_counter()
    outputs = predict_outputs(loaded.model, images, batch_size=256, device=loaded.device, amp="off")
    forward_s = time.perf_counter() - t0
    errors, verdicts, monitor_s = [], {}, 0.0
    for i, (reference, calibration) in enumerate(references.items()):
        t1 = time.perf_counter()
        result = monitor_batch(calibration, outputs, labels=labels)
        if i == 0:
            monitor_s = time.perf_counter() - t1
        pvalues = result.pvalues()
        verdicts[reference] = (bool(np.any(benjamini_hochberg(list(pvalues.values()), alpha).reject)), pvalues)
        errors += [{"reference": reference, **e} for e in result.estimate_errors()]
    return {"errors": errors, "verdicts": verdicts, "forward_s": forward_s, "monitor_s": monitor_s}


def measure(models_dir: Path, prepared_dir: Path, shifts_dir: Path, *, raw_root: Path | None = None,
            alpha: float = 0.05, clean_batches: int = 20, per_class: int = 100, reference_per_class: int = 400,
            seed: int = 0, methods: tuple[str, ...] = METHODS) -> Measurement:  # fmt: skip
    """Run every set for every method (see the module docstring)."""
    from tqdm import tqdm

    from lpt_core.calibrate import CalibrationSpec, fit_reference
    from lpt_core.data.batches import load_batch, read_index
    from lpt_core.data.store import load_prepared
    from lpt_core.evaluate import EvalConfig, load_for_evaluation
    from lpt_core.shifts import corrupt

    pool_x, pool_y = held_out_pool(prepared_dir, raw_root)
    batches = balanced_batches(pool_y, per_class, clean_batches + 1, seed)
    base_x, base_y = pool_x[batches[-1]], pool_y[batches[-1]]
    ref_rows = reference_rows(pool_y, np.concatenate(batches), reference_per_class, seed)
    pipeline = [load_batch(shifts_dir / m["id"]) for m in read_index(shifts_dir)]
    corruptions = sorted({b.meta["corruption"] for b in pipeline if b.meta["corruption"] != "none"})
    sets = [("pipeline", b.meta["id"], b.meta["corruption"], int(b.meta["severity"]), b.images, b.labels)
            for b in pipeline]
    sets += [("extra", f"{c}-s{s}", c, s, corrupt(base_x, c, s, seed), base_y) for c in EXTRA_CORRUPTIONS for s in (1, 3, 5)]
    sets += [("clean", f"heldout-{i:02d}", "none", 0, pool_x[rows], pool_y[rows]) for i, rows in enumerate(batches[:-1])]
    sets += [("detect", f"{c}-s{s}", c, s, corrupt(base_x, c, s, seed + 1), base_y)
             for c in (*corruptions, *EXTRA_CORRUPTIONS) for s in (3, 5)]
    val = load_prepared(prepared_dir).val
    errors, alarms, costs = [], [], []
    effective: dict[str, dict[str, float]] = {}
    for method in methods:
        loaded = load_for_evaluation(models_dir / method, EvalConfig(device="cpu", amp="off"))
        if loaded.calibration is None:
            raise ValueError(f"{models_dir / method} has no calibration: retrain it (dvc repro) or `lpt calibrate` it")
        fit = dict(logit_scale=loaded.logit_scale, few_includes_20=loaded.few_includes_20)
        references = {
            SERVICE_REFERENCE: loaded.calibration,
            "validation split, unweighted": fit_reference(loaded.model, np.asarray(val.images), np.asarray(val.labels),
                                                          loaded.class_counts, spec=CalibrationSpec(target_prior="train"),
                                                          **fit),
            f"held-out sample, {reference_per_class} per class": fit_reference(
                loaded.model, pool_x[ref_rows], pool_y[ref_rows], loaded.class_counts, spec=CalibrationSpec(), **fit),
        }  # fmt: skip
        effective[method] = {ref: round(float(cal.effective_size), 1) for ref, cal in references.items()}
        for kind, name, corruption, severity, images, labels in tqdm(sets, desc=method, unit="set", leave=False):
            out = _one_set(loaded, images, labels, alpha, references)
            base = {"method": method, "set": name, "kind": kind, "corruption": corruption, "severity": severity}
            errors += [{**base, **e} for e in out["errors"]] if kind in ("pipeline", "extra") else []
            alarms += [{**base, "reference": ref, "alarm": alarm, **{f"p_{k}": v for k, v in pvalues.items()}}
                       for ref, (alarm, pvalues) in out["verdicts"].items()]  # fmt: skip
            costs.append({**base, "forward_s": out["forward_s"], "monitor_s": out["monitor_s"]})
    settings = {"alpha": alpha, "clean_batches": clean_batches, "batch_size": int(per_class * len(np.unique(pool_y))),
                "reference_per_class": reference_per_class, "held_out_pool": int(len(pool_y)), "seed": seed,
                "validation_split": int(len(val.labels)),
                "effective_reference_size": effective}  # fmt: skip
    return Measurement(pd.DataFrame(errors), pd.DataFrame(alarms), pd.DataFrame(costs), settings)


def summary_tables(m: Measurement) -> dict[str, pd.DataFrame]:
    """The tables docs/MONITORING.md shows: MAE per estimator and group, alarm rates, cost."""
    prior = m.errors[m.errors["group"] == "overall"].pivot_table(
        index=["method", "reference"], columns="estimator", values="abs_error", aggfunc="mean")
    err = m.errors[m.errors["reference"] == SERVICE_REFERENCE]
    mae = err.pivot_table(index=["method", "group"], columns="estimator", values="abs_error", aggfunc="mean")
    sets = err[err["group"] == "overall"].pivot_table(index=["method", "kind"], columns="estimator",
                                                      values="abs_error", aggfunc="mean")  # fmt: skip
    al, keys = m.alarms, ["method", "reference"]
    alarm = al[al["kind"] == "clean"].groupby(keys)["alarm"].mean().rename("false_alarm_rate").to_frame()
    for s in (3, 5):
        sub = al[(al["kind"] == "detect") & (al["severity"] == s)]
        alarm[f"detection_rate_s{s}"] = sub.groupby(keys)["alarm"].mean()
    cost = m.costs.groupby("method")[["forward_s", "monitor_s"]].sum()
    cost["monitor_share"] = cost["monitor_s"] / cost["forward_s"]
    return {"mae": mae.round(4), "mae_by_set": sets.round(4), "reference": prior.round(4), "alarms": alarm.round(3),
            "cost": cost.round(4)}


def write_report(m: Measurement, out: Path, command: str) -> Path:
    """Replace the measured block of ``out`` (markers ``<!-- monitoring:start/end -->``)."""
    tables = summary_tables(m)
    from lpt_core.bench.report import machine_info

    info = machine_info()
    lines = ["<!-- monitoring:start -->", f"Measured by `{command}` on {info.get('cpu', '?')} "
             f"({info.get('date', '')}); settings {json.dumps(m.settings)}.", ""]
    titles = {"mae": "Mean absolute error of each estimator against the measured top-1 (labels hidden from the "
                     "estimators), overall and per predicted shot group; the service's reference (each artifact's "
                     "validation split, weighted to the balanced deployment prior)",
              "mae_by_set": "Overall mean absolute error by set kind (pipeline shift sets; extra corruptions), the "
                            "service's reference",
              "reference": "What the reference does: overall mean absolute error with the service's reference, the "
                           "same split unweighted (its own long-tailed mix), and a labelled held-out sample "
                           "(balanced, disjoint from every measured batch)",
              "alarms": "Alarm rates per reference (Benjamini-Hochberg over a batch's detectors at alpha)",
              "cost": "Cost per method over every set: forward pass against estimates and tests (seconds)"}
    for key, table in tables.items():
        lines += [f"**{titles[key]}**", "", table.reset_index().to_markdown(index=False), ""]
    lines.append("<!-- monitoring:end -->")
    block = "\n".join(lines)
    text = out.read_text(encoding="utf-8") if out.is_file() else "# Monitoring\n\n<!-- monitoring:start -->\n<!-- monitoring:end -->\n"
    start, end = text.find("<!-- monitoring:start -->"), text.find("<!-- monitoring:end -->")
    if start < 0 or end < 0:
        raise ValueError(f"{out} has no <!-- monitoring:start --> / <!-- monitoring:end --> markers")
    out.write_text(text[:start] + block + text[end + len("<!-- monitoring:end -->"):], encoding="utf-8")
    return out
