"""A-GCL (LPT, ICLR 2023) and the other long-tail losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lpt_core.losses import LOSSES, AGCLLoss, build_loss, noise_strength


def test_beta_from_counts_head_zero_rarest_one():
    beta = noise_strength(torch.tensor([500.0, 50.0, 5.0]))
    torch.testing.assert_close(beta, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(noise_strength(torch.tensor([7.0, 7.0, 7.0])), torch.zeros(3))


def test_counts_must_be_positive():
    with pytest.raises(ValueError, match="classes \\[1\\] have counts \\[0.0\\]"):
        AGCLLoss([3, 0, 2])


def test_noise_off_is_deterministic_and_equals_hand_computation():
    loss = AGCLLoss([100, 10, 1], gamma_pos=0.0, gamma_neg=0.0, noise_mul=0.0, margin=0.1, scale=20.0, label_smoothing=0.1)
    logits = torch.tensor([[0.5, 0.2, -0.3], [0.1, 0.4, 0.0]])
    targets = torch.tensor([0, 2])
    a, b = loss(logits, targets), loss(logits, targets)
    assert torch.equal(a, b)
    # gammas 0: plain label-smoothed CE on 20 * (c - 0.1 * onehot)
    z = 20 * (logits - 0.1 * F.one_hot(targets, 3))
    torch.testing.assert_close(a, F.cross_entropy(z, targets, label_smoothing=0.1))


def test_label_smoothing_value_on_hand_example():
    # Two classes, equal logits after the margin is undone: p = (1/2, 1/2), weights 1.
    loss = AGCLLoss([1, 1], gamma_pos=0.0, gamma_neg=0.0, margin=0.0, noise_mul=0.0, label_smoothing=0.1)
    value = loss(torch.zeros(1, 2), torch.tensor([0]))
    # targets (0.9 + 0.05, 0.05): -(0.95 + 0.05) * log(1/2)
    assert value.item() == pytest.approx(math.log(2), abs=1e-6)
    loss3 = AGCLLoss([1, 1, 1], gamma_pos=0.0, gamma_neg=1.0, margin=0.0, noise_mul=0.0, label_smoothing=0.1)
    # p = 1/3 each; target weight 1, non-target weight p = 1/3
    expected = -((0.9 + 0.1 / 3) * 1 + 2 * (0.1 / 3) * (1 / 3)) * math.log(1 / 3)
    assert loss3(torch.zeros(1, 3), torch.tensor([1])).item() == pytest.approx(expected, abs=1e-6)


def test_asymmetric_focusing_weights_are_not_detached():
    loss = AGCLLoss([1, 1, 1], gamma_pos=0.5, gamma_neg=4.0, margin=0.0, noise_mul=0.0, label_smoothing=0.0)
    logits = torch.tensor([[0.3, 0.1, -0.2]], requires_grad=True)
    loss(logits, torch.tensor([0])).backward()
    p = torch.softmax(20 * logits.detach(), dim=1)
    # hand gradient of -(1-p0)^0.5 log p0 w.r.t. z, chained by scale 20
    z = (20 * logits.detach()).requires_grad_(True)
    q = torch.softmax(z, 1)
    (-(1 - q[0, 0]) ** 0.5 * torch.log(q[0, 0])).backward()
    torch.testing.assert_close(logits.grad, 20 * z.grad)
    assert p[0, 0] < 1


def test_noise_uses_the_given_generator_and_only_lowers_rare_logits():
    counts = [1000, 100, 10]
    logits = torch.full((64, 3), 0.5)
    targets = torch.zeros(64, dtype=torch.long)
    l1 = AGCLLoss(counts, margin=0.0, generator=torch.Generator().manual_seed(5))
    l2 = AGCLLoss(counts, margin=0.0, generator=torch.Generator().manual_seed(5))
    z1, z2 = l1.clouded_logits(logits, targets), l2.clouded_logits(logits, targets)
    assert torch.equal(z1, z2)
    assert torch.equal(z1[:, 0], torch.full((64,), 10.0))  # head class: beta 0, no noise
    drop = 10.0 - z1[:, 2]
    assert (drop >= 0).all() and (drop > 0).any() and drop.max() <= 20 * 0.5 * 1.0 + 1e-5
    assert not torch.equal(l1(logits, targets), l1(logits, targets))  # the generator advances


def test_no_nan_at_saturation_with_gamma_pos_half():
    loss = AGCLLoss([100, 10, 1], gamma_pos=0.5, gamma_neg=8.0, noise_mul=0.0)
    logits = torch.tensor([[1.0, -1.0, -1.0]], requires_grad=True)
    value = loss(logits, torch.tensor([0]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    assert torch.softmax(20 * (logits.detach() - torch.tensor([0.1, 0, 0])), 1)[0, 0] == 1.0  # saturated


def test_registry_error_lists_names_and_build_loss():
    with pytest.raises(KeyError, match="agcl, balanced_softmax, cross_entropy, logit_adjusted"):
        build_loss("focal", [3, 2])
    assert isinstance(build_loss("agcl", [3, 2], gamma_pos=0.5), AGCLLoss)
    assert LOSSES.names() == ["agcl", "balanced_softmax", "cross_entropy", "logit_adjusted"]


def test_prior_shift_losses_by_hand():
    counts = torch.tensor([8.0, 2.0])
    logits = torch.tensor([[0.1, 0.2]])
    y = torch.tensor([1])
    ce = build_loss("cross_entropy", counts, scale=10.0)(logits, y)
    torch.testing.assert_close(ce, F.cross_entropy(10 * logits, y))
    la = build_loss("logit_adjusted", counts, scale=10.0)(logits, y)
    torch.testing.assert_close(la, F.cross_entropy(10 * logits + torch.log(counts / 10), y))
    bs = build_loss("balanced_softmax", counts, scale=10.0)(logits, y)
    torch.testing.assert_close(bs, F.cross_entropy(10 * logits + torch.log(counts), y))


def test_counts_are_a_buffer_and_bad_shapes_raise():
    loss = AGCLLoss([3, 2, 1])
    assert "class_counts" in dict(loss.named_buffers())
    with pytest.raises(ValueError, match="logits must be \\(B, 3\\)"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize("name", ["agcl", "cross_entropy", "logit_adjusted", "balanced_softmax"])
def test_tensor_counts_and_low_precision_logits(name):
    loss = build_loss(name, torch.tensor([9, 3, 1]), **({"noise_mul": 0.0} if name == "agcl" else {}))
    logits = torch.tensor([[0.2, -0.1, 0.4]], dtype=torch.bfloat16)
    value = loss(logits, torch.tensor([2]))
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(logits.float(), torch.tensor([2])))
