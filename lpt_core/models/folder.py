"""The backbone folder: a frozen timm ViT's headless weights (``model.safetensors``) and
``backbone.json`` (schema ``lpt-backbone/1``: timm name and kwargs, fingerprint, data config,
what it was pretrained on). The quickstart's pretrain stage and ``import_backbone`` write it;
every training and evaluation reads it through :func:`load_backbone`, which checks the fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lpt_core.fsutil import atomic_dir

WEIGHTS_FILE = "model.safetensors"
META_FILE = "backbone.json"


def save_backbone(out_dir: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` + ``backbone.json`` into ``out_dir`` atomically; returns ``out_dir``."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out_dir


def read_backbone_meta(folder: str | Path) -> dict[str, Any]:
    """``backbone.json`` of a backbone folder; ``FileNotFoundError`` naming how to make one."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no backbone ({META_FILE}); run the pretrain stage or "
                                "python -m lpt_core.pipeline.import_backbone")
    return json.loads(path.read_text(encoding="utf-8"))


def load_backbone(folder: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the frozen headless backbone of ``folder`` through timm; checks the fingerprint."""
    from lpt_core.models.backbone import backbone_fingerprint, create_backbone

    folder = Path(folder)
    meta, weights = read_backbone_meta(folder), folder / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{folder} has {META_FILE} but no {WEIGHTS_FILE}")
    model = create_backbone(meta["timm_name"], weights=weights, **meta["timm_kwargs"])
    found = backbone_fingerprint(model)
    if found != meta["fingerprint"]:
        raise ValueError(f"backbone in {folder} has fingerprint {found}, its {META_FILE} says {meta['fingerprint']}")
    return model, meta
