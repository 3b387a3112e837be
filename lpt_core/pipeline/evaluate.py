"""Stage ``evaluate@<model>``: one model on every shift set (clean included) -> ``results/<model>/<shift>.json``.

The result files follow the "Result file" schema of docs/ARCHITECTURE.md (``lpt-result/1``),
built by :mod:`lpt_core.evaluate`; the service's ``lpt ingest`` loads them into SQL.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lpt_core.pipeline.common import default_device, parse, section, stage_parser

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` section: which models (dvc.yaml's foreach reads ``models``) and how."""

    models: tuple[str, ...] = ("lpt", "vpt", "linear", "full_ft")
    batch_size: int = 256
    amp: str = "auto"
    few_includes_20: bool = False


def read_index(shifts_dir: Path) -> list[dict[str, Any]]:
    """The shift sets listed in ``index.json`` (written by the shifts stage), each with its batch.json."""
    index_path = shifts_dir / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} missing; run the shifts stage first")
    sets = json.loads(index_path.read_text())["sets"]
    return [json.loads((shifts_dir / s["id"] / "batch.json").read_text()) for s in sets]


def evaluate_model(cfg: EvaluateConfig, artifact: Path, shifts_dir: Path, out: Path, *,
                   backbone_dir: Path | None, device: str, name: str) -> list[Path]:  # fmt: skip
    """Evaluate ``artifact`` on every shift set; writes one result JSON per set into ``out`` (replaced).

    A model trained on file weights loads them from ``backbone_dir`` (not from the absolute path
    recorded at training time, so a fresh clone works); a random-init backbone is rebuilt from its seed.
    """
    from lpt_core.artifacts import artifact_sha256, load_artifact, read_meta
    from lpt_core.data.batches import load_batch
    from lpt_core.evaluate import DEFAULT_LOGIT_SCALE, evaluate_arrays, model_block

    source = read_meta(artifact)["backbone"]["source"]
    weights = backbone_dir / "model.safetensors" if backbone_dir is not None and source.startswith("file:") else None
    model, meta = load_artifact(artifact, backbone_weights=weights, device=device)
    info = model_block(meta, artifact, artifact_sha256(artifact), name)
    counts = meta["class_counts"]
    if out.exists():
        shutil.rmtree(out)
    written = []
    for shift_meta in tqdm(read_index(shifts_dir), desc=f"evaluate {name}"):
        batch = load_batch(shifts_dir / shift_meta["id"])
        result = evaluate_arrays(
            model, batch.images, batch.labels, counts, batch_size=cfg.batch_size, device=device, amp=cfg.amp,
            model_info=info, shift_meta=batch.meta, few_includes_20=cfg.few_includes_20,
            logit_scale=float(meta.get("logit_scale", DEFAULT_LOGIT_SCALE)),
        )  # fmt: skip
        written.append(result.write(out / f"{shift_meta['id']}.json"))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate the artifact ``--artifact`` on the shift sets in ``--shifts``; results into ``--out``."""
    parser = stage_parser("evaluate", main.__doc__ or "")
    parser.add_argument("--artifact", required=True, type=Path, help="model artifact folder")
    parser.add_argument("--shifts", required=True, type=Path, help="folder of shift sets (index.json)")
    parser.add_argument("--backbone", type=Path, default=None,
                        help="backbone folder whose model.safetensors replaces the artifact's recorded weights path")
    parser.add_argument("--out", required=True, type=Path, help="results folder of this model")
    args = parse(parser, argv)
    cfg = section(args.params, "evaluate", EvaluateConfig)
    written = evaluate_model(cfg, args.artifact, args.shifts, args.out, backbone_dir=args.backbone,
                             device=default_device(args.device), name=args.artifact.name)  # fmt: skip
    log.info("wrote %d result files to %s", len(written), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
