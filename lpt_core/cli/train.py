"""``lpt train`` and ``lpt evaluate``: train every phase of a method (LPT, Dong et al., ICLR 2023,
or a baseline) into an artifact, and evaluate an artifact into a result file.

The section format is documented in :mod:`lpt_core.sections`.

Multi-GPU: ``torchrun --nproc_per_node N -m lpt_core.cli train ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from lpt_core.config import load_section

log = logging.getLogger(__name__)


def _cmd_train(args: argparse.Namespace) -> int:
    # Imported here: torch and timm cost seconds, and every `lpt` command builds this parser.
    from lpt_core.sections import TrainSection, train_section

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


__all__ = ["register"]
