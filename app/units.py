"""Grouping a night's pending (model version, shift batch) pairs into work units.

Prompt sets on one frozen backbone (LPT, Dong et al., ICLR 2023; VPT; linear probes; full
fine-tuning from the same base) form a *family*: one worker holding its backbones evaluates,
batch by batch, every artifact of the family on each batch. A family has at most
``backbone_capacity`` distinct backbones (what a worker keeps at once), so a worker builds each
of them once and reads each batch once. For several workers a family is cut into about two
units per worker, by batches first and, when a night has fewer batches than that (one new
batch, tens of prompt sets), by artifacts too. Within a unit the pairs keep the store's order
(batch registration, model name, version).

Torch-free: keys come from each artifact's ``meta.json``
(:func:`lpt_core.backbone_pool.backbone_key`); an unreadable one gets a key of its own and the
pair fails in its own evaluation, as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpt_core.backbone_pool import backbone_key

Pair = tuple[Any, int]  # (app.jobs.PairSpec, model version id)


@dataclass(frozen=True)
class WorkUnit:
    """Pairs one worker evaluates in one go: ``family`` names the backbones they need."""

    index: int
    family: int
    pairs: tuple[Pair, ...]

    @property
    def specs(self) -> list[Any]:
        """The units' PairSpecs, in evaluation order."""
        return [spec for spec, _ in self.pairs]


def artifact_key(artifact_path: str, backbone_weights: str | None = None) -> str:
    """The backbone key of the artifact at ``artifact_path`` (its own key when unreadable)."""
    try:
        meta = json.loads((Path(artifact_path) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"unreadable:{artifact_path}"
    if not isinstance(meta, dict):
        return f"unreadable:{artifact_path}"
    return backbone_key(meta, backbone_weights)


def plan_units(
    pairs: Sequence[Pair], *, workers: int = 1, backbone_capacity: int = 4, backbone_weights: str | None = None
) -> list[WorkUnit]:
    """The units of ``pairs`` for ``workers`` workers (see the module docstring); every pair lands
    in exactly one unit."""
    if workers < 1 or backbone_capacity < 1:
        raise ValueError(f"need workers >= 1 and backbone_capacity >= 1, got {workers} and {backbone_capacity}")
    keys: dict[str, str] = {}
    for spec, _ in pairs:
        if spec.artifact_path not in keys:
            keys[spec.artifact_path] = artifact_key(spec.artifact_path, backbone_weights)
    order = list(dict.fromkeys(keys.values()))
    family_of = {key: i // backbone_capacity for i, key in enumerate(order)}
    units: list[WorkUnit] = []
    for family in sorted(set(family_of.values())):
        members = [p for p in pairs if family_of[keys[p[0].artifact_path]] == family]
        for chunk in _split(members, workers):
            units.append(WorkUnit(len(units), family, tuple(chunk)))
    return units


def _split(pairs: list[Pair], workers: int) -> list[list[Pair]]:
    """``pairs`` cut for ``workers``: one part for one worker; else up to two contiguous batch
    ranges per worker, and artifact ranges too when there are fewer batches than workers."""
    if workers == 1:
        return [list(pairs)]
    target = 2 * workers
    batches = list(dict.fromkeys(spec.batch_id for spec, _ in pairs))
    artifacts = list(dict.fromkeys(spec.artifact_path for spec, _ in pairs))
    b_parts = min(len(batches), target)
    a_parts = 1 if b_parts >= workers else min(len(artifacts), math.ceil(target / b_parts))
    b_of = {b: i * b_parts // len(batches) for i, b in enumerate(batches)}
    a_of = {a: i * a_parts // len(artifacts) for i, a in enumerate(artifacts)}
    parts: dict[tuple[int, int], list[Pair]] = {}
    for pair in pairs:
        parts.setdefault((b_of[pair[0].batch_id], a_of[pair[0].artifact_path]), []).append(pair)
    return [parts[k] for k in sorted(parts)]
