"""Batched transforms: shapes, normalisation, seeded determinism, crop rule and eval crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lpt_core.data.transforms import BatchPreprocessor, eval_resize_size, sample_crop_boxes

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _images(n: int = 6, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_train_shape_dtype_and_range() -> None:
    pre = BatchPreprocessor(24, MEAN, STD, train=True, generator=torch.Generator().manual_seed(0))
    out = pre(_images())
    assert out.shape == (6, 3, 24, 24) and out.dtype == torch.float32
    assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5


def test_train_is_seeded() -> None:
    make = lambda s: BatchPreprocessor(16, MEAN, STD, True, torch.Generator().manual_seed(s))  # noqa: E731
    a, b, c = make(1)(_images()), make(1)(_images()), make(2)(_images())
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_boxes_follow_random_resized_crop_rule() -> None:
    boxes = sample_crop_boxes(2000, 32, 40, torch.Generator().manual_seed(0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= 40).all() and (boxes[:, 3] <= 32).all()
    area = w * h / (32 * 40)
    assert area.min() >= 0.05 and area.max() <= 1.0
    ratio = w / h
    assert ratio.min() > 0.6 and ratio.max() < 1.5
    assert len(torch.unique(boxes, dim=0)) > 1500


def test_full_box_no_flip_equals_bilinear_resize() -> None:
    pre = BatchPreprocessor(64, (0, 0, 0), (1, 1, 1), True, torch.Generator().manual_seed(0))
    imgs = _images(2)
    params = pre.sample(2, 32, 32)
    params = type(params)(torch.tensor([[0.0, 0, 32, 32]] * 2), torch.tensor([False, True]))
    out = pre(imgs, params)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    ref = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(out[0], ref[0], atol=1e-5)
    assert torch.allclose(out[1], ref[1].flip(-1), atol=1e-5)


def test_sliced_params_apply_to_a_rank_slice() -> None:
    pre = BatchPreprocessor(16, MEAN, STD, True, torch.Generator().manual_seed(3))
    imgs = _images(8)
    params = pre.sample(8, 32, 32)
    whole = pre(imgs, params)
    assert torch.equal(pre(imgs[4:], params[4:]), whole[4:])


def test_eval_resizes_then_centre_crops() -> None:
    assert eval_resize_size(224) == 256
    pre = BatchPreprocessor(224, (0, 0, 0), (1, 1, 1), train=False)
    imgs = _images(2)
    out = pre(imgs)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    ref = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)[:, :, 16:240, 16:240]
    assert out.shape == (2, 3, 224, 224)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.equal(pre(imgs), out)  # deterministic


def test_channels_last_and_data_config() -> None:
    cfg = {"input_size": (3, 16, 16), "mean": MEAN, "std": STD}
    pre = BatchPreprocessor.from_data_config(cfg, train=False)
    pre.channels_last = True
    out = pre(torch.from_numpy(_images(2)))
    assert out.shape == (2, 3, 16, 16) and out.is_contiguous(memory_format=torch.channels_last)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="Generator"):
        BatchPreprocessor(16, MEAN, STD, train=True)
    with pytest.raises(ValueError, match="uint8"):
        BatchPreprocessor(16, MEAN, STD, train=False)(np.zeros((2, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="std"):
        BatchPreprocessor(16, MEAN, (0.5, 0.0, 0.5), train=False)
