"""``prepare.protocol: released`` (the LPT release's data protocol) and Places-LT's official val list."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lpt_core.data.prepare import PrepareConfig, build_prepared, prepare
from lpt_core.data.sources import load_source
from lpt_core.data.store import group_rule, load_prepared, save_prepared
from lpt_core.metrics import classification_metrics, group_accuracy
from lpt_core.validation import validate_prepared

CIFAR_LT = PrepareConfig(source="cifar100", n_max=500, rho=100, seed=0)


@pytest.fixture(scope="module")
def heldout_and_released(fake_cifar100_full: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """CIFAR-100-LT (rho 100) from the fake CIFAR-100, prepared under both protocols."""
    raw = load_source("cifar100", fake_cifar100_full)
    out = tmp_path_factory.mktemp("protocols")
    held = save_prepared(out / "heldout", build_prepared(raw, CIFAR_LT))
    rel = save_prepared(out / "released", build_prepared(raw, replace(CIFAR_LT, protocol="released")))
    return held, rel


def _flat(doc: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in doc.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def test_released_protocol_changes_only_counts_val_and_rule(heldout_and_released: tuple[Path, Path]) -> None:
    held_dir, rel_dir = heldout_and_released
    held, rel = load_prepared(held_dir), load_prepared(rel_dir)
    full = [int(np.floor(500 * 0.01 ** (i / 99))) for i in range(100)]
    assert rel.class_counts.tolist() == full and sum(full) == 10847  # no hold-out
    assert len(rel.val) == 0 and len(held.val) > 0 and held.class_counts.sum() < 10847
    # the same long-tailed draw: released train = held-out train + held-out val, row for row
    union = np.sort(np.concatenate([held.train.source_index, held.val.source_index]))
    assert np.array_equal(rel.train.source_index, union)
    a, b = (_flat(json.loads((d / "dataset.json").read_text())) for d in (held_dir, rel_dir))
    changed = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert changed == {"train_class_counts", "sizes.train", "sizes.val", "content_hashes.train", "content_hashes.val",
                       "protocol", "config.protocol", "profile.val_rule.val_fraction", "profile.val_rule.none"}
    assert a["full_train_class_counts"] == b["full_train_class_counts"] == full  # recorded under both
    assert a["profile.val_rule.val_fraction"] == 0.1 and b["profile.val_rule.none"] is True
    assert np.array_equal(np.asarray(held.test.images), np.asarray(rel.test.images))


def test_released_dataset_with_empty_val_validates(heldout_and_released: tuple[Path, Path], tmp_path: Path) -> None:
    report = validate_prepared(load_prepared(heldout_and_released[1]), tmp_path / "v")
    assert report.success, report.summary()


def test_group_rule_of_each_protocol(heldout_and_released: tuple[Path, Path]) -> None:
    held_meta, rel_meta = (json.loads((d / "dataset.json").read_text()) for d in heldout_and_released)
    full = np.asarray(rel_meta["full_train_class_counts"])
    r = group_rule(rel_meta)
    assert r.few_includes_20 and r.pooling == "pooled" and np.array_equal(r.class_counts, full)
    h = group_rule(held_meta)
    assert not h.few_includes_20 and h.pooling == "class_mean"
    assert np.array_equal(h.class_counts, held_meta["train_class_counts"])
    assert np.array_equal(group_rule(held_meta, "released").class_counts, full)  # released groups, held-out data
    with pytest.raises(ValueError, match="protocol must be one of"):
        group_rule(held_meta, "paper")
    with pytest.raises(ValueError, match="prepare.protocol must be one of"):
        PrepareConfig(source="x", protocol="paper")


def test_released_pooling_differs_from_the_class_mean_on_unbalanced_tests() -> None:
    counts = np.array([200, 20, 5])  # many, few (<= 20 under the released rule), few
    labels = np.array([0, 1, 1, 1, 1, 2])
    preds = np.array([0, 1, 0, 0, 0, 2])  # class 1: 1/4, class 2: 1/1
    pooled = group_accuracy(preds, labels, counts, few_includes_20=True, pooling="pooled")
    mean = group_accuracy(preds, labels, counts, few_includes_20=True)
    assert pooled["few"] == pytest.approx(2 / 5) and mean["few"] == pytest.approx((0.25 + 1.0) / 2)
    logits = np.eye(3)[preds]
    rows = classification_metrics(logits, labels, counts, few_includes_20=True, pooling="pooled")["metrics"]
    few = next(r for r in rows if r["name"] == "top1" and r["group"] == "few")
    assert few["value"] == pytest.approx(2 / 5) and few["n"] == 5 and few["ci_low"] < 0.4 < few["ci_high"]
    assert group_accuracy(preds, labels, counts)["medium"] == pytest.approx(0.25)  # 20 is medium by default
    with pytest.raises(ValueError, match="group pooling"):
        group_accuracy(preds, labels, counts, pooling="mean")


def _places(root: Path, with_val: bool, val_lines: str | None = None) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = {"train": [("a/abbey", 0)] * 6 + [("b/bar", 1)] * 3, "test": [("a/abbey", 0), ("b/bar", 1)] * 2,
            "val": [("a/abbey", 0), ("b/bar", 1)]}  # fmt: skip
    for split, items in rows.items():
        lines = []
        for i, (folder, label) in enumerate(items):
            path = root / split / folder / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path, quality=95)
            lines.append(f"{split}/{folder}/{i}.jpg {label}")
        if split != "val" or with_val:
            text = val_lines if split == "val" and val_lines is not None else "\n".join(lines) + "\n"
            (root / f"Places_LT_{split}.txt").write_text(text)
    return root


def test_places_val_list_is_read_when_present(tmp_path: Path) -> None:
    raw = load_source("places_lt", _places(tmp_path / "with", True), image_size=12)
    assert raw.val is not None and raw.val.labels.tolist() == [0, 1] and raw.val.images.shape == (2, 12, 12, 3)
    assert load_source("places_lt", tmp_path / "with", image_size=12, official_val=False).val is None
    assert load_source("places_lt", _places(tmp_path / "without", False), image_size=12).val is None
    bad = _places(tmp_path / "bad", True, "val/a/abbey/0.jpg 7\n")
    with pytest.raises(ValueError, match=r"Places_LT_val.txt: labels 7..7 outside the 2 training classes"):
        load_source("places_lt", bad, image_size=12)


def test_places_released_protocol_uses_the_official_val(tmp_path: Path) -> None:
    root = _places(tmp_path / "places", True)
    cfg = PrepareConfig(source="places_lt", root=str(root), image_size=12, protocol="released")
    data = prepare(cfg, tmp_path / "rel")
    assert data.class_counts.tolist() == [6, 3] and data.val.ids.tolist() == ["places_lt:val:0", "places_lt:val:1"]
    profile = data.meta["profile"]
    assert profile["official_val_counts"] == [1, 1] and profile["val_rule"] == {"official_list": True}
    assert validate_prepared(load_prepared(tmp_path / "rel")).success
    # held out: the val list is not even decoded (an undecodable entry there does not matter)
    (root / "Places_LT_val.txt").write_text("val/missing.jpg 0\n")
    held = prepare(replace(cfg, protocol="heldout", val_per_class=1), tmp_path / "held")
    assert held.class_counts.tolist() == [5, 2] and held.val.ids.tolist()[0].startswith("places_lt:train:")


def test_places_released_protocol_streamed_from_the_decode_cache(tmp_path: Path) -> None:
    root = _places(tmp_path / "places", True)
    opts = {"decode_dir": str(tmp_path / "decoded")}
    cfg = PrepareConfig(source="places_lt", root=str(root), image_size=12, protocol="released", options=opts)
    streamed, in_ram = prepare(cfg, tmp_path / "a"), prepare(replace(cfg, options={}), tmp_path / "b")
    assert (tmp_path / "decoded" / "places_lt-val-12.npy").is_file()
    a, b = (json.loads((tmp_path / d / "dataset.json").read_text())["content_hashes"] for d in "ab")
    assert a == b and len(streamed.val) == len(in_ram.val) == 2  # the same bytes either way
