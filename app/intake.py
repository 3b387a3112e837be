"""Shift-batch intake for the nightly job: version what was dropped into the incoming folder
(through ``lpt_core.data.batches.add_batch``, which validates with Great Expectations and registers
nothing on failure), then register every new batch of the shifts root in the store.

A refused batch is never written to the store. Incoming items are moved to ``incoming/.done/`` or
``incoming/.rejected/`` (with a ``<name>.reason.txt``) so that they are handled once.
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


def discover_batches(settings: Settings, engine: Engine) -> tuple[list[str], dict[str, str]]:
    """Take in incoming items and register new batches; returns (added ids, {refused: reason})."""
    refused = intake_incoming(settings)
    added = register_new_batches(Path(settings.shifts_dir), engine, refused)
    return added, refused


def incoming_items(incoming: Path) -> list[Path]:
    """Items waiting in the incoming folder (folders, .npz files, -C .npy files), by name."""
    if not incoming.is_dir():
        return []
    return sorted(p for p in incoming.iterdir() if not p.name.startswith(".") and not p.name.endswith(".reason.txt"))


def intake_incoming(settings: Settings) -> dict[str, str]:
    """Validate and version each incoming item into the shifts root; returns {refused: reason}."""
    incoming = Path(settings.incoming_dir)
    items = incoming_items(incoming)
    refused: dict[str, str] = {}
    if not items:
        return refused
    from lpt_core.data.batches import add_batch  # lazy: pulls in numpy and great_expectations

    for item in items:
        try:
            batch = add_batch(item, Path(settings.shifts_dir), Path(settings.prepared_dir),
                              use_dvc=bool(settings.use_dvc))
        except Exception as exc:  # any refusal: keep the reason next to the item, write nothing
            reason = f"{type(exc).__name__}: {exc}"
            refused[item.name] = reason
            _move(item, incoming / REJECTED, reason)
            log.warning("incoming item %s refused: %s", item.name, reason)
            continue
        log.info("incoming item %s versioned as batch %s", item.name, getattr(batch, "meta", {}).get("id", "?"))
        _move(item, incoming / DONE, None)
    return refused


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
