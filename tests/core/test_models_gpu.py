"""The model core on a CUDA device: reuse == naive, bf16 autocast training step, A-GCL noise on
device, artifact load onto the device (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from lpt_core.artifacts import load_artifact, save_artifact
from lpt_core.losses import AGCLLoss
from lpt_core.models import backbone_fingerprint, build_classifier

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def test_reuse_equals_naive_on_cuda(tiny_backbone, tiny_method_cfg, tiny_images):
    model = build_classifier("lpt", tiny_backbone.to(CUDA), 5, tiny_method_cfg, seed=0).eval()
    model.set_phase("phase2")
    x = tiny_images.to(CUDA)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_naive(x), rtol=0, atol=1e-6)


def test_bf16_phase2_step_keeps_backbone_frozen(tiny_backbone, tiny_method_cfg, tiny_images):
    model = build_classifier("lpt", tiny_backbone.to(CUDA), 5, tiny_method_cfg, seed=0).train()
    model.set_phase("phase2")
    before = backbone_fingerprint(model.backbone)
    gen = torch.Generator(device=CUDA).manual_seed(0)
    loss_fn = AGCLLoss(torch.tensor([50, 10, 5, 2, 1], device=CUDA), 0.5, 8.0, generator=gen).to(CUDA)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model.forward_train(tiny_images.to(CUDA))
        loss = loss_fn(out.logits, torch.tensor([0, 1, 2, 4], device=CUDA)) + out.match_loss.float()
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    assert model.group_pool.keys.grad is not None
    assert backbone_fingerprint(model.backbone) == before


def test_artifact_loads_onto_cuda(tmp_path, tiny_backbone, tiny_method_cfg, tiny_images):
    model = build_classifier("lpt", tiny_backbone, 5, tiny_method_cfg, seed=0).eval()
    model.set_phase("phase2")
    art = save_artifact(tmp_path / "a", model, {"class_counts": [5, 4, 3, 2, 1]})
    loaded, _ = load_artifact(art, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(loaded(tiny_images.to(CUDA)).cpu(), model(tiny_images), rtol=1e-4, atol=1e-5)
