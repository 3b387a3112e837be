"""Grouping a night's pairs into work units (app.units): every pair once, families by backbone,
the store's order kept inside a unit, and a split for several workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.jobs import PairSpec
from app.units import artifact_key, plan_units


def _artifact(root: Path, name: str, backbone: str, method: str = "lpt") -> str:
    d = root / name
    d.mkdir(parents=True)
    meta = {"method": method, "backbone": {"name": backbone, "fingerprint": backbone * 4, "source": "random",
                                           "seed": 0, "timm_kwargs": {}}}
    (d / "meta.json").write_text(json.dumps(meta))
    return str(d)


def _pairs(arts: list[str], batches: list[str]) -> list[tuple[PairSpec, int]]:
    """Batch-major like ``repository.pending_pairs``."""
    out = []
    for b in batches:
        for i, a in enumerate(arts):
            out.append((PairSpec(Path(a).name, "lpt", a, "sha", b, f"/shifts/{b}", "generated", "tiny", "fog", 3, 10,
                                 "h", None, "v1"), i + 1))
    return out


def test_one_worker_one_family_keeps_the_store_order(tmp_path: Path) -> None:
    arts = [_artifact(tmp_path, f"m{i}", "vit_a") for i in range(3)]
    pairs = _pairs(arts, ["b0", "b1"])
    units = plan_units(pairs, workers=1)
    assert len(units) == 1 and list(units[0].pairs) == pairs


def test_families_hold_at_most_capacity_backbones(tmp_path: Path) -> None:
    arts = [_artifact(tmp_path, f"m{i}", f"vit_{i % 3}") for i in range(6)]
    pairs = _pairs(arts, ["b0", "b1"])
    units = plan_units(pairs, workers=1, backbone_capacity=2)
    keys = [{artifact_key(s.artifact_path) for s in u.specs} for u in units]
    assert [len(k) for k in keys] == [2, 1]
    assert sorted(map(id, (p for u in units for p in u.pairs))) == sorted(map(id, pairs)), "each pair exactly once"
    for unit in units:  # batch-major inside a unit
        batches = [s.batch_id for s in unit.specs]
        assert batches == sorted(batches)


@pytest.mark.parametrize(("n_batches", "expected_units"), [(8, 4), (1, 4), (3, 3)])
def test_several_workers_split_by_batches_then_by_artifacts(tmp_path: Path, n_batches: int,
                                                             expected_units: int) -> None:
    arts = [_artifact(tmp_path, f"m{i}", "vit_a") for i in range(5)]
    pairs = _pairs(arts, [f"b{j}" for j in range(n_batches)])
    units = plan_units(pairs, workers=2)
    assert len(units) == expected_units
    assert sum(len(u.pairs) for u in units) == len(pairs)
    assert len({(s.artifact_path, s.batch_id) for u in units for s in u.specs}) == len(pairs)
    if n_batches >= 2:  # each batch in one unit only: read once
        owners = {}
        for u in units:
            for s in u.specs:
                owners.setdefault(s.batch_id, set()).add(u.index)
        assert all(len(v) == 1 for v in owners.values())


def test_an_unreadable_artifact_gets_a_key_of_its_own(tmp_path: Path) -> None:
    good = _artifact(tmp_path, "m0", "vit_a")
    missing = str(tmp_path / "gone")
    assert artifact_key(missing).startswith("unreadable:")
    units = plan_units(_pairs([good, missing], ["b0"]), workers=1, backbone_capacity=1)
    assert [len(u.pairs) for u in units] == [1, 1]


def test_bad_plan_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="workers >= 1"):
        plan_units([], workers=0)
