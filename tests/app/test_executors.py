"""The local executor with the real evaluator on tiny artifacts: a night builds each backbone
once and reads each batch once (counted by the worker), and its metrics equal those of loading
every pair afresh (``LPT_EVAL_REUSE=0``, the per-pair flow of before)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("lpt_core.eval_worker", reason="lpt_core.eval_worker is not in this checkout")

from tiny_world import BATCHES, MODELS, build_world, metric_values, night  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One set of real tiny artifacts and batches for the module (saving them costs seconds)."""
    return build_world(tmp_path_factory.mktemp("world"))


def test_each_backbone_is_built_once_and_each_batch_read_once(world: Path, tmp_path: Path) -> None:
    summary, engine = night(world, tmp_path)
    pairs = len(MODELS) * BATCHES
    assert (summary.status, summary.pairs_evaluated, summary.pairs_failed) == ("succeeded", pairs, 0)
    (stats,) = summary.workers
    assert stats["pairs"] == pairs
    assert stats["backbone_builds"] == 2 and stats["fingerprints"] == 2, "backbones 0 and 1, once each"
    assert stats["artifact_loads"] == len(MODELS), "each prompt set loaded once for all batches"
    assert stats["batch_reads"] == BATCHES
    assert len(metric_values(engine)) > 0


def test_grouped_metrics_equal_per_pair_loading(world: Path, tmp_path: Path) -> None:
    grouped, e1 = night(world, tmp_path / "grouped")
    single, e2 = night(world, tmp_path / "single", eval_reuse=0)
    (stats,) = single.workers
    sharing = sum(m != "full_ft" for _, m, _ in MODELS) * BATCHES
    assert (stats["backbone_builds"], stats["artifact_loads"], stats["batch_reads"]) == (
        sharing, len(MODELS) * BATCHES, len(MODELS) * BATCHES), "reuse=0 loads everything per pair"
    assert grouped.pairs_evaluated == single.pairs_evaluated == len(MODELS) * BATCHES
    assert metric_values(e1) == metric_values(e2)


def test_a_fingerprint_mismatch_fails_only_its_pairs(world: Path, tmp_path: Path) -> None:
    """The check stays: an artifact whose recorded backbone fingerprint is not the shared one fails."""
    import json
    import shutil

    from lpt_core.artifact_files import META_FILE, SUMS_FILE, TENSORS_FILE, _sha256_file

    copy = tmp_path / "world"
    shutil.copytree(world, copy)
    art = copy / "models" / "lpt_b"
    meta = json.loads((art / META_FILE).read_text())
    meta["backbone"]["fingerprint"] = "0" * 64
    (art / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (art / SUMS_FILE).write_text("".join(f"{_sha256_file(art / n)}  {n}\n" for n in (TENSORS_FILE, META_FILE)))
    summary, _ = night(copy, tmp_path / "run")
    assert summary.pairs_failed == BATCHES and summary.pairs_evaluated == (len(MODELS) - 1) * BATCHES
