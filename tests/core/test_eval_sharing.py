"""Backbone sharing for evaluation: a pinned fingerprint is trusted only while the weights are
untouched, the pool builds once per key, an EvalWorker gives evaluate_artifact's result for
every pair, and the device data path (staging, pinned chunks, compiled forward) matches the
plain one (the CUDA cases skip without a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lpt_core.artifacts import save_artifact
from lpt_core.backbone_pool import BackbonePool, backbone_key
from lpt_core.evaluate import EvalConfig, evaluate_artifact, predict_outputs
from lpt_core.fastpath import device_chunks, pad_to, stage_images
from lpt_core.models import build_classifier
from lpt_core.models.backbone import backbone_fingerprint, known_fingerprint, pin_fingerprint

COUNTS = [20, 10, 6, 3, 1]


def _artifact(root: Path, name: str, method: str, backbone: torch.nn.Module, cfg, seed: int) -> Path:
    model = build_classifier(method, backbone, len(COUNTS), cfg, seed=seed)
    model.set_phase(model.phases[-1])
    return save_artifact(root / name, model.eval(), {"class_names": list("abcde"), "class_counts": COUNTS})


def _batch(root: Path, n: int = 12, seed: int = 0) -> Path:
    from lpt_core.validation import batch_content_hash

    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 5, n).astype(np.int64)
    d = root / f"batch{seed}"
    d.mkdir()
    np.save(d / "images.npy", x)
    np.save(d / "labels.npy", y)
    meta = {"schema": "lpt-shift-batch/1", "id": d.name, "kind": "generated", "source": "t", "dataset": "t",
            "corruption": "fog", "severity": 1, "size": n, "content_hash": batch_content_hash(x, y),
            "created_at": "2026-12-01T00:00:00+00:00", "validation": {"success": True, "result_path": ""}}
    (d / "batch.json").write_text(json.dumps(meta))
    return d


def test_a_pinned_fingerprint_is_trusted_only_while_the_weights_are_untouched(tiny_backbone) -> None:
    digest = pin_fingerprint(tiny_backbone)
    assert known_fingerprint(tiny_backbone) == digest == backbone_fingerprint(tiny_backbone)
    with torch.no_grad():
        tiny_backbone.blocks[0].attn.qkv.weight.add_(1.0)  # an in-place write bumps the version counter
    assert known_fingerprint(tiny_backbone) == backbone_fingerprint(tiny_backbone) != digest


def test_the_pool_builds_each_backbone_once_and_lends_full_ft_only_a_held_one(tmp_path, tiny_backbone,
                                                                              tiny_method_cfg) -> None:
    lpt = _artifact(tmp_path, "lpt", "lpt", tiny_backbone, tiny_method_cfg, 0)
    meta = json.loads((lpt / "meta.json").read_text())
    pool = BackbonePool("cpu")
    ft_meta = dict(meta, method="full_ft")
    assert pool.lend(ft_meta) is None, "full fine-tuning never causes a build"
    first = pool.lend(meta)
    assert pool.lend(meta) is first and pool.lend(ft_meta) is first
    assert (pool.builds, pool.fingerprints) == (1, 1)
    assert backbone_key(meta) != backbone_key(meta, "/other/weights.safetensors")
    assert backbone_key(meta) != backbone_key(dict(meta, layernorm_eps=1e-5)), "eps changes the shared backbone"


def test_the_worker_gives_each_pair_the_result_of_evaluating_it_alone(tmp_path, tiny_backbone,
                                                                      tiny_method_cfg) -> None:
    from lpt_core.data.batches import load_batch
    from lpt_core.eval_worker import EvalWorker

    arts = [_artifact(tmp_path, f"{m}{i}", m, tiny_backbone, tiny_method_cfg, i)
            for i, m in enumerate(("lpt", "lpt", "vpt", "full_ft"))]
    batches = [_batch(tmp_path, seed=j) for j in range(2)]
    cfg = EvalConfig(device="cpu", batch_size=5)
    worker = EvalWorker(cfg)
    for b in batches:
        for a in arts:
            got = worker.evaluate(a, b, next_batch=batches[-1]).to_dict(with_run=False)
            sb = load_batch(b)
            alone = evaluate_artifact(a, sb.images, sb.labels, cfg, shift_meta=sb.meta).to_dict(with_run=False)
            assert got == alone
    stats = worker.stats
    assert (stats.pairs, stats.backbone_builds, stats.artifact_loads, stats.batch_reads) == (8, 1, 4, 2)
    worker.close()


def test_device_chunks_on_cpu_are_the_array_in_order() -> None:
    x = np.arange(7 * 2 * 2 * 3, dtype=np.uint8).reshape(7, 2, 2, 3)
    assert stage_images(x, "cpu") is x
    chunks = list(device_chunks(x, 3, "cpu"))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert np.array_equal(torch.cat(chunks).numpy(), x)
    assert pad_to(torch.ones(2, 3), 4).tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]]


@pytest.mark.gpu
def test_staged_and_pinned_paths_equal_the_host_path_on_cuda(tiny_backbone, tiny_method_cfg) -> None:
    from lpt_core.fastpath import enable_compile

    model = build_classifier("lpt", tiny_backbone.to("cuda"), 5, tiny_method_cfg, seed=0).eval()
    model.set_phase("phase2")
    x = np.random.default_rng(0).integers(0, 256, (37, 32, 32, 3), dtype=np.uint8)
    staged = stage_images(x, "cuda")
    assert staged.device_tensor is not None and torch.equal(staged.device_tensor.cpu(), torch.from_numpy(x))
    ref = predict_outputs(model, x, batch_size=8, device="cuda", amp="off")
    for images in (staged, x):
        out = predict_outputs(model, images, batch_size=8, device="cuda", amp="off")
        np.testing.assert_array_equal(out.logits, ref.logits)
    enable_compile(model)
    compiled = predict_outputs(model, staged, batch_size=8, device="cuda", amp="off")
    np.testing.assert_allclose(compiled.logits, ref.logits, atol=1e-4)
