"""``lpt prepare``, ``lpt validate`` and ``lpt shift make|add|label|list``: the data commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

DEFAULT_SHIFTS_ROOT = Path("data/shifts")
DEFAULT_PREPARED = Path("data/prepared/target")  # the pipeline's prepared target dataset (dvc.yaml)
DEFAULT_MAKE_SIZE = 500  # images per generated batch, or the whole test split if it is smaller


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the data subcommands to the ``lpt`` parser."""
    p = subparsers.add_parser("prepare", help="build a prepared (long-tailed) dataset from a params section")
    p.add_argument("--params", type=Path, required=True, help="params.yaml")
    p.add_argument("--section", default="prepare", help="section of the params file (default: prepare)")
    p.add_argument("--out", type=Path, required=True, help="output folder of the prepared dataset")
    p.set_defaults(func=_prepare)

    v = subparsers.add_parser("validate", help="validate a prepared dataset or a stored shift batch (GX)")
    v.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    v.add_argument("--batch", type=Path, default=None, help="validate this stored shift batch against --data")
    v.add_argument("--out", type=Path, required=True, help="folder for validation.json and validation.html")
    v.set_defaults(func=_validate)

    s = subparsers.add_parser("shift", help="shift batches: make, add, label, list")
    sub = s.add_subparsers(dest="shift_command", required=True, metavar="ACTION")
    _register_make(sub)
    _register_add(sub)
    _register_label(sub)
    ls = sub.add_parser("list", help="list the stored shift batches")
    ls.add_argument("--shifts-root", type=Path, default=DEFAULT_SHIFTS_ROOT)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=_list)


def _common(p: argparse.ArgumentParser, data: Path | None = None) -> None:
    if data is None:
        p.add_argument("--data", type=Path, required=True, help="prepared dataset the labels refer to")
    else:
        p.add_argument("--data", type=Path, default=data, help=f"prepared dataset the labels refer to (default: {data})")
    p.add_argument("--shifts-root", type=Path, default=DEFAULT_SHIFTS_ROOT, help="where batches are stored")
    p.add_argument("--no-dvc", action="store_true", help="store without DVC versioning (no DVC repo needed)")
    p.add_argument("--report-dir", type=Path, default=None, help="write the validation result of a refused batch here")


