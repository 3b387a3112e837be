"""CUDA checks of the training part (skipped without a GPU): device transforms, bf16 training
with exact resume, evaluation parity with CPU, and a ViT-B/16 throughput measurement."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
import pytest
import torch

from lpt_core.data.samplers import DualSampler
from lpt_core.data.transforms import BatchPreprocessor
from lpt_core.evaluate import predict
from lpt_core.models import MethodConfig, PromptConfig, build_classifier, create_backbone
from lpt_core.train import TrainConfig, fit

pytestmark = pytest.mark.gpu
TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)
CFG = TrainConfig(epochs=2, batch_size=16, lr_per_256=0.5, max_steps_per_epoch=3, eval_batch_size=64, progress=False)


def _tiny(device: str):
    backbone = create_backbone("vit_tiny_patch16_224", pretrained=False, seed=0, **TINY)
    cfg = MethodConfig(prompt=PromptConfig(prompt_length=3, pool_size=5, top_k=2, group_start=2))
    return build_classifier("lpt", backbone, 6, cfg, seed=0).to(device)


def test_transforms_on_cuda_match_cpu() -> None:
    imgs = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    pre = BatchPreprocessor(224, (0.5,) * 3, (0.5,) * 3, True, torch.Generator().manual_seed(0))
    params = pre.sample(8, 32, 32)
    cpu = pre(torch.from_numpy(imgs), params)
    gpu = pre(torch.from_numpy(imgs).cuda(), params)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
    ev = BatchPreprocessor(224, (0.5,) * 3, (0.5,) * 3, False)
    torch.testing.assert_close(ev(torch.from_numpy(imgs).cuda()).cpu(), ev(torch.from_numpy(imgs)), atol=1e-4, rtol=0)


def test_cuda_bf16_fit_resumes_exactly(tiny_prepared, tmp_path) -> None:
    straight = _tiny("cuda")
    fit(straight, tiny_prepared, CFG, tmp_path / "a", phase="phase1", device="cuda")

    def kill(epoch: int, record: dict) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_tiny("cuda"), tiny_prepared, CFG, tmp_path / "b", phase="phase1", device="cuda", on_epoch_end=kill)
    resumed = _tiny("cuda")
    fit(resumed, tiny_prepared, CFG, tmp_path / "b", phase="phase1", device="cuda")
    for (n, a), b in zip(straight.stored_state_dict().items(), resumed.stored_state_dict().values()):
        assert torch.equal(a, b), n
    p2 = fit(straight, tiny_prepared, dataclasses.replace(CFG, epochs=1), tmp_path / "p2", phase="phase2",
             device="cuda")
    assert np.isfinite(p2.history[0]["loss"])


def test_evaluate_cuda_close_to_cpu(tiny_prepared) -> None:
    model = _tiny("cpu")
    model.set_phase("phase2")
    cpu = predict(model, tiny_prepared.test.images, batch_size=16, device="cpu")
    gpu = predict(model.cuda(), tiny_prepared.test.images, batch_size=16, device="cuda", amp="off")
    bf16 = predict(model, tiny_prepared.test.images, batch_size=16, device="cuda", amp="auto")
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
    np.testing.assert_allclose(bf16, cpu, atol=5e-2)


def test_vit_b16_lpt_throughput(tmp_path) -> None:
    """Measured (not asserted beyond sanity): LPT phase-2 training and inference images/s, bf16."""
    backbone = create_backbone("vit_base_patch16_224", pretrained=False, seed=0)
    model = build_classifier("lpt", backbone, 100, MethodConfig(), seed=0).cuda()
    model.set_phase("phase2")
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (2048, 32, 32, 3), dtype=np.uint8)
    labels = (np.arange(2048) % 100).astype(np.int64)
    from lpt_core.data.store import ArraySplit, PreparedDataset

    split = ArraySplit(imgs, labels)
    data = PreparedDataset(split, split.subset(np.arange(256)), split, [str(i) for i in range(100)])
    cfg = TrainConfig(epochs=1, batch_size=256, max_steps_per_epoch=6, select="last", val_every=0, progress=False)
    res = fit(model, data, cfg, tmp_path / "b16", device="cuda")
    torch.cuda.synchronize()
    predict(model, imgs[:256], batch_size=256, device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    predict(model, imgs, batch_size=256, device="cuda")
    torch.cuda.synchronize()
    infer = len(imgs) / (time.perf_counter() - t0)
    figures = {"train_images_per_second_incl_warmup": res.images_per_second, "train_seconds": res.seconds,
               "predict_images_per_second": infer, "gpu": torch.cuda.get_device_name()}
    print(json.dumps(figures))
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "train_gpu_figures.json"), "w") as fh:
            json.dump(figures, fh, indent=2)
    assert infer > 0 and np.isfinite(res.history[0]["loss"])
    assert DualSampler(labels, 256, 0).steps_per_epoch() == 9
