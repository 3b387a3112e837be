"""Stages ``train_*``: train one method (LPT phase 1 / phase 2, VPT, linear, full fine-tuning) into an artifact.

LPT (Dong et al., "LPT: Long-tailed Prompt Tuning for Image Classification", ICLR 2023) trains
in two phases: phase 1 the shared prompt + head, phase 2 the group-prompt pool + keys + head,
initialised from the phase-1 artifact (``--init``). The backbone is the quickstart backbone
folder (``--backbone``, weights loaded through timm) or, with ``backbone: random`` in the
section, a seeded random init of the same architecture (the honesty baseline).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lpt_core.config import from_mapping
from lpt_core.data.store import PreparedDataset, load_prepared
from lpt_core.pipeline.common import default_device, parse, section, stage_parser

log = logging.getLogger(__name__)
BACKBONE_KINDS = ("pretrained", "random")


@dataclass(frozen=True)
class TrainStageConfig:
    """One ``train_*`` section: the method, its phase, the backbone kind, method and trainer settings."""

    method: str
    phase: str
    backbone: str = "pretrained"  # "pretrained" (the --backbone folder) | "random" (seeded init)
    backbone_seed: int = 0
    seed: int = 0  # prompt / head initialisation
    model: dict[str, Any] = field(default_factory=dict)  # lpt_core.models.MethodConfig
    train: dict[str, Any] = field(default_factory=dict)  # lpt_core.train.TrainConfig

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_KINDS:
            raise ValueError(f"backbone must be one of {BACKBONE_KINDS}, got {self.backbone!r}")


def load_stage_backbone(cfg: TrainStageConfig, backbone_dir: Path) -> torch.nn.Module:
    """The frozen backbone: the pretrained quickstart weights, or a seeded random init of the same shape."""
    from lpt_core.models import create_backbone

    meta = json.loads((backbone_dir / "backbone.json").read_text())
    if cfg.backbone == "random":
        return create_backbone(meta["timm_name"], seed=cfg.backbone_seed, **meta["timm_kwargs"])
    weights = backbone_dir / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"backbone weights {weights} missing; run the pretrain stage")
    return create_backbone(meta["timm_name"], weights=weights, **meta["timm_kwargs"])


def build_model(cfg: TrainStageConfig, data: PreparedDataset, backbone: torch.nn.Module, init: Path | None):
    """A fresh classifier, or the ``--init`` artifact (e.g. LPT phase 1) on the same backbone."""
    from lpt_core.artifacts import load_artifact
    from lpt_core.models import MethodConfig, build_classifier

    if init is not None:
        model, meta = load_artifact(init, backbone=backbone)
        if meta["method"] != cfg.method:
            raise ValueError(f"--init {init} holds a {meta['method']!r} model, the section trains {cfg.method!r}")
        return model
    method_cfg = from_mapping(MethodConfig, cfg.model, where="model")
    return build_classifier(cfg.method, backbone, data.num_classes, method_cfg, seed=cfg.seed)


def run(cfg: TrainStageConfig, data_dir: Path, backbone_dir: Path, out: Path, work: Path,
        *, init: Path | None, device: str, name: str) -> dict[str, Any]:  # fmt: skip
    """Train per ``cfg`` and save the artifact to ``out``; returns the artifact meta.

    Under ``torchrun`` (WORLD_SIZE > 1) every rank trains its slice of each global batch (DDP)
    and rank 0 alone writes the artifact; the other ranks return an empty dict.
    """
    from lpt_core import distributed as D
    from lpt_core.artifacts import read_meta, save_artifact
    from lpt_core.train import TrainConfig, fit

    data = load_prepared(data_dir)
    train_cfg = from_mapping(TrainConfig, cfg.train, where="train")
    model = build_model(cfg, data, load_stage_backbone(cfg, backbone_dir), init)
    ctx = D.init_from_env(device)
    try:
        result = fit(model, data, train_cfg, work, device=ctx.device, phase=cfg.phase, dist=ctx)
    finally:
        D.shutdown()
    if not ctx.is_main:
        return {}
    meta = {
        "name": name,
        "class_names": list(data.class_names),
        "class_counts": data.class_counts.tolist(),
        "data_version": data.meta.get("content_hashes", {}).get("train", ""),
        "dataset": data.meta.get("name", ""),
        "hyper_parameters": {"stage": _plain(cfg.__dict__), "train": _plain(train_cfg.__dict__)},
        "backbone_kind": cfg.backbone,
        "fit": {"epochs": result.epochs, "best_epoch": result.best_epoch, "best_val_top1": result.best_val_top1,
                "seconds": round(result.seconds, 1), "images_per_second": round(result.images_per_second, 1),
                "device": device},
    }  # fmt: skip
    save_artifact(out, model.cpu(), meta)
    return read_meta(out)


def _plain(obj: Any) -> Any:
    """Tuples -> lists, nested dicts recursively (JSON-safe)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    """Train the method of params section ``--section`` and write its artifact to ``--out``."""
    parser = stage_parser("train", main.__doc__ or "")
    parser.add_argument("--section", required=True, help="params section, e.g. train_lpt_phase1")
    parser.add_argument("--data", required=True, type=Path, help="prepared target dataset")
    parser.add_argument("--backbone", required=True, type=Path, help="backbone folder (backbone.json + weights)")
    parser.add_argument("--init", type=Path, default=None, help="artifact to start from (LPT phase 2: phase 1)")
    parser.add_argument("--out", required=True, type=Path, help="artifact folder to write")
    parser.add_argument("--work", required=True, type=Path, help="checkpoint folder (resume after a kill)")
    args = parse(parser, argv)
    cfg = section(args.params, args.section, TrainStageConfig)
    meta = run(cfg, args.data, args.backbone, args.out, args.work, init=args.init,
               device=default_device(args.device), name=args.out.name)  # fmt: skip
    if meta:
        log.info("saved %s (%s, %s): trainable params %s", args.out, meta["method"], meta["phase"],
                 meta["param_counts"]["trainable"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
