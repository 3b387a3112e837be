"""Shift-batch intake for the nightly job: version what was dropped into the incoming folder
(through ``lpt_core.data.batches.add_batch``, which validates with Great Expectations and registers
nothing on failure), then register every new batch of the shifts root in the store.

The incoming folder (docs/DATA.md, section 4):
- ``incoming/<item>``: labelled batches (class folders, ``.npz`` with x and y, -C ``.npy``);
- ``incoming/unlabeled/<item>``: unlabeled batches (a folder of image files, ``.npz`` with x only,
  an images ``.npy``); an item is unlabeled because of where it was put, never guessed;
- ``incoming/labels/<batch id>.npy|.csv``: labels that arrived for a stored batch
  (``lpt_core.data.labels.label_batch``; never a replacement: that is ``lpt shift label --replace``).

A refused item is never written to the store or the shifts root. Items are moved to ``.done/`` or
``.rejected/`` (with a ``<name>.reason.txt``) of the folder they were in, so that they are handled once.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sqlalchemy.engine import Engine

from app.db import repository as repo
from app.db.session import session_scope
from app.ingest import read_batch_dir
from app.settings import Settings

log = logging.getLogger(__name__)

DONE, REJECTED = ".done", ".rejected"
UNLABELED, LABELS = "unlabeled", "labels"  # reserved subfolders of the incoming folder


def discover_batches(settings: Settings, engine: Engine) -> tuple[list[str], dict[str, str]]:
    """Take in incoming items and register new batches; returns (added ids, {refused: reason})."""
    refused = intake_incoming(settings)
    added = register_new_batches(Path(settings.shifts_dir), engine, refused)
    refresh_label_sets(Path(settings.shifts_dir), engine)
    return added, refused


def incoming_items(incoming: Path, reserved: tuple[str, ...] = (UNLABELED, LABELS)) -> list[Path]:
    """Items waiting in an incoming folder (folders, .npz, .npy or label files), by name; the
    ``reserved`` subfolders are not items."""
    if not incoming.is_dir():
        return []
    return sorted(p for p in incoming.iterdir() if not p.name.startswith(".") and not p.name.endswith(".reason.txt")
                  and not (p.is_dir() and p.name in reserved))  # fmt: skip


def intake_incoming(settings: Settings) -> dict[str, str]:
    """Validate and version each incoming item into the shifts root (labelled items, then
    ``unlabeled/`` ones), then take in ``labels/``; returns {refused item: reason}."""
    incoming = Path(settings.incoming_dir)
    refused = _intake_batches(settings, incoming, incoming_items(incoming), unlabeled=False)
    refused.update(_intake_batches(settings, incoming / UNLABELED, incoming_items(incoming / UNLABELED, ()),
                                   unlabeled=True))  # fmt: skip
    refused.update(intake_labels(settings)[1])
    return refused


def _intake_batches(settings: Settings, folder: Path, items: list[Path], *, unlabeled: bool) -> dict[str, str]:
    """``add_batch`` each item of ``folder``; returns {refused item: reason}."""
    refused: dict[str, str] = {}
    if not items:
        return refused
    from lpt_core.data.batch_inputs import LabelsMismatchError  # lazy: pulls in numpy and great_expectations
    from lpt_core.data.batches import add_batch

    prefix = f"{UNLABELED}/" if unlabeled else ""
    for item in items:
        try:
            batch = add_batch(item, Path(settings.shifts_dir), Path(settings.prepared_dir),
                              use_dvc=bool(settings.use_dvc), unlabeled=unlabeled)  # fmt: skip
        except Exception as exc:  # any refusal: keep the reason next to the item, write nothing
            reason = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, LabelsMismatchError):
                reason += (" (a labelled batch goes into the incoming folder itself)" if exc.has_labels else
                           f" (an unlabeled batch goes into incoming/{UNLABELED}/)")  # fmt: skip
            _refused(refused, prefix + item.name, item, folder, reason)
            continue
        log.info("incoming item %s%s versioned as batch %s", prefix, item.name, batch.meta.get("id", "?"))
        _move(item, folder / DONE, None)
    return refused


def intake_labels(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """Add each ``incoming/labels/<batch id>.npy|.csv`` to its stored batch; returns (labelled
    batch ids, {refused item: reason}). A batch that has labels already is refused."""
    folder = Path(settings.incoming_dir) / LABELS
    items = incoming_items(folder, ())
    labelled: list[str] = []
    refused: dict[str, str] = {}
    if not items:
        return labelled, refused
    from lpt_core.data.labels import AlreadyLabeledError, find_batch, label_batch  # lazy: numpy, pandas

    for item in items:
        try:
            if not item.is_file() or item.suffix not in (".npy", ".csv"):
                raise ValueError(f"{item.name} is not a labels file: expected <batch id>.npy or <batch id>.csv")
            batch_dir = find_batch(settings.shifts_dir, item.stem)
            label_set = label_batch(batch_dir, item, dataset_dir=Path(settings.prepared_dir),
                                    use_dvc=bool(settings.use_dvc))  # fmt: skip
        except Exception as exc:  # any refusal: keep the reason next to the item, write nothing
            reason = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, AlreadyLabeledError):
                reason += " (the drop folder never replaces labels: lpt shift label ID FILE --replace --reason ...)"
            _refused(refused, f"{LABELS}/{item.name}", item, folder, reason)
            continue
        log.info("labels %s: batch %s has %d of %d labelled", item.name, item.stem, label_set.n_labeled, label_set.size)
        labelled.append(item.stem)
        _move(item, folder / DONE, None)
    return labelled, refused


def _refused(refused: dict[str, str], key: str, item: Path, folder: Path, reason: str) -> None:
    refused[key] = reason
    _move(item, folder / REJECTED, reason)
    log.warning("incoming item %s refused: %s", key, reason)


def _move(item: Path, folder: Path, reason: str | None) -> None:
    """Move a handled incoming item aside (replacing an older one of the same name)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / item.name
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    shutil.move(str(item), str(target))
    if reason is not None:
        (folder / f"{item.name}.reason.txt").write_text(reason + "\n", encoding="utf-8")


