"""predict_outputs: logits identical to predict, LPT's selection from the same forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpt_core.data.transforms import BatchPreprocessor
from lpt_core.evaluate import predict, predict_outputs
from lpt_core.models import build_classifier


def _lpt(tiny_backbone, tiny_method_cfg, phase: str = "phase2"):
    model = build_classifier("lpt", tiny_backbone, 6, tiny_method_cfg, seed=0)
    model.set_phase(phase)
    return model


def test_predict_outputs_matches_predict_and_select(tiny_backbone, tiny_method_cfg, tiny_prepared) -> None:
    model = _lpt(tiny_backbone, tiny_method_cfg)
    images = tiny_prepared.test.images[:20]
    outputs = predict_outputs(model, images, batch_size=7)
    assert np.array_equal(outputs.logits, predict(model, images, batch_size=7))
    assert outputs.selected.shape == (20, 2) and outputs.selected.dtype == np.int64
    assert outputs.key_cosine.shape == (20, 2) and outputs.key_cosine.dtype == np.float32
    x = BatchPreprocessor.from_data_config(model.data_config(), train=False)(torch.from_numpy(images))
    expected = model.eval().select(x)
    np.testing.assert_array_equal(outputs.selected, expected.indices.numpy())
    np.testing.assert_allclose(outputs.key_cosine, expected.similarity.numpy(), atol=1e-5)
    assert (outputs.key_cosine[:, 0] >= outputs.key_cosine[:, 1]).all()  # best first


def test_forward_with_selection_is_forward(tiny_backbone, tiny_method_cfg, tiny_images) -> None:
    model = _lpt(tiny_backbone, tiny_method_cfg).eval()
    with torch.no_grad():
        logits, selection = model.forward_with_selection(tiny_images)
        assert torch.equal(logits, model(tiny_images))
    assert selection.indices.shape == (4, 2)
    phase1 = _lpt(tiny_backbone, tiny_method_cfg, "phase1").eval()
    with torch.no_grad():
        logits, none = phase1.forward_with_selection(tiny_images)
        assert none is None and torch.equal(logits, phase1(tiny_images))


@pytest.mark.parametrize("method", ["vpt", "linear", "full_ft", "lpt-phase1"])
def test_other_methods_have_no_selection(tiny_backbone, tiny_method_cfg, tiny_prepared, method: str) -> None:
    if method == "lpt-phase1":
        model = _lpt(tiny_backbone, tiny_method_cfg, "phase1")
    else:
        model = build_classifier(method, tiny_backbone, 6, tiny_method_cfg, seed=0)
    images = tiny_prepared.test.images[:5]
    outputs = predict_outputs(model, images, batch_size=4)
    assert outputs.selected is None and outputs.key_cosine is None and not outputs.has_selection
    assert np.array_equal(outputs.logits, predict(model, images, batch_size=4))


def test_predict_outputs_refuses_an_empty_batch(tiny_backbone, tiny_method_cfg, tiny_prepared) -> None:
    model = _lpt(tiny_backbone, tiny_method_cfg)
    with pytest.raises(ValueError, match="at least one image"):
        predict_outputs(model, tiny_prepared.test.images[:0])
    assert predict(model, tiny_prepared.test.images[:0]).shape == (0, 6)
