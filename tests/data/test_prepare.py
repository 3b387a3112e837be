"""The prepare stage: CIFAR-100-LT sizes from a fake CIFAR-100, the quickstart sets, the config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lpt_core.config import from_mapping
from lpt_core.data.prepare import PrepareConfig, build_prepared, prepare
from lpt_core.data.sources import FASHION_MNIST_ROOT, load_source
from lpt_core.data.store import ArraySplit, load_prepared, save_prepared


def test_cifar100_lt_r100_through_prepare(fake_cifar100_full: Path, tmp_path: Path) -> None:
    cfg = PrepareConfig(source="cifar100", root=str(fake_cifar100_full), n_max=500, rho=100, seed=0)
    data = prepare(cfg, tmp_path / "c100lt")
    assert len(data.train) + len(data.val) == 10847
    assert data.meta["profile"]["counts_before_holdout"][0] == 500
    assert len(data.test) == 300  # the balanced test split, untouched
    back = load_prepared(tmp_path / "c100lt")
    assert back.class_counts.tolist() == data.class_counts.tolist() and back.meta["name"] == "cifar100-lt-r100"
    assert np.array_equal(np.asarray(back.train.images[:5]), data.train.images[:5])
    assert (data.class_counts >= 1).all() and np.bincount(data.val.labels, minlength=100)[-1] == 0


@pytest.fixture(scope="module")
def cifar100_raw(fake_cifar100_full: Path):
    return load_source("cifar100", fake_cifar100_full)


@pytest.mark.parametrize(("rho", "total"), [(50, 12608), (10, 19573)])
def test_cifar100_lt_other_ratios(cifar100_raw, rho: int, total: int) -> None:
    raw = cifar100_raw
    data = build_prepared(raw, PrepareConfig(source="cifar100", n_max=500, rho=rho, val_fraction=0.0))
    assert len(data.train) == total and len(data.val) == 0


def test_quickstart_novel_and_base_sets(dh) -> None:
    raw = dh.synthetic_raw(num_classes=10, train_per_class=500, test_per_class=20, size=8)
    novel = ("c3", "c4", "c6", "c7", "c9")
    data = build_prepared(raw, PrepareConfig(source="s", classes=novel, n_max=500, rho=100, test_per_class=10))
    assert data.meta["profile"]["counts_before_holdout"] == [500, 158, 50, 15, 5]
    assert data.class_counts.tolist() == [450, 143, 45, 14, 5] and data.class_names == list(novel)
    assert np.bincount(data.test.labels).tolist() == [10] * 5
    assert set(data.test.source_index.tolist()) <= set(np.flatnonzero(np.isin(raw.test.labels, [3, 4, 6, 7, 9])))
    base = build_prepared(raw, PrepareConfig(source="s", classes=("c0", "c1", "c2", "c5", "c8"), val_per_class=20))
    assert base.class_counts.tolist() == [480] * 5 and base.meta["profile"]["kind"] == "all"


def test_seeded_and_resized(dh) -> None:
    raw = dh.synthetic_raw()
    a = build_prepared(raw, PrepareConfig(source="s", n_max=40, rho=10, seed=1, image_size=24))
    b = build_prepared(raw, PrepareConfig(source="s", n_max=40, rho=10, seed=1, image_size=24))
    c = build_prepared(raw, PrepareConfig(source="s", n_max=40, rho=10, seed=2, image_size=24))
    assert a.train.images.shape[1:] == (24, 24, 3)
    assert a.train.ids.tolist() == b.train.ids.tolist() != c.train.ids.tolist()


def test_train_images_duplicated_in_test_are_excluded(dh) -> None:
    raw = dh.synthetic_raw()
    leaked = raw.train.images.copy()
    leaked[0] = raw.test.images[0]
    raw = type(raw)(ArraySplit(leaked, raw.train.labels, None, raw.train.source_index), raw.test, raw.class_names)
    data = build_prepared(raw, PrepareConfig(source="s", rho=None, val_fraction=0.0))
    assert data.meta["profile"]["excluded_test_duplicates"] == 1 and 0 not in data.train.source_index


def test_config_from_params_mapping() -> None:
    cfg = from_mapping(PrepareConfig, {"source": "fashion_mnist", "classes": ["Dress", "Coat"], "rho": 100,
                                       "n_max": 500, "options": {"lists_dir": "x"}})
    assert cfg.classes == ("Dress", "Coat") and cfg.holdout == 0.1
    with pytest.raises(ValueError, match="rhoo"):
        from_mapping(PrepareConfig, {"source": "x", "rhoo": 3})
    with pytest.raises(ValueError, match="rho must be >= 1"):
        PrepareConfig(source="x", rho=0.5)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist_quickstart_builds_and_validates(tmp_path: Path) -> None:
    from lpt_core.validation import validate_prepared

    cfg = PrepareConfig(source="fashion_mnist", classes=("Dress", "Coat", "Shirt", "Sneaker", "Ankle boot"),
                        n_max=500, rho=100, test_per_class=100, image_size=32)
    data = prepare(cfg, tmp_path / "fm")
    assert data.meta["profile"]["counts_before_holdout"] == [500, 158, 50, 15, 5]
    assert validate_prepared(load_prepared(tmp_path / "fm"), tmp_path / "val").success


def test_empty_validation_split_saves_and_loads(dh, tmp_path: Path) -> None:
    data = build_prepared(dh.synthetic_raw(), PrepareConfig(source="s", n_max=20, rho=5, val_fraction=0.0))
    back = load_prepared(save_prepared(tmp_path / "p", data))
    assert len(back.val) == 0 and back.class_counts.tolist() == data.class_counts.tolist() == [20, 13, 8, 5, 4]
