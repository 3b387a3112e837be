"""Samplers: class-aware block structure, uniform stream, seeding, resume and rank slices."""

from __future__ import annotations

import numpy as np
import pytest

from lpt_core.data.samplers import (
    SAMPLERS,
    ClassAwareSampler,
    DualSampler,
    InstanceSampler,
    build_sampler,
    shard,
    steps_per_epoch,
)


def _labels() -> np.ndarray:
    counts = [50, 20, 9, 5, 3, 1, 30, 12]
    return np.repeat(np.arange(len(counts)), counts)


def test_class_aware_blocks_of_four_from_one_class() -> None:
    labels = _labels()
    batch = ClassAwareSampler(labels, 32, np.random.default_rng(0)).next_batch()
    blocks = labels[batch].reshape(-1, 4)
    assert (blocks == blocks[:, :1]).all()
    # 8 classes, 8 blocks: every class exactly once in the first cycle, in a shuffled order
    assert sorted(blocks[:, 0].tolist()) == list(range(8))


def test_class_order_is_random_and_reshuffled() -> None:
    labels = _labels()
    s = ClassAwareSampler(labels, 32, np.random.default_rng(1))
    orders = [tuple(labels[s.next_batch()].reshape(-1, 4)[:, 0]) for _ in range(5)]
    assert len(set(orders)) > 1
    assert all(sorted(o) == list(range(8)) for o in orders)


def test_rare_class_images_cycle_without_repeat_within_a_pass() -> None:
    labels = _labels()  # class 2 has 9 images
    s = ClassAwareSampler(labels, 32, np.random.default_rng(2))
    drawn = np.concatenate([s.next_batch() for _ in range(3)])
    of_class = drawn[labels[drawn] == 2][:8]
    assert len(set(of_class.tolist())) == 8  # the first 8 draws come from one permutation


def test_block_may_straddle_batches() -> None:
    labels = _labels()
    s = ClassAwareSampler(labels, 6, np.random.default_rng(0))
    stream = np.concatenate([s.next_batch() for _ in range(4)])
    assert len(stream) == 24
    assert (labels[stream].reshape(-1, 4) == labels[stream].reshape(-1, 4)[:, :1]).all()


def test_seeded_reproducibility_and_difference() -> None:
    labels = _labels()
    a = DualSampler(labels, 16, seed=7)
    b = DualSampler(labels, 16, seed=7)
    c = DualSampler(labels, 16, seed=8)
    for _ in range(4):
        (acb, aib), (bcb, bib), _ = a.next_batch(), b.next_batch(), c.next_batch()
        assert np.array_equal(acb, bcb) and np.array_equal(aib, bib)
    assert not np.array_equal(a.next_batch()[0], c.next_batch()[0])


def test_instance_sampler_is_a_reshuffled_permutation() -> None:
    labels = _labels()
    s = InstanceSampler(labels, len(labels) // 2, np.random.default_rng(0))
    first = np.concatenate([s.next_batch(), s.next_batch()])
    assert sorted(first.tolist()) == list(range(len(labels)))
    assert not np.array_equal(first, np.arange(len(labels)))


def test_state_dict_resumes_the_same_stream() -> None:
    labels = _labels()
    a = DualSampler(labels, 12, seed=3)
    for _ in range(3):
        a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(4)]
    b = DualSampler(labels, 12, seed=999)
    b.load_state_dict(state)
    got = [b.next_batch() for _ in range(4)]
    for (e1, e2), (g1, g2) in zip(expected, got):
        assert np.array_equal(e1, g1) and np.array_equal(e2, g2)


def test_distributed_slices_rebuild_the_global_batch() -> None:
    batch = DualSampler(_labels(), 16, seed=0).next_batch()[0]
    parts = [shard(batch, r, 2) for r in range(2)]
    assert np.array_equal(np.concatenate(parts), batch)
    with pytest.raises(ValueError, match="split evenly"):
        shard(batch, 0, 3)


def test_steps_per_epoch_and_registry() -> None:
    assert steps_per_epoch(512, 256) == 3
    assert steps_per_epoch(100, 256) == 1
    assert SAMPLERS.names() == ["class_aware", "instance"]
    assert isinstance(build_sampler("instance", _labels(), 4, np.random.default_rng(0)), InstanceSampler)
    with pytest.raises(KeyError, match="class_aware"):
        build_sampler("balanced", _labels(), 4, np.random.default_rng(0))
