"""``lpt train``: train a model of params.yaml's ``models`` mapping (LPT, Dong et al., ICLR 2023,
or a baseline) in every phase of its method into an artifact.

This is the pipeline's ``train@<name>`` stage too (dvc.yaml runs exactly this command), so a
model trained by hand is the same bytes as the pipeline's. The recipe format is documented in
:mod:`lpt_core.sections`.

Multi-GPU: ``torchrun --nproc_per_node N -m lpt_core.cli train ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _cmd_train(args: argparse.Namespace) -> int:
    # Imported here: torch and timm cost seconds, and every `lpt` command builds this parser.
    from lpt_core.config import read_params
    from lpt_core.pipeline.common import cap_torch_threads
    from lpt_core.sections import resolve_model, train_model

    params = read_params(args.params)
    spec = resolve_model(params, args.model)
    backbone = args.backbone or Path((params.get("paths") or {}).get("backbone", "models/backbone"))
    out = args.out or Path("models") / args.model
    ckpt = args.checkpoints or Path("runs/ckpt") / args.model
    cap_torch_threads()
    meta = train_model(spec, args.model, args.data, backbone, out, ckpt_dir=ckpt, device=args.device)
    if meta:
        print(json.dumps({"artifact": str(out), "method": meta["method"], "fit": meta["fit"]}, indent=1))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``lpt`` parser."""
    p = subparsers.add_parser("train", help="train a model of params.yaml's `models` (every phase) into an artifact")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params.yaml (default: ./params.yaml)")
    p.add_argument("--model", required=True, help="a name of params.yaml's `models` mapping, e.g. lpt")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    p.add_argument("--backbone", type=Path, default=None,
                   help="backbone folder (backbone.json + model.safetensors; default: params paths.backbone)")
    p.add_argument("--out", type=Path, default=None, help="artifact directory to write (default: models/NAME)")
    p.add_argument("--checkpoints", type=Path, default=None, help="checkpoint folder (default: runs/ckpt/NAME)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.set_defaults(func=_cmd_train)


__all__ = ["register"]
