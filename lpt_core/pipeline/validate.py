"""Stage ``validate``: Great Expectations checks of the prepared target set, and the base/novel split.

The quickstart backbone must never have seen the target labels (the premise of LPT, Dong et al.,
ICLR 2023), so the target classes must be disjoint from the pretraining base classes.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from lpt_core.data.store import load_prepared
from lpt_core.pipeline.common import parse, stage_parser, write_json

log = logging.getLogger(__name__)


def check_disjoint_classes(target_classes: Sequence[str], seen_classes: Sequence[str], what: str) -> None:
    """Raise ``ValueError`` when a target class is among ``seen_classes`` (pretraining labels)."""
    overlap = sorted(set(seen_classes) & set(target_classes))
    if overlap:
        raise ValueError(f"target classes {overlap} are classes of {what}; LPT needs labels the backbone never saw")


def main(argv: Sequence[str] | None = None) -> int:
    """Validate ``--data`` and write the report to ``--out``; a failed check fails the stage."""
    from lpt_core.validation import validate_prepared

    parser = stage_parser("validate", main.__doc__ or "")
    parser.add_argument("--data", required=True, type=Path, help="prepared target dataset")
    parser.add_argument("--base", type=Path, default=None, help="prepared base-class (pretraining) set")
    parser.add_argument("--backbone", type=Path, default=None, help="backbone folder (backbone.json)")
    parser.add_argument("--out", required=True, type=Path, help="folder for validation.json/html + summary.json")
    args = parse(parser, argv, torch_threads=False)
    data = load_prepared(args.data)
    report = validate_prepared(data, args.out)
    disjoint = "not checked"
    if args.base is not None:
        check_disjoint_classes(data.class_names, load_prepared(args.base).class_names, f"the base set {args.base}")
        disjoint = "passed"
    if args.backbone is not None:
        meta = json.loads((args.backbone / "backbone.json").read_text())
        seen = meta.get("pretrain_data", {}).get("base_classes", [])
        check_disjoint_classes(data.class_names, seen, f"the backbone's pretraining ({args.backbone})")
        disjoint = "passed"
    write_json(args.out / "summary.json", {"success": report.success, "failures": report.failures,
                                           "base_novel_disjoint": disjoint, "dataset": data.meta.get("name")})
    log.info(report.summary())
    report.raise_for_failure()
    return 0


if __name__ == "__main__":
    sys.exit(main())
