"""Training loop: resume exactness, determinism, frozen parts, schedule, selection, config errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from lpt_core.evaluate import predict
from lpt_core.models import MethodConfig, PromptConfig, build_classifier, create_backbone
from lpt_core.train import CHECKPOINT, TrainConfig, fit, load_checkpoint

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)


CFG = TrainConfig(epochs=2, batch_size=16, lr_per_256=0.5, max_steps_per_epoch=3, eval_batch_size=64, progress=False)


def _model(method: str = "lpt", dropout: float = 0.1):
    backbone = create_backbone("vit_tiny_patch16_224", pretrained=False, seed=0, **TINY)
    cfg = MethodConfig(prompt=PromptConfig(prompt_length=3, pool_size=5, top_k=2, group_start=2), head_dropout=dropout)
    return build_classifier(method, backbone, 6, cfg, seed=0)


def _trainable(model) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in model.trainable_names()}


def test_resume_after_kill_is_exact(tiny_prepared, tmp_path) -> None:
    straight = _model()
    res = fit(straight, tiny_prepared, CFG, tmp_path / "a", phase="phase1")

    class Killed(Exception):
        pass

    def kill(epoch: int, record: dict) -> None:
        if epoch == 0:
            raise Killed

    with pytest.raises(Killed):
        fit(_model(), tiny_prepared, CFG, tmp_path / "b", phase="phase1", on_epoch_end=kill)
    (folder,) = (tmp_path / "b").glob("phase1-*")
    assert load_checkpoint(folder / CHECKPOINT)["epoch"] == 1
    assert res.checkpoint.parent.name == folder.name  # same run, same key, wherever it lives
    resumed = _model()
    res_b = fit(resumed, tiny_prepared, CFG, tmp_path / "b", phase="phase1")
    a, b = _trainable(straight), _trainable(resumed)
    assert a.keys() == b.keys() == {"shared_prompt.tokens", "head.weight"}
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert [r["loss"] for r in res.history] == [r["loss"] for r in res_b.history]


def test_deterministic_per_seed(tiny_prepared, tmp_path) -> None:
    cfg = dataclasses.replace(CFG, epochs=1, select="last", val_every=0)
    runs = []
    for i, seed in enumerate((0, 0, 1)):
        m = _model()
        fit(m, tiny_prepared, dataclasses.replace(cfg, seed=seed), tmp_path / str(i), phase="phase1")
        runs.append(_trainable(m)["shared_prompt.tokens"])
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_frozen_parts_stay_frozen_and_in_eval(tiny_prepared, tmp_path) -> None:
    model = _model()
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    cfg = dataclasses.replace(CFG, epochs=1, select="last", val_every=0)
    fit(model, tiny_prepared, cfg, tmp_path / "p1", phase="phase1")
    shared_after_p1 = model.shared_prompt.tokens.detach().clone()
    modes = []
    block = model.backbone.blocks[0]  # prompted blocks run through their sub-modules: hook the MLP
    hook = block.mlp.register_forward_hook(lambda m, i, o: modes.append((block.training or m.training, model.training)))
    res = fit(model, tiny_prepared, cfg, tmp_path / "p2", phase="phase2")
    hook.remove()
    assert modes and all(not block_mode and model_mode for block_mode, model_mode in modes)
    assert torch.equal(model.shared_prompt.tokens, shared_after_p1)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, backbone_before[k]), k
    assert set(model.trainable_names()) == {"group_pool.prompts", "group_pool.keys", "head.weight"}
    assert res.history[0]["loss"] > 0


def test_schedule_warmup_then_cosine_and_val_selection(tiny_prepared, tmp_path) -> None:
    cfg = dataclasses.replace(CFG, epochs=3)
    res = fit(_model(), tiny_prepared, cfg, tmp_path, phase="phase1")
    lrs = [r["lr"] for r in res.history]
    base = cfg.lr_per_256 * cfg.batch_size / 256
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[1] == pytest.approx(0.5 * base * (1 + torch.cos(torch.tensor(torch.pi / 3)).item()))
    assert lrs[2] < lrs[1]
    vals = [r["val_balanced_top1"] for r in res.history]
    assert res.best_val_balanced_top1 == max(vals) and res.best_epoch == vals.index(max(vals)) + 1
    assert all(r["images_per_second"] > 0 for r in res.history)


def test_selection_scores_the_mean_per_class_recall_not_the_head_heavy_top1(tiny_prepared, tmp_path) -> None:
    """The held-out split is long-tailed like training; the test split is balanced. So the
    selection score is the mean recall over the classes present in val, here recomputed by hand."""
    labels = np.asarray(tiny_prepared.val.labels)
    head = np.flatnonzero(labels == labels[0])
    tail = [np.flatnonzero(labels == c)[0] for c in np.unique(labels) if c != labels[0]]
    val = tiny_prepared.val.subset(np.concatenate([np.tile(head, 6), tail]))  # head-heavy, like the real hold-out
    data = dataclasses.replace(tiny_prepared, val=val)
    model = _model()
    res = fit(model, data, dataclasses.replace(CFG, epochs=1), tmp_path, phase="phase1")
    pred = predict(model, val.images, batch_size=64, device="cpu").argmax(1)
    labels = np.asarray(val.labels)
    recalls = [float((pred[labels == c] == c).mean()) for c in np.unique(labels)]
    assert res.history[0]["val_top1"] == pytest.approx(float((pred == labels).mean()))
    assert res.history[0]["val_balanced_top1"] == pytest.approx(float(np.mean(recalls)))
    assert res.best_val_balanced_top1 == res.history[0]["val_balanced_top1"]
    assert res.history[0]["val_top1"] != pytest.approx(res.history[0]["val_balanced_top1"])  # the two differ here


def test_a_changed_recipe_starts_fresh_and_says_so(tiny_prepared, tmp_path, caplog) -> None:
    """Resume is keyed by the run: another config never continues this checkpoint (the old
    layout refused it, which broke `dvc repro` after a parameter edit)."""
    cfg = dataclasses.replace(CFG, epochs=1, select="last", val_every=0)
    first = fit(_model(), tiny_prepared, cfg, tmp_path, phase="phase1")
    changed = dataclasses.replace(cfg, lr_per_256=0.1)
    with caplog.at_level("INFO"):
        second = fit(_model(), tiny_prepared, changed, tmp_path, phase="phase1")
    assert first.checkpoint.parent != second.checkpoint.parent
    assert not first.checkpoint.parent.exists() and second.checkpoint.is_file()
    assert "belongs to another run" in caplog.text and "training from scratch" in caplog.text
    fresh = _model()
    fit(fresh, tiny_prepared, changed, tmp_path / "elsewhere", phase="phase1")
    again = _model()
    with caplog.at_level("INFO"):
        caplog.clear()
        fit(again, tiny_prepared, changed, tmp_path, phase="phase1")  # finished: reloaded, not retrained
    assert "resuming phase1 from epoch 1 of 1" in caplog.text
    assert torch.equal(_trainable(fresh)["shared_prompt.tokens"], _trainable(again)["shared_prompt.tokens"])


def test_run_key_follows_the_inputs(tiny_prepared) -> None:
    from lpt_core.checkpoints import run_identity, run_key

    def key(model, cfg=CFG, data=tiny_prepared):
        return run_key(model, run_identity(model, data, dataclasses.asdict(cfg), "phase1", 1))

    base = key(_model())
    assert key(_model()) == base
    assert key(_model(dropout=0.2)) != base  # method config
    assert key(_model(), cfg=dataclasses.replace(CFG, epochs=3)) != base
    other = _model()
    with torch.no_grad():
        other.head.weight.add_(1e-3)  # another starting point (e.g. another phase-1 result)
    assert key(other) != base
    from tiny_data import make_tiny_prepared

    assert key(_model(), data=make_tiny_prepared(seed=1)) != base


def test_step_schedule_ramps_within_the_warmup_epoch(tiny_prepared, tmp_path) -> None:
    cfg = dataclasses.replace(CFG, epochs=2, schedule="step", select="last", val_every=0)
    model = _model()
    from lpt_core import train as T

    lrs = []
    original = T._Trainer.step

    def spy(self, batches, weights):
        lrs.append(self.optimizer.param_groups[0]["lr"])
        return original(self, batches, weights)

    T._Trainer.step = spy
    try:
        fit(model, tiny_prepared, cfg, tmp_path, phase="phase1")
    finally:
        T._Trainer.step = original
    peak = cfg.lr_per_256 * cfg.batch_size / 256
    assert len(lrs) == 6 and lrs[0] == pytest.approx(1e-6)
    assert lrs[0] < lrs[1] < lrs[2] < peak  # ramping inside epoch 1, not 1e-6 for the whole epoch
    # then timm's cosine over all 6 steps (warm-up inside the period, as per epoch): step 3 of 6
    assert lrs[3] == pytest.approx(0.5 * peak * (1 + math.cos(math.pi * 3 / 6))) and lrs[3] > lrs[4] > lrs[5]


def test_instance_sampling_with_cross_entropy(tiny_prepared, tmp_path) -> None:
    cfg = dataclasses.replace(CFG, epochs=1, sampling="instance", loss="cross_entropy", select="last", val_every=0)
    model = _model("linear")
    before = model.head.weight.detach().clone()
    fit(model, tiny_prepared, cfg, tmp_path, phase="train", device="cpu")
    assert not torch.equal(before, model.head.weight)
    assert cfg.stream_loss_kwargs("ib") == {}


@pytest.mark.parametrize(
    "change, match",
    [
        ({"sampling": "balanced"}, "sampling"),
        ({"amp": "fp16"}, "amp"),
        ({"select": "test"}, "select"),
        ({"epochs": 0}, "epochs"),
        ({"select": "val", "val_every": 0}, "val_every"),
        ({"schedule": "iteration"}, "schedule"),
        ({"lr_per_256": 0.0}, "lr_per_256"),
    ],
)
def test_config_errors_name_the_value(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**change)


def test_agcl_stream_defaults() -> None:
    cfg = TrainConfig(loss_kwargs={"noise_mul": 0.0})
    assert cfg.stream_loss_kwargs("cb") == {"noise_mul": 0.0, "gamma_pos": 0.0, "gamma_neg": 4.0}
    assert cfg.stream_loss_kwargs("ib") == {"noise_mul": 0.0, "gamma_pos": 0.5, "gamma_neg": 8.0}
