"""Import a backbone weights file (e.g. ViT-B/16 ImageNet-21k) into the pipeline's backbone folder format.

For the paper profiles of LPT (Dong et al., ICLR 2023): the frozen backbone is
``vit_base_patch16_224.augreg_in21k``. Offline sites download its weights elsewhere (any format
timm reads: .safetensors, .pth, .bin, augreg .npz) and run, once::

    python -m lpt_core.pipeline.import_backbone --name vit_base_patch16_224.augreg_in21k \
        --weights /path/to/in21k.safetensors --out models/backbone_in21k

which writes ``model.safetensors`` (headless, loaded through timm) and ``backbone.json``
(timm name and kwargs, fingerprint) -- the same layout as the quickstart's pretrain stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from lpt_core.pipeline.common import setup_logging

log = logging.getLogger(__name__)


def import_backbone(name: str, weights: Path, out: Path, timm_kwargs: dict, pretrain_note: str) -> dict:
    """Load ``weights`` into timm's ``name`` (headless) and save it as a pipeline backbone folder."""
    import platform

    import timm
    import torch

    from lpt_core.models import backbone_fingerprint, create_backbone
    from lpt_core.models.folder import save_backbone

    model = create_backbone(name, weights=weights, **timm_kwargs)
    cfg = model.pretrained_cfg
    size = model.patch_embed.img_size[0]
    meta = {
        "schema": "lpt-backbone/1",
        "timm_name": name,
        "timm_kwargs": dict(timm_kwargs, num_classes=0),
        "fingerprint": backbone_fingerprint(model),
        "num_params": int(sum(p.numel() for p in model.parameters())),
        "data_config": {"input_size": [3, size, size], "mean": list(cfg.get("mean", (0.5,) * 3)),
                        "std": list(cfg.get("std", (0.5,) * 3))},  # fmt: skip
        "pretrain_data": {"source": pretrain_note, "base_classes": []},
        "imported_from": str(weights),
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version()},
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_backbone(out, state, meta)
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    """Import a local backbone weights file as ``--out`` (model.safetensors + backbone.json)."""
    parser = argparse.ArgumentParser(prog="python -m lpt_core.pipeline.import_backbone", description=main.__doc__)
    parser.add_argument("--name", required=True, help="timm model name, e.g. vit_base_patch16_224.augreg_in21k")
    parser.add_argument("--weights", required=True, type=Path, help="local weights file timm can read")
    parser.add_argument("--out", required=True, type=Path, help="backbone folder to write")
    parser.add_argument("--timm-kwargs", default="{}", help='extra timm.create_model kwargs as JSON, e.g. {"img_size": 224}')
    parser.add_argument("--pretrain-note", default="timm pretrained weights (labels unknown to this project)")
    args = parser.parse_args(argv)
    setup_logging()
    meta = import_backbone(args.name, args.weights, args.out, json.loads(args.timm_kwargs), args.pretrain_note)
    log.info("imported %s into %s (fingerprint %s)", args.name, args.out, meta["fingerprint"][:16])
    return 0


if __name__ == "__main__":
    sys.exit(main())