def register_new_batches(shifts_root: Path, engine: Engine, refused: dict[str, str]) -> list[str]:
    """Register batches of ``shifts_root`` not yet in the store, each in its own transaction.

    Only unknown folders are read, so a night with nothing new costs one query and a listing.
    """
    if not shifts_root.is_dir():
        return []
    with session_scope(engine) as s:
        known = repo.batch_ids(s)
    added: list[str] = []
    for meta in sorted(shifts_root.glob("*/batch.json")):
        batch_dir = meta.parent
        if batch_dir.name in known:
            continue
        try:
            values = read_batch_dir(batch_dir)
            with session_scope(engine) as s:
                _, created = repo.upsert_batch(s, values)
        except (ValueError, KeyError, OSError) as exc:
            refused[batch_dir.name] = f"{type(exc).__name__}: {exc}"
            log.warning("shift batch %s refused: %s", batch_dir, exc)
            continue
        if created:
            added.append(values["id"])
    return added


def refresh_label_sets(shifts_root: Path, engine: Engine) -> list[str]:
    """Record in the store the late label sets of registered batches (``lpt shift label``, or
    ``incoming/labels/``): their pairs become pending again, measured on the labelled images.
    Reads only the small ``labels/labels.json`` files; returns the ids of the batches updated."""
    import json

    from app.db import monitoring as mon
    from lpt_core.dvcutil import dvc_hash

    updated = []
    with session_scope(engine) as s:
        known = repo.batch_ids(s)
    for doc_path in sorted(shifts_root.glob("*/labels/labels.json")) if shifts_root.is_dir() else []:
        batch_dir = doc_path.parent.parent
        if batch_dir.name not in known:
            continue
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
        with session_scope(engine) as s:
            if mon.set_batch_labels(s, batch_dir.name, str(doc["sha256"]), int(doc["n_labeled"]),
                                    dvc_hash=dvc_hash(batch_dir)):  # fmt: skip
                updated.append(batch_dir.name)
                log.info("batch %s: label set %s (%d labelled) recorded; its pairs are measured next",
                         batch_dir.name, str(doc["sha256"])[:12], int(doc["n_labeled"]))
    return updated
