"""Long-tailed construction: the exponential profile, seeded selection and the validation hold-out."""

from __future__ import annotations

import numpy as np
import pytest

from lpt_core.data.longtail import (
    cap_per_class,
    holdout_sizes,
    holdout_split,
    longtail_counts,
    make_longtail,
    select_classes,
)


@pytest.mark.parametrize(("rho", "total"), [(100, 10847), (50, 12608), (10, 19573)])
def test_cifar100_lt_sizes(rho: int, total: int) -> None:
    counts = longtail_counts(500, 100, rho)
    assert sum(counts) == total and counts[0] == 500 and counts[-1] == 500 // rho


def test_quickstart_profile_and_bad_arguments() -> None:
    assert longtail_counts(500, 5, 100) == [500, 158, 50, 15, 5]
    assert longtail_counts(7, 1, 100) == [7]
    with pytest.raises(ValueError, match="rho"):
        longtail_counts(500, 5, 0.5)


def test_make_longtail_counts_seeding_and_shortage() -> None:
    labels = np.repeat(np.arange(4), 30)
    idx = make_longtail(labels, [30, 10, 3, 1], seed=0)
    assert np.bincount(labels[idx]).tolist() == [30, 10, 3, 1]
    assert np.array_equal(idx, make_longtail(labels, [30, 10, 3, 1], seed=0))
    assert not np.array_equal(idx, make_longtail(labels, [30, 10, 3, 1], seed=1))
    with pytest.raises(ValueError, match="class 0 needs 31"):
        make_longtail(labels, [31, 1, 1, 1], seed=0)


def test_holdout_rule_never_empties_a_class() -> None:
    assert holdout_sizes([500, 158, 50, 15, 5, 1], 0.1) == [50, 15, 5, 1, 0, 0]
    assert holdout_sizes([10, 3, 2, 1], 5) == [5, 2, 1, 0]
    assert holdout_sizes([4], 0.9) == [3]
    with pytest.raises(ValueError, match="fraction"):
        holdout_sizes([4], 1.0)


def test_holdout_split_partitions_per_class() -> None:
    labels = np.repeat(np.arange(3), [20, 4, 1])
    chosen = np.arange(len(labels))
    tr, va = holdout_split(chosen, labels, 0.25, seed=0)
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).tolist() == chosen.tolist()
    assert np.bincount(labels[va], minlength=3).tolist() == [5, 1, 0]
    assert np.bincount(labels[tr], minlength=3).tolist() == [15, 3, 1]


def test_select_classes_relabels_in_given_order_and_caps() -> None:
    labels = np.array([0, 1, 2, 3, 3, 1])
    rows, new, names = select_classes(labels, ["a", "b", "c", "d"], ["d", "b"])
    assert rows.tolist() == [1, 3, 4, 5] and new.tolist() == [1, 0, 0, 1] and names == ["d", "b"]
    with pytest.raises(ValueError, match="'z'"):
        select_classes(labels, ["a", "b", "c", "d"], ["z"])
    kept = cap_per_class(np.repeat(np.arange(2), [5, 2]), 3, seed=0)
    assert np.bincount(np.repeat(np.arange(2), [5, 2])[kept]).tolist() == [3, 2]
