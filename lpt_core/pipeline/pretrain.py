"""Stage ``pretrain``: the quickstart backbone (frozen in dvc.yaml; see lpt_core.pretrain)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from lpt_core.pipeline.common import default_device, parse, section, stage_parser
from lpt_core.pretrain import PretrainConfig, pretrain


def main(argv: Sequence[str] | None = None) -> int:
    """Pretrain the backbone on Fashion-MNIST base classes and write it to ``--out``."""
    parser = stage_parser("pretrain", main.__doc__ or "")
    parser.add_argument("--data-root", required=True, type=Path, help="folder with the Fashion-MNIST IDX .gz files")
    parser.add_argument("--out", required=True, type=Path, help="output folder (model.safetensors + backbone.json)")
    args = parse(parser, argv)
    cfg = section(args.params, "pretrain", PretrainConfig)
    pretrain(cfg, args.data_root, args.out, device=default_device(args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
