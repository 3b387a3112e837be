"""A tiny learnable long-tailed dataset (importable under a unique name, also by spawned ranks)."""

from __future__ import annotations


def make_tiny_prepared(seed: int = 0):
    """A learnable long-tailed toy set: 6 classes (train counts 40..3), val 5/class, test 8/class.

    Each class has its own colour plus noise, so a tiny ViT can fit it in a few steps.
    """
    import numpy as np

    from lpt_core.data.store import ArraySplit, PreparedDataset

    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (6, 3))

    def split(counts: list[int]) -> ArraySplit:
        labels = np.repeat(np.arange(6), counts).astype(np.int64)
        noise = rng.normal(0, 30, (len(labels), 32, 32, 3))
        images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        return ArraySplit(images, labels)

    return PreparedDataset(
        train=split([40, 24, 14, 8, 5, 3]), val=split([5] * 6), test=split([8] * 6),
        class_names=[f"c{i}" for i in range(6)], meta={"name": "tiny-lt", "seed": seed},
    )
