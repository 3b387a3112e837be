"""One recipe per model, and the one function that trains it (LPT, Dong et al., ICLR 2023, or a baseline).

params.yaml holds a base training ``recipe`` and a mapping ``models`` of name -> entry; an entry
is merged onto the recipe (mappings merge key by key, anything else replaces) and becomes a
:class:`ModelSpec`::

    recipe:
      seed: 0
      model: {prompt: {prompt_length: 10, pool_size: 20, top_k: 2, group_start: 6}, head_dropout: 0.1}
      train: {epochs: 10, batch_size: 256, lr_per_256: 0.02, ...}   # TrainConfig, every phase
      phases: {phase2: {epochs: 20}}                                # per-phase overrides of train
    models:
      lpt: {method: lpt}                                            # phase 1, then phase 2 from it
      full_ft: {method: full_ft, train: {lr_per_256: 0.002}}
      lpt_random: {method: lpt, backbone: random}                   # seeded init of the same shape

A model is trained in every phase of its method, in one run: LPT's phase 2 starts from the
phase-1 prompts and head of the same run (its checkpoints are keyed by their inputs, so a change
to phase 2 alone reloads the finished phase 1). ``lpt train`` and the pipeline's ``train@<name>``
stages call :func:`train_model`; nothing else trains a model.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpt_core.calibrate import CalibrationSpec
from lpt_core.config import from_mapping, to_dict
from lpt_core.models.config import MethodConfig
from lpt_core.train import TrainConfig, effective_lr

log = logging.getLogger(__name__)
BACKBONE_KINDS = ("pretrained", "random")
PHASES = ("phase1", "phase2", "train")
DEFAULT_LOGIT_SCALE = 20.0


@dataclass(frozen=True)
class ModelSpec:
    """Everything that trains one model: method, backbone kind, seeds, method and trainer config."""

    method: str
    backbone: str = "pretrained"  # "pretrained": the backbone folder's weights | "random": seeded init
    backbone_seed: int = 0
    seed: int = 0  # prompt / head initialisation
    model: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-phase overrides of train
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)  # label-free monitoring reference

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_KINDS:
            raise ValueError(f"backbone must be one of {BACKBONE_KINDS}, got {self.backbone!r}")
        unknown = sorted(set(self.phases) - set(PHASES))
        if unknown:
            raise ValueError(f"phases has unknown phases {unknown}; phases are {list(PHASES)}")

    def phase_config(self, phase: str) -> TrainConfig:
        """``train`` with the overrides of ``phase`` applied (unknown keys raise)."""
        merged = {**to_dict(self.train), **self.phases.get(phase, {})}
        return from_mapping(TrainConfig, merged, where=f"phases.{phase}")

    @property
    def logit_scale(self) -> float:
        """s of the loss on cosine logits, which evaluation uses to turn logits into probabilities."""
        return float(self.train.loss_kwargs.get("scale", DEFAULT_LOGIT_SCALE))


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` deep-merged onto ``base``: mappings merge key by key, other values replace."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def model_names(params: Mapping[str, Any]) -> list[str]:
    """The names in params' ``models`` mapping, in file order."""
    models = params.get("models")
    if not isinstance(models, Mapping) or not models:
        raise ValueError("params has no `models` mapping (name -> {method: ..., overrides})")
    return list(models)


