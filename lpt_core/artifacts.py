"""Model artifacts: what a trained method stores and everything needed to rebuild it.

An artifact is a directory holding ``tensors.safetensors`` (the classifier's
``stored_state_dict``: prompts, keys and head for LPT; all weights for full fine-tuning),
``meta.json`` (method and its config, backbone identity, classes and counts, hyper-parameters,
data version, library versions, parameter counts) and ``SHA256SUMS``. It is written atomically
and verified before anything is loaded; a backbone whose fingerprint differs is refused.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import timm
import torch

import lpt_core
from lpt_core.artifact_files import (  # noqa: F401  (re-exported: the public artifact API)
    CALIBRATION_DIR,
    CALIBRATION_FILES,
    META_FILE,
    RESERVED_KEYS,
    SCHEMA,
    SUMS_FILE,
    TENSORS_FILE,
    ArtifactError,
    _sha256_file,
    artifact_sha256,
    has_calibration,
    read_meta,
    verify_artifact,
)
from lpt_core.config import from_mapping, to_dict
from lpt_core.fsutil import atomic_dir
from lpt_core.models import (
    BackboneUnavailableError,
    Classifier,
    MethodConfig,
    backbone_fingerprint,
    backbone_spec,
    build_classifier,
    create_backbone,
)
from lpt_core.models.backbone import SPEC_ATTR, known_fingerprint, pin_fingerprint


def trained_parameter_counts(model: Classifier) -> dict[str, Any]:
    """Parameters trained up to the current phase (union over phases), stored, and backbone."""
    phases = model.phases[: model.phases.index(model.phase) + 1]
    sizes = dict((n, p.numel()) for n, p in model.named_parameters())
    per_phase, trained = {}, set()
    for phase in phases:
        names = {n for n in sizes if n.startswith(model.trainable_prefixes[phase])}
        per_phase[phase] = sum(sizes[n] for n in names)
        trained |= names
    counts = model.parameter_counts()
    return {
        "trainable": sum(sizes[n] for n in trained),
        "per_phase": per_phase,
        "stored": counts["stored"],
        "backbone": counts["backbone"],
    }


def build_meta(model: Classifier, meta: dict[str, Any]) -> dict[str, Any]:
    """The full meta.json content: the caller's ``meta`` plus what rebuilds and checks the model."""
    spec = backbone_spec(model.backbone)
    current = backbone_fingerprint(model.backbone)
    if not model.trains_backbone and current != model.base_fingerprint:
        raise ArtifactError(
            f"the frozen backbone of this {model.method!r} model changed: fingerprint {current}, "
            f"it started as {model.base_fingerprint}"
        )
    backbone = {
        "name": spec["name"],
        "fingerprint": model.base_fingerprint,
        "source": spec["source"],
        "seed": spec["seed"],
        "timm_kwargs": spec["timm_kwargs"],
    }
    if model.trains_backbone:
        backbone["trained_fingerprint"] = current
    own = {
        "schema": SCHEMA,
        "method": model.method,
        "phase": model.phase,
        "method_config": to_dict(model.cfg),
        "num_classes": model.num_classes,
        "backbone": backbone,
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "lpt_core": lpt_core.__version__,
                     "safetensors": safetensors.__version__},
        "param_counts": trained_parameter_counts(model),
    }
    clash = [k for k in RESERVED_KEYS if k in meta and meta[k] != own[k]]
    if clash:
        raise ArtifactError(f"meta keys {clash} are set by save_artifact from the model; do not pass other values")
    merged = dict(meta) | own  # no creation time: the same training gives the same bytes
    json.dumps(merged)  # non-JSON values raise here, before anything is written
    return merged


def save_artifact(
    out_dir: str | Path, model: Classifier, meta: dict[str, Any], *, overwrite: bool = True,
    calibration: Any | None = None,
) -> Path:  # fmt: skip
    """Write ``model``'s artifact to ``out_dir`` atomically (temp dir + rename); returns ``out_dir``.

    ``meta`` carries what the caller knows: class_names, class_counts, hyper_parameters,
    data_version, ... The method, backbone identity, versions and counts are added here.
    ``calibration`` (a :class:`lpt_core.monitoring.Calibration`) is stored in ``calibration/`` and
    checksummed with the rest, so the artifact's identity covers it.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"artifact directory {out_dir} exists and overwrite=False")
    full_meta = build_meta(model, meta)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.stored_state_dict().items()}
    with atomic_dir(out_dir) as tmp:
        safetensors.torch.save_file(tensors, str(tmp / TENSORS_FILE), metadata={"format": "pt"})
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        names = [TENSORS_FILE, META_FILE]
        if calibration is not None:
            calibration.save(tmp / CALIBRATION_DIR)
            names += list(CALIBRATION_FILES)
        sums = "".join(f"{_sha256_file(tmp / name)}  {name}\n" for name in names)
        (tmp / SUMS_FILE).write_text(sums, encoding="utf-8")
    return out_dir


def rebuild_backbone(spec: dict[str, Any], weights: str | Path | None = None) -> torch.nn.Module:
    """Rebuild the backbone an artifact's meta describes (``weights`` overrides its source)."""
    name, kwargs, source = spec["name"], dict(spec["timm_kwargs"]), spec["source"]
    if weights is not None:
        return create_backbone(name, weights=weights, **kwargs)
    if source == "hub":
        return create_backbone(name, pretrained=True, **kwargs)
    if source.startswith("file:"):
        path = Path(source[len("file:"):])
        if not path.is_file():
            raise BackboneUnavailableError(
                f"backbone {name!r} was loaded from {path}, which is not here; pass its weights file "
                "with --backbone-weights PATH (backbone_weights=PATH)"
            )
        return create_backbone(name, weights=path, **kwargs)
    if spec.get("seed") is None:
        raise BackboneUnavailableError(
            f"backbone {name!r} was an unseeded random init and cannot be rebuilt; pass it as backbone=..."
        )
    return create_backbone(name, seed=spec["seed"], **kwargs)


