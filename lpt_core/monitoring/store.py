"""Files of a monitoring calibration: ``calibration.json`` (scalars, metadata; sorted keys) and
``calibration.safetensors`` (arrays), written atomically into one folder, byte-deterministic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load_file, save_file

from lpt_core.fsutil import atomic_dir
from lpt_core.monitoring.estimates import GroupCalibration, ReferenceStats
from lpt_core.monitoring.selection import SelectionReference

if TYPE_CHECKING:
    from lpt_core.monitoring.calibration import Calibration

SCHEMA = "lpt-monitor-calibration/1"
JSON_FILE = "calibration.json"
TENSORS_FILE = "calibration.safetensors"
SCALARS = ("num_classes", "logit_scale", "temperature", "few_includes_20", "min_group_images", "effective_size",
           "target_prior_name")
ARRAYS = ("class_counts", "target_prior", "reference_labels", "reference_weights", "reference_probs", "confusion")
LPT_ARRAYS = ("reference_selected", "reference_key_cosine")
SELECTION_ARRAYS = {"frequency": "selection_frequency", "image_cov": "selection_image_cov",
                    "frequency_cov": "selection_frequency_cov"}
SELECTION_SCALARS = ("pool_size", "top_k", "picks", "cosine_mean", "cosine_mean_var", "cosine_dof")


def _stats(stats: ReferenceStats) -> dict[str, Any]:
    return {"accuracy": stats.accuracy, "thresholds": stats.thresholds, "mean_scores": stats.mean_scores}


def metadata(cal: Calibration) -> dict[str, Any]:
    """The JSON object of ``calibration.json``."""
    doc: dict[str, Any] = {"schema": SCHEMA, **{name: getattr(cal, name) for name in SCALARS}}
    doc["reference_size"] = cal.reference_size
    doc["missing_classes"] = list(cal.missing_classes)
    doc["overall"] = _stats(cal.overall)
    doc["groups"] = [{"group": g.group, "n_reference": g.n_reference, "source": g.source, **_stats(g.stats)}
                     for g in cal.groups]
    sel = cal.selection
    doc["selection"] = None if sel is None else {name: getattr(sel, name) for name in SELECTION_SCALARS}
    doc["info"] = cal.info
    return doc


def arrays(cal: Calibration) -> dict[str, np.ndarray]:
    """The named arrays of ``calibration.safetensors`` (C-contiguous)."""
    out = {name: getattr(cal, name) for name in ARRAYS}
    if cal.selection is not None:
        out |= {name: getattr(cal, name) for name in LPT_ARRAYS}
        out |= {file: getattr(cal.selection, attr) for attr, file in SELECTION_ARRAYS.items()}
    return {name: np.ascontiguousarray(value) for name, value in out.items()}


def save(cal: Calibration, directory: Path) -> Path:
    """Write both files into ``directory`` (replaced atomically)."""
    text = json.dumps(metadata(cal), indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_dir(directory) as tmp:
        save_file(arrays(cal), str(tmp / TENSORS_FILE), metadata={"schema": SCHEMA})
        (tmp / JSON_FILE).write_text(text, encoding="utf-8")
    return directory


def _read_stats(doc: dict[str, Any]) -> ReferenceStats:
    return ReferenceStats(float(doc["accuracy"]), dict(doc["thresholds"]), dict(doc["mean_scores"]))


def load(cls: type[Calibration], directory: Path) -> Calibration:
    """Read a folder written by :func:`save`."""
    json_path, tensor_path = directory / JSON_FILE, directory / TENSORS_FILE
    if not (json_path.is_file() and tensor_path.is_file()):
        raise FileNotFoundError(f"{directory} is not a calibration folder: needs {JSON_FILE} and {TENSORS_FILE}")
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{json_path} has schema {doc.get('schema')!r}, expected {SCHEMA!r}")
    tensors = load_file(str(tensor_path))
    needed = ARRAYS + ((LPT_ARRAYS + tuple(SELECTION_ARRAYS.values())) if doc["selection"] is not None else ())
    missing = sorted(set(needed) - set(tensors))
    if missing:
        raise ValueError(f"{tensor_path} lacks arrays {missing}")
    selection = None
    if doc["selection"] is not None:
        sel = doc["selection"]
        sel_kwargs: dict[str, Any] = {name: sel[name] for name in SELECTION_SCALARS}
        sel_kwargs.update({attr: tensors[file] for attr, file in SELECTION_ARRAYS.items()})
        selection = SelectionReference(**sel_kwargs)
    groups = tuple(
        GroupCalibration(g["group"], int(g["n_reference"]), g["source"], _read_stats(g)) for g in doc["groups"]
    )
    kwargs: dict[str, Any] = {name: doc[name] for name in SCALARS}
    kwargs.update({name: tensors[name] for name in ARRAYS})
    if selection is not None:
        kwargs.update({name: tensors[name] for name in LPT_ARRAYS})
    return cls(**kwargs, missing_classes=tuple(doc["missing_classes"]), overall=_read_stats(doc["overall"]),
               groups=groups, selection=selection, info=doc["info"])