def resolve_model(params: Mapping[str, Any], name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``models.<name>`` merged onto ``recipe``; unknown names raise."""
    names = model_names(params)
    if name not in names:
        raise KeyError(f"unknown model {name!r}; params.yaml models: {', '.join(names)}")
    entry = params["models"][name] or {}
    if not isinstance(entry, Mapping):
        raise ValueError(f"models.{name} must be a mapping, got {entry!r}")
    return from_mapping(ModelSpec, merge(params.get("recipe") or {}, entry), where=f"models.{name}")


def load_backbone_for(spec: ModelSpec, backbone_dir: Path) -> Any:
    """The frozen backbone of ``spec``: the folder's weights (fingerprint checked), or a seeded
    random init of the same architecture (the honesty baseline)."""
    from lpt_core.models import create_backbone
    from lpt_core.models.folder import load_backbone, read_backbone_meta

    if spec.backbone == "pretrained":
        return load_backbone(backbone_dir)[0]
    meta = read_backbone_meta(backbone_dir)  # the random baseline copies the folder's architecture
    return create_backbone(meta["timm_name"], seed=spec.backbone_seed, **meta["timm_kwargs"])


def train_model(
    spec: ModelSpec, name: str, data_dir: Path, backbone_dir: Path, out: Path, *, ckpt_dir: Path,
    device: str = "auto",
) -> dict[str, Any]:  # fmt: skip
    """Train every phase of ``spec.method`` on the prepared dataset and save the artifact to ``out``.

    Under ``torchrun`` every rank trains its slice of each global batch (DDP) and rank 0 alone
    writes the artifact. Returns the artifact's meta (empty on the other ranks). Run details
    (seconds, images/s, device) go to the log and ``ckpt_dir/fit.json``, never into the artifact,
    so the same inputs give the same artifact bytes.
    """
    from lpt_core import distributed as D
    from lpt_core.artifacts import read_meta, save_artifact
    from lpt_core.data.store import load_prepared
    from lpt_core.fsutil import atomic_file
    from lpt_core.models import build_classifier
    from lpt_core.train import fit

    data = load_prepared(data_dir)
    model = build_classifier(spec.method, load_backbone_for(spec, backbone_dir), data.num_classes, spec.model,
                             seed=spec.seed)  # fmt: skip
    ctx = D.init_from_env(device)
    fits, runs = {}, {}
    try:
        for phase in model.phases:
            cfg = spec.phase_config(phase)
            log.info("%s %s: lr %g per 256 images -> %g at batch %d", name, phase, cfg.lr_per_256,
                     effective_lr(cfg), cfg.batch_size)
            res = fit(model, data, cfg, ckpt_dir, phase=phase, dist=ctx)
            fits[phase] = {"epochs": res.epochs, "best_epoch": res.best_epoch, "select": cfg.select,
                           "best_val_balanced_top1": res.best_val_balanced_top1,
                           "val_history": [r.get("val_balanced_top1") for r in res.history]}
            runs[phase] = {"seconds": round(res.seconds, 2), "images_per_second": round(res.images_per_second, 1),
                           "device": ctx.device, "checkpoint": str(res.checkpoint)}
    finally:
        D.shutdown()
    if not ctx.is_main:
        return {}
    meta = artifact_meta(spec, name, data, fits)
    save_artifact(out, model.cpu(), meta, calibration=_calibration(spec, model, data, meta, ctx.device))
    with atomic_file(Path(ckpt_dir) / "fit.json") as tmp:
        tmp.write_text(json.dumps(runs, indent=1, sort_keys=True))
    log.info("saved %s (%s): %s", out, spec.method, json.dumps(runs))
    return read_meta(out)


def _calibration(spec: ModelSpec, model: Any, data: Any, meta: dict[str, Any], device: str) -> Any:
    """The monitoring calibration on the validation split (None when the recipe or the data has none)."""
    from lpt_core.calibrate import fit_reference

    if spec.calibration.reference == "none":
        return None
    if len(data.val) == 0:
        log.warning("no validation split (protocol %s): the model gets no monitoring calibration; fit one with "
                    "`lpt calibrate` on labelled data it did not train on", meta["protocol"])
        return None
    return fit_reference(model.to(device), data.val.images, data.val.labels, data.class_counts, spec=spec.calibration,
                         logit_scale=spec.logit_scale, few_includes_20=meta["group_rule"]["few_includes_20"],
                         device=device, info={"reference": "val", "data_version": meta["data_version"]})


def artifact_meta(spec: ModelSpec, name: str, data: Any, fits: dict[str, Any]) -> dict[str, Any]:
    """What the caller adds to an artifact's meta.json (no times or devices: same inputs, same bytes)."""
    from lpt_core.data.store import group_rule

    protocol = str(data.meta.get("protocol", "heldout"))
    rule = group_rule(data.meta) if "train_class_counts" in data.meta else None
    return {
        "name": name, "class_names": list(data.class_names), "class_counts": data.class_counts.tolist(),
        "dataset": data.meta.get("name", ""), "data_version": data.meta.get("content_hashes", {}).get("train", ""),
        "hyper_parameters": to_dict(spec), "backbone_kind": spec.backbone, "fit": fits,
        "logit_scale": spec.logit_scale, "protocol": protocol,
        # how evaluation cuts and pools the shot groups (the protocol's rule, lpt_core.data.store.group_rule)
        "group_rule": {"few_includes_20": rule.few_includes_20 if rule else False,
                       "pooling": rule.pooling if rule else "class_mean"},
    }  # fmt: skip


__all__ = ["ModelSpec", "merge", "model_names", "resolve_model", "train_model"]