def load_artifact(
    art_dir: str | Path,
    *,
    backbone: torch.nn.Module | None = None,
    backbone_weights: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Classifier, dict[str, Any]]:
    """Verify, rebuild and strictly load an artifact -> (classifier in eval mode on ``device``, meta).

    The backbone is ``backbone`` if given (used in place, on its device: the classifier shares
    it), else rebuilt from meta (``backbone_weights`` overrides the recorded source). Its
    fingerprint must equal the recorded one; a fingerprint pinned by
    :func:`lpt_core.models.backbone.pin_fingerprint` is trusted while the weights are untouched.
    For ``full_ft`` the recorded fingerprint is the base backbone's; the trained weights come
    from the artifact and their fingerprint is checked too.
    """
    meta = read_meta(art_dir)
    if meta.get("schema") != SCHEMA:
        raise ArtifactError(f"{art_dir}: schema {meta.get('schema')!r}, expected {SCHEMA!r}")
    tensors = safetensors.torch.load_file(str(Path(art_dir) / TENSORS_FILE))
    spec = meta["backbone"]
    full_ft = meta["method"] == "full_ft"
    if backbone is None:
        if full_ft and backbone_weights is None:  # all weights are in the artifact
            backbone = create_backbone(spec["name"], seed=0, **spec["timm_kwargs"])
        else:
            backbone = rebuild_backbone(spec, backbone_weights)
            _check_fingerprint(pin_fingerprint(backbone), spec["fingerprint"], art_dir)
    else:  # a shared backbone stays where it is; its pinned fingerprint is not recomputed
        _check_fingerprint(known_fingerprint(backbone), spec["fingerprint"], art_dir)
        backbone = copy.deepcopy(backbone) if full_ft else backbone
    cfg = from_mapping(MethodConfig, meta["method_config"], where=f"{art_dir}/{META_FILE}:method_config")
    model = build_classifier(meta["method"], backbone, int(meta["num_classes"]), cfg)
    model.load_stored_state_dict(tensors)
    model.set_phase(meta["phase"])
    model.base_fingerprint = spec["fingerprint"]  # so that a re-save records the true base
    if full_ft:
        _check_fingerprint(backbone_fingerprint(model.backbone), spec["trained_fingerprint"], art_dir)
        setattr(model.backbone, SPEC_ATTR, {k: spec[k] for k in ("name", "source", "seed", "timm_kwargs")})
    if meta.get("layernorm_eps") is not None:  # the released model's LayerNorms use 1e-5 (timm: 1e-6)
        set_layernorm_eps(model.backbone, float(meta["layernorm_eps"]))
    return model.to(device).eval(), meta


def set_layernorm_eps(module: torch.nn.Module, eps: float) -> int:
    """Set ``eps`` on every LayerNorm of ``module`` (a runtime attribute: no tensor changes, so the
    backbone fingerprint is unchanged); returns how many were set. A shared backbone is changed
    for every model on it, so artifacts that disagree on eps must not share one."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.LayerNorm)]
    for m in norms:
        m.eps = float(eps)
    return len(norms)


def _check_fingerprint(found: str, expected: str, art_dir: str | Path) -> None:
    if found != expected:
        raise ArtifactError(
            f"backbone fingerprint mismatch for artifact {art_dir}: the artifact was trained on {expected}, "
            f"the backbone given/rebuilt has {found}"
        )


def load_calibration(art_dir: str | Path) -> Any | None:
    """The artifact's monitoring calibration (verified with the artifact), or None when it has none."""
    if not has_calibration(art_dir):
        return None
    from lpt_core.monitoring import Calibration

    return Calibration.load(Path(art_dir) / CALIBRATION_DIR)