def _register_make(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("make", help="corrupt part of the prepared test split into a new batch")
    _common(m, DEFAULT_PREPARED)
    m.add_argument("--corruption", required=True, help="a corruption name or 'mixture'")
    m.add_argument("--severity", type=int, default=None, help="1..5 (not used by mixture)")
    m.add_argument("--size", type=int, default=None,
                   help=f"number of test images (default: {DEFAULT_MAKE_SIZE}, or the whole test split if smaller)")
    m.add_argument("--seed", type=int, default=None,
                   help="random seed (default: drawn and printed, so the batch can be made again)")
    m.set_defaults(func=_make)


def _register_add(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("add", help="ingest a folder, an .npz (x, y) or a -C .npy as a new batch")
    a.add_argument("path", type=Path)
    _common(a)
    a.add_argument("--unlabeled", action="store_true",
                   help="images without labels: a folder of image files (no class folders; ids = file names), "
                        "an .npz with x only, or an images .npy (uint8 N x H x W x 3; ids = row indices)")
    a.add_argument("--severity", type=int, default=None, help="severity (required for a -C .npy)")
    a.add_argument("--corruption", default=None, help="corruption name (default: unknown, or the -C file stem)")
    a.add_argument("--labels", type=Path, default=None, help="labels .npy for a -C file (default: labels.npy beside it)")
    a.add_argument("--kind", choices=("real", "published", "generated"), default=None)
    a.set_defaults(func=_add)


def _register_label(sub: argparse._SubParsersAction) -> None:
    lb = sub.add_parser("label", help="add labels that arrived later to a stored batch (all images or a subset)")
    lb.add_argument("batch_id", help="the batch id (lpt shift list)")
    lb.add_argument("labels", type=Path, help=".npy (one class index per image) or .csv (index|id, label|class)")
    lb.add_argument("--data", type=Path, default=DEFAULT_PREPARED,
                    help=f"the batch's prepared dataset: class count and names (default: {DEFAULT_PREPARED})")
    lb.add_argument("--shifts-root", type=Path, default=DEFAULT_SHIFTS_ROOT, help="where batches are stored")
    lb.add_argument("--replace", action="store_true", help="replace the labels the batch has (needs --reason)")
    lb.add_argument("--reason", default=None, help="why the labels are replaced (recorded with the new set)")
    lb.add_argument("--no-dvc", action="store_true", help="do not re-version the batch with DVC")
    lb.set_defaults(func=_label)


def _prepare(args: argparse.Namespace) -> int:
    from lpt_core.config import load_section
    from lpt_core.data.prepare import PrepareConfig, prepare

    cfg = load_section(args.params, args.section, PrepareConfig)
    data = prepare(cfg, args.out)
    meta = json.loads((args.out / "dataset.json").read_text())
    print(f"prepared {meta['name']} -> {args.out}")
    print(f"  classes: {data.num_classes}, train {len(data.train)}, val {len(data.val)}, test {len(data.test)}")
    print(f"  train counts: {data.class_counts.tolist()}")
    for split, h in meta["content_hashes"].items():
        print(f"  {split} content sha256: {h}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from lpt_core.data.store import load_prepared
    from lpt_core.validation import validate_batch, validate_prepared

    data = load_prepared(args.data)
    if args.batch is None:
        report = validate_prepared(data, args.out)
    else:
        from lpt_core.data.batches import load_batch, registered_hashes

        batch = load_batch(args.batch, verify=False)
        others = registered_hashes(args.batch.parent) - {batch.meta["content_hash"]}
        sev = batch.meta.get("severity") or None
        given = np.load(args.batch / "labels.npy") if batch.labeled else None  # what the content hash covers
        report = validate_batch(
            np.asarray(batch.images), given, num_classes=data.num_classes,
            image_shape=tuple(data.test.images.shape[1:3]), severity=sev, registered_hashes=others, out_dir=args.out,
        )  # fmt: skip
    print(report.summary(), file=sys.stdout if report.success else sys.stderr)
    print(f"  result: {report.paths['json']}\n  html:   {report.paths['html']}")
    return 0 if report.success else 1


def _make(args: argparse.Namespace) -> int:
    from lpt_core.data.batches import make_batch
    from lpt_core.data.store import load_prepared

    size = args.size
    if size is None:
        size = min(DEFAULT_MAKE_SIZE, len(load_prepared(args.data).test))
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    severity = "" if args.severity is None else f" --severity {args.severity}"
    # Printed before the work, so even a refused batch can be made again exactly.
    print(f"making {size} images of {args.corruption} from {args.data}, seed {seed} (again: lpt shift make "
          f"--data {args.data} --corruption {args.corruption}{severity} --size {size} --seed {seed})")
    batch = make_batch(args.data, args.shifts_root, args.corruption, args.severity, size, seed,
                       use_dvc=not args.no_dvc, report_dir=args.report_dir)  # fmt: skip
    _print_batch(batch)
    return 0


def _add(args: argparse.Namespace) -> int:
    from lpt_core.data.batches import add_batch

    batch = add_batch(args.path, args.shifts_root, args.data, corruption=args.corruption, severity=args.severity,
                      labels_path=args.labels, kind=args.kind, use_dvc=not args.no_dvc, report_dir=args.report_dir,
                      unlabeled=args.unlabeled)  # fmt: skip
    _print_batch(batch)
    return 0


def _label(args: argparse.Namespace) -> int:
    from lpt_core.data.labels import find_batch, label_batch
    from lpt_core.dvcutil import dvc_hash

    folder = find_batch(args.shifts_root, args.batch_id)
    done = label_batch(folder, args.labels, dataset_dir=args.data, replace=args.replace, reason=args.reason,
                       use_dvc=not args.no_dvc)  # fmt: skip
    print(f"labelled shift batch {args.batch_id}: {done.n_labeled} of {done.size} images")
    print(f"  label set:    {done.sha256}")
    if done.meta.get("replaced_sha256"):
        print(f"  replaced:     {done.meta['replaced_sha256']} ({done.meta['reason']})")
    print(f"  dvc md5:      {dvc_hash(folder) or '(not versioned: --no-dvc)'}")
    return 0


def _print_batch(batch: object) -> None:
    meta, path = batch.meta, batch.path  # type: ignore[attr-defined]
    print(f"registered shift batch {meta['id']}")
    print(f"  path:         {path}")
    print(f"  kind:         {meta['kind']} ({meta['corruption']}, severity {meta['severity']}), {meta['size']} images, "
          f"{'labelled' if meta.get('labeled', True) else 'unlabeled'}")
    print(f"  content hash: {meta['content_hash']}")
    print(f"  dvc md5:      {batch.dvc_hash or '(not versioned: --no-dvc)'}")  # type: ignore[attr-defined]
    if "seed" in meta:
        print(f"  seed:         {meta['seed']}")


def _list(args: argparse.Namespace) -> int:
    from lpt_core.data.batches import list_batches

    metas = list_batches(args.shifts_root)
    if args.json:
        print(json.dumps(metas, indent=2))
        return 0
    if not metas:
        print(f"no shift batches under {args.shifts_root}")
        return 0
    for m in metas:
        print(f"{m['id']}\t{m['kind']}\t{m['corruption']}\ts{m['severity']}\t{m['size']}\t"
              f"{label_status(m['label_set'])}\t{m['dataset']}\tdvc={m['dvc_hash'] or '-'}")  # fmt: skip
    return 0


def label_status(summary: dict | None) -> str:
    """``labelled``, ``unlabeled`` or ``k of N labelled`` (labels added later) of a batch's label set."""
    if summary is None:
        return "unlabeled"
    if summary["origin"] == "batch":
        return "labelled"
    replaced = " (replaced)" if summary.get("replaced_sha256") else ""
    return f"{summary['n_labeled']} of {summary['size']} labelled{replaced}"

