"""Two gloo processes on the same global batch train exactly like one process (within 1e-5)."""

from __future__ import annotations

import dataclasses
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from tiny_data import make_tiny_prepared

from lpt_core import distributed as D
from lpt_core.models import MethodConfig, PromptConfig, build_classifier, create_backbone
from lpt_core.train import TrainConfig, fit

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)
# noise_mul=0 and no head dropout: the loss is a deterministic function of the global batch.
CFG = TrainConfig(
    epochs=1, batch_size=16, lr_per_256=0.5, max_steps_per_epoch=3, select="last", val_every=0,
    loss_kwargs={"noise_mul": 0.0}, progress=False,
)


def _trained(phase_cfgs, out_dir: str, ctx: D.DistContext | None) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    backbone = create_backbone("vit_tiny_patch16_224", pretrained=False, seed=0, **TINY)
    mcfg = MethodConfig(prompt=PromptConfig(prompt_length=3, pool_size=5, top_k=2, group_start=2), head_dropout=0.0)
    model = build_classifier("lpt", backbone, 6, mcfg, seed=0)
    data = make_tiny_prepared()
    for phase, cfg in phase_cfgs:
        fit(model, data, cfg, os.path.join(out_dir, phase), phase=phase, dist=ctx)
    return {k: v.detach().clone() for k, v in model.stored_state_dict().items()}


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    ctx = D.init_from_env("cpu")
    try:
        state = _trained(_phases(), os.path.join(out_dir, "dist"), ctx)
        gathered = D.all_gather_rows(torch.arange(rank * 3 + 1, dtype=torch.float32).unsqueeze(1), ctx)
        if ctx.is_main:
            torch.save({"state": state, "gathered": gathered}, os.path.join(out_dir, "dist.pt"))
    finally:
        D.shutdown()


def _phases():
    return [("phase1", CFG), ("phase2", dataclasses.replace(CFG, seed=1))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path) -> None:
    single = _trained(_phases(), str(tmp_path / "single"), None)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    dist = torch.load(tmp_path / "dist.pt", weights_only=True)
    assert dist["state"].keys() == single.keys()
    for name, value in single.items():
        torch.testing.assert_close(dist["state"][name], value, atol=1e-5, rtol=0, msg=name)
    # both phases really trained, so the comparison is not between untouched tensors
    untouched = _trained([], str(tmp_path / "none"), None)
    for name in ("shared_prompt.tokens", "group_pool.prompts", "group_pool.keys", "head.weight"):
        assert not torch.equal(single[name], untouched[name]), name
    assert dist["gathered"].flatten().tolist() == [0.0, 0.0, 1.0, 2.0, 3.0]


def test_row_slices_cover_rows_once() -> None:
    slices = [D.row_slice(10, D.DistContext(rank=r, world_size=3)) for r in range(3)]
    covered = [i for s in slices for i in range(10)[s]]
    assert covered == list(range(10))
    assert D.all_reduce_sums({"a": 2.0}, D.single_process("cpu")) == {"a": 2.0}
