"""``lpt calibrate``: fit a model's label-free monitoring calibration (MONITORING_SPEC.md) on
labelled reference data it did not train on, into a new artifact (see :mod:`lpt_core.calibrate`).

Models trained by ``lpt train`` are calibrated on their validation split already; this is for
models trained or imported elsewhere (``lpt import released``), or for another reference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from lpt_core.calibrate import CalibrationSpec, calibrate_artifact
    from lpt_core.distributed import resolve_device
    from lpt_core.pipeline.common import cap_torch_threads

    if (args.data is None) == (args.batch is None):
        raise ValueError("give exactly one reference: --data DIR (a prepared split, see --split) or --batch DIR")
    if args.batch is not None:
        from lpt_core.data.batches import load_batch

        batch = load_batch(args.batch)
        if batch.labels is None or (batch.labels < 0).any():
            raise ValueError(f"reference batch {args.batch} is not fully labelled: a reference needs every label")
        images, labels, reference = batch.images, batch.labels, f"batch:{batch.meta['id']}"
    else:
        from lpt_core.data.store import load_prepared

        split = getattr(load_prepared(args.data), args.split)
        if len(split) == 0:
            raise ValueError(f"{args.data} has an empty {args.split} split: choose another reference")
        images, labels, reference = split.images, split.labels, f"{Path(args.data).name}:{args.split}"
    prior = args.target_prior if args.target_prior in ("balanced", "train") else tuple(json.loads(args.target_prior))
    cap_torch_threads()
    meta = calibrate_artifact(args.artifact, images, labels, args.out, spec=CalibrationSpec(target_prior=prior),
                              reference=reference, device=resolve_device(args.device),
                              backbone_weights=args.backbone_weights)  # fmt: skip
    print(json.dumps({"artifact": str(args.out), "calibration": meta["calibration"]}, indent=1))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``calibrate`` to the ``lpt`` parser."""
    p = subparsers.add_parser("calibrate", help="fit a model's label-free monitoring calibration into a new artifact")
    p.add_argument("--artifact", type=Path, required=True, help="artifact directory")
    p.add_argument("--data", type=Path, default=None, help="prepared dataset whose --split is the reference")
    p.add_argument("--split", default="val", choices=("val", "test"), help="split of --data (default val)")
    p.add_argument("--batch", type=Path, default=None, help="a fully labelled shift batch as the reference")
    p.add_argument("--out", type=Path, required=True, help="the new artifact directory (a new model version)")
    p.add_argument("--target-prior", default="balanced",
                   help="deployment class prior: balanced (default), train, or a JSON list of probabilities")
    p.add_argument("--backbone-weights", default=None, help="local backbone weights file")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.set_defaults(func=_cmd_calibrate)


__all__ = ["register"]
