"""``lpt import released``: the LPT authors' released Places-LT phase-2 checkpoint as an artifact."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import`` subcommand (action ``released``) to the ``lpt`` parser."""
    p = subparsers.add_parser("import", help="import a model trained elsewhere as an artifact")
    sub = p.add_subparsers(dest="import_command", required=True, metavar="KIND")
    r = sub.add_parser("released", help="the LPT authors' released phase-2 checkpoint (e.g. LPT_places.pth)")
    r.add_argument("checkpoint", type=Path, help="the released .pth file (read with weights_only=True)")
    r.add_argument("--backbone", required=True, help="timm name, e.g. vit_base_patch16_224.augreg_in21k")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--backbone-weights", type=Path, default=None, help="local weights of --backbone (else the hub)")
    src.add_argument("--extract-backbone", type=Path, default=None,
                     help="write the checkpoint's own backbone tensors to this .safetensors and use them")
    r.add_argument("--timm-kwargs", default="{}", help="JSON timm kwargs of the backbone (default {})")
    r.add_argument("--prompt-config", default="{}",
                   help="JSON PromptConfig fields (default: the release's 10 tokens, pool 20, top-2, K=6)")
    r.add_argument("--classes", type=Path, required=True,
                   help="prepared dataset folder, Places_LT_train.txt-style list, .json or .csv (name,count)")
    r.add_argument("--out", type=Path, required=True, help="artifact folder to write")
    r.add_argument("--layernorm-eps", type=float, default=None,
                   help="LayerNorm eps at evaluation (default: the released model's 1e-5; timm's is 1e-6)")
    r.add_argument("--evaluate", type=Path, default=None,
                   help="then report top-1 the released way on this prepared dataset's test split")
    r.add_argument("--device", default="cpu", help="device for --evaluate (e.g. cuda)")
    r.add_argument("--batch-size", type=int, default=256, help="batch size for --evaluate")
    r.set_defaults(func=_released)


def _released(args: argparse.Namespace) -> int:
    from lpt_core.artifacts import artifact_sha256
    from lpt_core.config import from_mapping
    from lpt_core.models import PromptConfig
    from lpt_core.released import RELEASED_LAYERNORM_EPS, import_released

    kwargs = _json_object(args.timm_kwargs, "--timm-kwargs")
    prompt = from_mapping(PromptConfig, _json_object(args.prompt_config, "--prompt-config"), where="--prompt-config")
    eps = RELEASED_LAYERNORM_EPS if args.layernorm_eps is None else args.layernorm_eps
    out = import_released(
        args.checkpoint, args.out, backbone=args.backbone, classes=args.classes,
        backbone_weights=args.backbone_weights, extract_backbone=args.extract_backbone, timm_kwargs=kwargs,
        layernorm_eps=eps, prompt=prompt,
    )  # fmt: skip
    meta = json.loads((out / "meta.json").read_text())
    print(f"imported {args.checkpoint} -> {out}")
    print(f"  checkpoint sha256 {meta['provenance']['sha256']}; backbone {meta['provenance']['backbone_check']}")
    print(f"  {meta['num_classes']} classes, LayerNorm eps {meta['layernorm_eps']:g}, artifact {artifact_sha256(out)}")
    if args.evaluate is not None:
        _evaluate(out, args)
    return 0


def _json_object(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag} {text!r} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def _evaluate(art_dir: Path, args: argparse.Namespace) -> None:
    from lpt_core.data.store import load_prepared
    from lpt_core.released import (
        RELEASED_REPORTED,
        load_released_artifact,
        released_top1,
    )

    data = load_prepared(args.evaluate)
    model, meta = load_released_artifact(art_dir, device=args.device)
    if list(data.class_names) != list(meta["class_names"]):
        raise ValueError(f"{args.evaluate} has other classes than the artifact (label spaces differ)")
    top1 = released_top1(model, meta, data.test.images, data.test.labels, device=args.device,
                         batch_size=args.batch_size)  # fmt: skip
    print(f"  top-1 on {args.evaluate} test ({len(data.test)} images), released groups (few <= 20, pooled):")
    for group, value in top1.items():
        print(f"    {group:<8} {value:8.4f}%   (README {RELEASED_REPORTED.get(group, float('nan')):.4f}%)")
