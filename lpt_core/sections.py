"""Train a params.yaml ``train_*`` section: every phase of one method (LPT, Dong et al.,
ICLR 2023, or a baseline) into one artifact. Used by ``lpt train`` and the pipeline's train stages.

A training section looks like::

    train_lpt:
      method: lpt                   # lpt | vpt | linear | full_ft
      seed: 0                       # prompt / head initialisation
      backbone: {name: vit_base_patch16_224.augreg_in21k, weights: null, pretrained: false,
                 img_size: 224, seed: 0, timm_kwargs: {}}
      model: {prompt: {prompt_length: 10, pool_size: 20, top_k: 2, group_start: 6}, head_dropout: 0.1}
      train: {epochs: 10, batch_size: 256, lr: 0.02, ...}      # TrainConfig, every phase
      phase_train: {phase2: {epochs: 20}}                        # per-phase overrides of train
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpt_core.config import from_mapping, to_dict
from lpt_core.models.config import MethodConfig
from lpt_core.train import TrainConfig


@dataclass(frozen=True)
class BackboneConfig:
    """Which frozen timm ViT to build and where its weights come from."""

    name: str = "vit_base_patch16_224.augreg_in21k"
    weights: str | None = None  # local file (wins over pretrained)
    pretrained: bool = False  # timm hub download (needs internet)
    img_size: int | None = None
    seed: int | None = 0  # random init when neither weights nor pretrained
    timm_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSection:
    """A ``train_*`` params section for ``lpt train``."""

    method: str = "lpt"
    seed: int = 0
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    model: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    phase_train: dict[str, dict[str, Any]] = field(default_factory=dict)

    def phase_config(self, phase: str) -> TrainConfig:
        """``train`` with the overrides of ``phase`` applied (unknown keys raise)."""
        merged = {**to_dict(self.train), **self.phase_train.get(phase, {})}
        return from_mapping(TrainConfig, merged, where=f"phase_train.{phase}")


def train_section(
    section: TrainSection, data_dir: Path, out: Path, *, ckpt_dir: Path, device: str = "auto",
    backbone_weights: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train every phase of ``section.method`` on the prepared dataset, save the artifact to ``out``."""
    from lpt_core import distributed as D
    from lpt_core.artifacts import save_artifact
    from lpt_core.data.store import load_prepared
    from lpt_core.models import build_classifier, create_backbone
    from lpt_core.train import fit

    data = load_prepared(data_dir)
    bb = section.backbone
    backbone = create_backbone(
        bb.name, weights=backbone_weights or bb.weights, pretrained=bb.pretrained, img_size=bb.img_size,
        seed=bb.seed, **bb.timm_kwargs,
    )
    unknown = sorted(set(section.phase_train) - {"phase1", "phase2", "train"})
    if unknown:
        raise ValueError(f"phase_train has unknown phases {unknown}; phases are phase1, phase2, train")
    ctx = D.init_from_env(device)
    model = build_classifier(section.method, backbone, data.num_classes, section.model, seed=section.seed)
    fits = {}
    for phase in model.phases:
        res = fit(model, data, section.phase_config(phase), ckpt_dir / phase, phase=phase, dist=ctx)
        fits[phase] = {"best_epoch": res.best_epoch, "best_val_top1": res.best_val_top1,
                       "seconds": round(res.seconds, 2), "images_per_second": round(res.images_per_second, 1)}
    meta = {
        "name": out.name, "class_names": list(data.class_names), "class_counts": data.class_counts.tolist(),
        "dataset": data.meta.get("name", ""), "data_version": data.meta.get("content_hashes", {}).get("train", ""),
        "hyper_parameters": to_dict(section), "fit": fits,
        "logit_scale": float(section.train.loss_kwargs.get("scale", 20.0)),
    }  # fmt: skip
    if ctx.is_main:
        save_artifact(out, model.cpu(), meta)
    D.shutdown()
    return meta


__all__ = ["BackboneConfig", "TrainSection", "train_section"]
