"""``lpt train`` and ``lpt evaluate``: train every phase of a method (LPT, Dong et al., ICLR 2023,
or a baseline) into an artifact, and evaluate an artifact into a result file.

A training section of params.yaml looks like::

    train_lpt:
      method: lpt                   # lpt | vpt | linear | full_ft
      seed: 0                       # prompt / head initialisation
      backbone: {name: vit_base_patch16_224.augreg_in21k, weights: null, pretrained: false,
                 img_size: 224, seed: 0, timm_kwargs: {}}
      model: {prompt: {prompt_length: 10, pool_size: 20, top_k: 2, group_start: 6}, head_dropout: 0.1}
      train: {epochs: 10, batch_size: 256, lr: 0.02, ...}      # TrainConfig, every phase
      phase_train: {phase2: {epochs: 20}}                        # per-phase overrides of train

Multi-GPU: ``torchrun --nproc_per_node N -m lpt_core.cli train ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpt_core.config import from_mapping, load_section, to_dict
from lpt_core.models.config import MethodConfig
from lpt_core.train import TrainConfig

log = logging.getLogger(__name__)


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


def _cmd_train(args: argparse.Namespace) -> int:
    section = load_section(args.params, args.section, TrainSection)
    ckpt = args.checkpoints or Path(f"{args.out}.ckpt")
    meta = train_section(
        section, args.data, args.out, ckpt_dir=ckpt, device=args.device, backbone_weights=args.backbone_weights
    )
    print(json.dumps({"artifact": str(args.out), "fit": meta["fit"]}, indent=2))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from lpt_core.evaluate import clean_shift_meta, evaluate_artifact

    if (args.data is None) == (args.batch is None):
        raise ValueError("give exactly one of --data DIR (a prepared dataset split) or --batch DIR (a shift batch)")
    if args.batch is not None:
        from lpt_core.data.batches import load_batch

        batch = load_batch(args.batch)
        images, labels, shift = batch.images, batch.labels, dict(batch.meta, dvc_hash=batch.dvc_hash)
    else:
        from lpt_core.data.store import load_prepared

        data = load_prepared(args.data)
        split = getattr(data, args.split)
        name = data.meta.get("name", Path(args.data).name)
        images, labels = split.images, split.labels
        shift = clean_shift_meta(images, labels, shift_id=f"{name}-{args.split}", dataset=name)
    result = evaluate_artifact(
        args.artifact, images, labels, device=_device(args.device), batch_size=args.batch_size,
        backbone_weights=args.backbone_weights, shift_meta=shift, model_name=args.model_name,
    )
    result.write(args.out)
    log.info("%s on %s: top1 %.4f -> %s", result.model["name"], shift["id"], result.metric("top1"), args.out)
    return 0


def _device(device: str) -> str:
    from lpt_core.distributed import resolve_device

    return resolve_device(device)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``evaluate`` to the ``lpt`` command."""
    p = subparsers.add_parser("train", help="train every phase of a method into an artifact")
    p.add_argument("--params", type=Path, required=True, help="params.yaml")
    p.add_argument("--section", required=True, help="params section, e.g. train_lpt")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--checkpoints", type=Path, default=None, help="checkpoint folder (default: OUT.ckpt)")
    p.add_argument("--backbone-weights", default=None, help="local backbone weights file (overrides the section)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.set_defaults(func=_cmd_train)

    e = subparsers.add_parser("evaluate", help="evaluate an artifact on a prepared split or a shift batch")
    e.add_argument("--artifact", type=Path, required=True, help="artifact directory")
    e.add_argument("--data", type=Path, default=None, help="prepared dataset directory (see --split)")
    e.add_argument("--split", default="test", choices=("test", "val"), help="split of --data (default test)")
    e.add_argument("--batch", type=Path, default=None, help="shift batch directory")
    e.add_argument("--out", type=Path, required=True, help="result JSON file to write")
    e.add_argument("--backbone-weights", default=None, help="local backbone weights file")
    e.add_argument("--model-name", default=None, help="model name in the result (default: from the artifact)")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    e.set_defaults(func=_cmd_evaluate)


__all__ = ["BackboneConfig", "TrainSection", "register", "train_section"]
