"""Training loop: resume exactness, determinism, frozen parts, schedule, selection, config errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lpt_core.models import MethodConfig, PromptConfig, build_classifier, create_backbone
from lpt_core.train import CHECKPOINT, TrainConfig, fit, load_checkpoint

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)


CFG = TrainConfig(epochs=2, batch_size=16, lr=0.5, max_steps_per_epoch=3, eval_batch_size=64, progress=False)


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
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT)["epoch"] == 1
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
    base = cfg.lr * cfg.batch_size / 256
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[1] == pytest.approx(0.5 * base * (1 + torch.cos(torch.tensor(torch.pi / 3)).item()))
    assert lrs[2] < lrs[1]
    vals = [r["val_top1"] for r in res.history]
    assert res.best_val_top1 == max(vals) and res.best_epoch == vals.index(max(vals)) + 1
    assert all(r["images_per_second"] > 0 for r in res.history)


def test_resume_with_other_config_refuses(tiny_prepared, tmp_path) -> None:
    cfg = dataclasses.replace(CFG, epochs=1, select="last", val_every=0)
    fit(_model(), tiny_prepared, cfg, tmp_path, phase="phase1")
    with pytest.raises(ValueError, match="resume=False"):
        fit(_model(), tiny_prepared, dataclasses.replace(cfg, lr=0.1), tmp_path, phase="phase1")
    fit(_model(), tiny_prepared, dataclasses.replace(cfg, lr=0.1), tmp_path, phase="phase1", resume=False)


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
    ],
)
def test_config_errors_name_the_value(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**change)


def test_agcl_stream_defaults() -> None:
    cfg = TrainConfig(loss_kwargs={"noise_mul": 0.0})
    assert cfg.stream_loss_kwargs("cb") == {"noise_mul": 0.0, "gamma_pos": 0.0, "gamma_neg": 4.0}
    assert cfg.stream_loss_kwargs("ib") == {"noise_mul": 0.0, "gamma_pos": 0.5, "gamma_neg": 8.0}
