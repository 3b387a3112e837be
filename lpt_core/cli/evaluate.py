"""``lpt evaluate``: evaluate an artifact (LPT, Dong et al., ICLR 2023, or a baseline) on a
prepared split, a shift batch, or every shift set of the pipeline, into result files.

This is the pipeline's ``evaluate@<name>`` stage too (dvc.yaml runs exactly this command); it
and the nightly job evaluate through :func:`lpt_core.evaluate.load_for_evaluation` and
:func:`lpt_core.evaluate.evaluate_loaded` with one :class:`lpt_core.evaluate.EvalConfig`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def eval_config(args: argparse.Namespace) -> Any:
    """The :class:`EvalConfig` of params' ``evaluate`` section (when ``--params``), then the flags."""
    from lpt_core.config import from_mapping, read_params
    from lpt_core.evaluate import EvalConfig

    section = dict(read_params(args.params).get("evaluate") or {}) if args.params else {}
    flags = {"device": args.device, "amp": args.amp, "batch_size": args.batch_size}
    section.update({k: v for k, v in flags.items() if v is not None})
    return from_mapping(EvalConfig, section, where="evaluate")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from lpt_core.evaluate import load_for_evaluation
    from lpt_core.pipeline.common import cap_torch_threads

    sources = [x for x in (args.data, args.batch, args.shifts) if x is not None]
    if len(sources) != 1:
        raise ValueError("give exactly one of --data DIR (a prepared split), --batch DIR (a shift batch) "
                         "or --shifts DIR (every set of the pipeline's index.json)")
    cfg = eval_config(args)
    cap_torch_threads()
    loaded = load_for_evaluation(args.artifact, cfg, backbone_weights=_weights(args), model_name=args.model_name)
    if args.shifts is not None:
        return _evaluate_sets(loaded, cfg, args.shifts, args.out)
    images, labels, shift = _one_set(args)
    from lpt_core.evaluate import evaluate_loaded

    result = evaluate_loaded(loaded, images, labels, cfg, shift_meta=shift)
    result.write(args.out)
    print(summary_line(result, loaded))
    log.info("wrote %s", args.out)
    return 0


def summary_line(result: Any, loaded: Any) -> str:
    """Top-1 (%) overall / many / medium / few as this model's group rule defines them (the
    released checkpoint: few <= 20 on the full training counts, pooled over the group's images)."""
    groups = {r["group"]: r for r in result.metrics if r["name"] == "top1"}
    if not groups:
        est = (result.monitoring or {}).get("estimates") or []
        atc = next((e["value"] for e in est if e["estimator"] == "atc_max_conf" and e["group"] == "overall"), None)
        return (f"{result.model['name']} on {result.shift['id']}: no labels; estimated top-1 "
                f"{'n/a' if atc is None else f'{100 * atc:.2f}'} % (ATC)")
    parts = [f"{g} {100 * groups[g]['value']:.2f}" for g in ("overall", "many", "medium", "few") if g in groups]
    rule = f"few {'<=' if loaded.few_includes_20 else '<'} 20 training images, group accuracy {loaded.pooling}"
    return f"{result.model['name']} on {result.shift['id']}: top-1 % {', '.join(parts)} ({rule}; n = {groups['overall']['n']})"


def _weights(args: argparse.Namespace) -> Path | None:
    """``--backbone-weights``, else ``--backbone``'s weights for an artifact trained on file weights
    (a model on a seeded random backbone rebuilds its own; the recorded path may be another clone's)."""
    if args.backbone_weights is not None or args.backbone is None:
        return args.backbone_weights
    from lpt_core.artifacts import read_meta

    source = str(read_meta(args.artifact)["backbone"].get("source", ""))
    return args.backbone / "model.safetensors" if source.startswith("file:") else None


def _one_set(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(images, labels, shift block) of ``--batch`` or of ``--data``'s ``--split``."""
    if args.batch is not None:
        from lpt_core.data.batches import load_batch

        batch = load_batch(args.batch)
        return batch.images, batch.labels, dict(batch.meta, dvc_hash=batch.dvc_hash)
    from lpt_core.data.store import load_prepared
    from lpt_core.evaluate import clean_shift_meta

    data = load_prepared(args.data)
    split = getattr(data, args.split)
    name = data.meta.get("name", Path(args.data).name)
    shift = clean_shift_meta(split.images, split.labels, shift_id=f"{name}-{args.split}", dataset=name)
    return split.images, split.labels, shift


def _evaluate_sets(loaded: Any, cfg: Any, shifts_dir: Path, out: Path) -> int:
    """Every set of ``shifts_dir/index.json`` -> ``out/<set id>.json`` (``out`` replaced), written
    without run details so that the pipeline's results are the same bytes for the same inputs."""
    import shutil

    from tqdm import tqdm

    from lpt_core.data.batches import load_batch, read_index
    from lpt_core.evaluate import evaluate_loaded

    sets = [s["id"] for s in read_index(shifts_dir)]
    if out.exists():
        shutil.rmtree(out)
    for set_id in tqdm(sets, desc=f"evaluate {loaded.info['name']}"):
        batch = load_batch(shifts_dir / set_id)
        result = evaluate_loaded(loaded, batch.images, batch.labels, cfg, shift_meta=batch.meta)
        result.write(out / f"{set_id}.json", with_run=False)
        run = result.run or {}
        log.info("%s on %s: top1 %.4f (%.2f s, %.0f images/s on %s)", loaded.info["name"], set_id,
                 result.metric("top1"), run.get("eval_seconds", 0), run.get("images_per_second", 0),
                 run.get("device", "?"))  # fmt: skip
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the ``lpt`` parser."""
    e = subparsers.add_parser("evaluate", help="evaluate an artifact on a prepared split, a shift batch or shift sets")
    e.add_argument("--artifact", type=Path, required=True, help="artifact directory")
    e.add_argument("--data", type=Path, default=None, help="prepared dataset directory (see --split)")
    e.add_argument("--split", default="test", choices=("test", "val"), help="split of --data (default test)")
    e.add_argument("--batch", type=Path, default=None, help="shift batch directory")
    e.add_argument("--shifts", type=Path, default=None, help="folder of shift sets with index.json (--out is a folder)")
    e.add_argument("--out", type=Path, required=True, help="result JSON file (a folder with --shifts)")
    e.add_argument("--params", type=Path, default=None, help="read the `evaluate` section of this params.yaml")
    e.add_argument("--backbone", type=Path, default=None, help="backbone folder whose weights the artifact uses")
    e.add_argument("--backbone-weights", default=None, help="local backbone weights file (wins over --backbone)")
    e.add_argument("--model-name", default=None, help="model name in the result (default: from the artifact)")
    e.add_argument("--batch-size", type=int, default=None, help="images per forward (default 256)")
    e.add_argument("--amp", default=None, choices=("auto", "bf16", "off"), help="bf16 autocast (auto: on CUDA)")
    e.add_argument("--device", default=None, help="auto | cpu | cuda[:i] (default auto)")
    e.set_defaults(func=_cmd_evaluate)


__all__ = ["eval_config", "register"]
