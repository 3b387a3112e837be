"""The training loop shared by every method, following LPT (Dong et al., "LPT: Long-tailed Prompt
Tuning for Image Classification", ICLR 2023).

Per step with dual sampling: loss = L_cb + match_cb + alpha_e * (L_ib + match_ib), with
alpha_e = 0.5 * (E - e) / E (e = 0-based epoch); the match terms appear only when the model
returns them (LPT phase 2). SGD with momentum at ``lr_per_256 * batch / 256``, timm's
``CosineLRScheduler`` with one warm-up epoch from 1e-6, stepped per epoch as the released code
does (``schedule: epoch``) or per optimiser step (``schedule: step``: the warm-up ramps within its
epoch instead of spending it at 1e-6); floor(N / B) + 1 steps per epoch. Only
``model.trainable_names()`` reach the optimiser.

Reproducibility: the index stream is a seeded sampler saved in the checkpoint; every other random
stream (crops and flips, loss noise, dropout) is re-seeded at each epoch from (seed, epoch, rank),
so a run killed after an epoch and resumed from its checkpoint continues bit for bit. Checkpoints
live in a folder named by the run's key (:func:`run_key`: the phase, its config, the model's
starting tensors, the backbone, the data and the training code), so a run resumes only its own
checkpoint; a changed recipe starts fresh and says so. The model is selected on the held-out
validation split (never the test split) or is the last epoch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.scheduler import CosineLRScheduler
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from lpt_core import distributed as D
from lpt_core.checkpoints import (
    BEST,
    CHECKPOINT,
    load_checkpoint,
    load_named,
    run_folder,
    run_identity,
    run_key,
    save_checkpoint,
    to_torch,
)
from lpt_core.config import to_dict
from lpt_core.data.samplers import DualSampler, shard, steps_per_epoch
from lpt_core.data.store import ArraySplit, PreparedDataset
from lpt_core.data.transforms import BatchPreprocessor
from lpt_core.evaluate import autocast, predict
from lpt_core.losses import build_loss
from lpt_core.metrics import per_class_accuracy

log = logging.getLogger(__name__)
AGCL_DEFAULTS = {"cb": {"gamma_pos": 0.0, "gamma_neg": 4.0}, "ib": {"gamma_pos": 0.5, "gamma_neg": 8.0}}


@dataclass(frozen=True)
class TrainConfig:
    """One training phase (params.yaml ``train`` keys); the step size is ``lr_per_256 * batch / 256``."""

    epochs: int = 10
    batch_size: int = 256
    lr_per_256: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 0.01
    warmup_epochs: int = 1
    warmup_lr: float = 1e-6
    min_lr: float = 0.0
    schedule: str = "epoch"  # "epoch" (released: the lr changes once per epoch) | "step"
    sampling: str = "dual"  # "dual" (class-balanced + instance-balanced) | "instance"
    per_class: int = 4
    loss: str = "agcl"  # a lpt_core.losses.LOSSES name
    loss_kwargs: dict[str, Any] = field(default_factory=dict)  # both streams (scale, margin, ...)
    loss_cb: dict[str, Any] | None = None  # None: A-GCL (gamma_pos, gamma_neg) = (0, 4)
    loss_ib: dict[str, Any] | None = None  # None: A-GCL (0.5, 8); the only stream of "instance"
    ib_weight: float = 0.5  # alpha_e = ib_weight * (E - e) / E
    seed: int = 0
    amp: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "off"
    num_workers: int = 0  # threads gathering batches from the memory-mapped arrays
    val_every: int = 1  # epochs between validations; 0 = never (needs select="last")
    select: str = "val"  # "val" (best class-balanced validation top-1) | "last"
    max_steps_per_epoch: int | None = None  # None = floor(N / B) + 1 (the spec)
    eval_batch_size: int = 256
    deterministic: bool = True
    channels_last: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        checks = {
            "sampling": (self.sampling, ("dual", "instance")),
            "amp": (self.amp, ("auto", "bf16", "off")),
            "select": (self.select, ("val", "last")),
            "schedule": (self.schedule, ("epoch", "step")),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"train.{key}={value!r}; expected one of {list(allowed)}")
        for key in ("epochs", "batch_size", "per_class", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.lr_per_256 <= 0 or self.warmup_epochs < 0 or self.val_every < 0 or self.num_workers < 0:
            raise ValueError("train.lr_per_256 must be > 0 and warmup_epochs, val_every, num_workers >= 0")
        if self.select == "val" and self.val_every == 0:
            raise ValueError("train.select='val' needs val_every >= 1")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"train.max_steps_per_epoch must be >= 1 or null, got {self.max_steps_per_epoch}")

    def stream_loss_kwargs(self, stream: str) -> dict[str, Any]:
        """Loss kwargs of stream "cb" or "ib": shared kwargs, then the stream's own."""
        own = self.loss_cb if stream == "cb" else self.loss_ib
        if own is None:
            own = AGCL_DEFAULTS[stream] if self.loss == "agcl" else {}
        return {**self.loss_kwargs, **own}


def effective_lr(cfg: TrainConfig) -> float:
    """The SGD step size of ``cfg``: ``lr_per_256 * batch_size / 256`` (the linear scaling rule)."""
    return cfg.lr_per_256 * cfg.batch_size / 256.0


@dataclass
class FitResult:
    """Outcome of :func:`fit`; the model holds the selected weights when it returns."""

    epochs: int
    best_epoch: int
    best_val_balanced_top1: float | None
    history: list[dict[str, Any]]
    checkpoint: Path
    seconds: float
    images_per_second: float


class _Streams(nn.Module):
    """One forward over every stream's batch, so DDP sees one forward per backward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *xs: torch.Tensor) -> tuple[Any, ...]:
        return tuple(self.model.forward_train(x) for x in xs)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


@contextlib.contextmanager
def _determinism(enabled: bool, device: str) -> Iterator[None]:
    """Deterministic kernels where torch has them, restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    with contextlib.ExitStack() as stack:
        if enabled:
            if device.startswith("cuda"):
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                torch.backends.cudnn.benchmark = False
                # flash, cuDNN and (with warn_only) memory-efficient attention have
                # non-deterministic backward passes on CUDA; the math kernel does not
                stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])


class _Trainer:
    """The mutable state of one fit: optimiser, scheduler, sampler, losses, best-so-far."""

    def __init__(self, model: nn.Module, data: PreparedDataset, cfg: TrainConfig, ctx: D.DistContext) -> None:
        self.model, self.data, self.cfg, self.ctx = model, data, cfg, ctx
        self.names = list(model.trainable_names())
        if not self.names:
            raise ValueError(f"model in phase {getattr(model, 'phase', '?')!r} has no trainable parameters")
        params = dict(model.named_parameters())
        decay = [params[n] for n in self.names if params[n].ndim > 1]
        no_decay = [params[n] for n in self.names if params[n].ndim <= 1]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        self.optimizer = torch.optim.SGD([g for g in groups if g["params"]], lr=effective_lr(cfg),
                                         momentum=cfg.momentum)
        self.steps = min(steps_per_epoch(len(data.train), cfg.batch_size), cfg.max_steps_per_epoch or 1 << 62)
        unit = self.steps if cfg.schedule == "step" else 1  # scheduler time steps per epoch
        self.scheduler = CosineLRScheduler(
            self.optimizer, t_initial=cfg.epochs * unit, lr_min=cfg.min_lr, warmup_t=cfg.warmup_epochs * unit,
            warmup_lr_init=cfg.warmup_lr, t_in_epochs=cfg.schedule == "epoch",
        )
        self.sampler = DualSampler(data.train.labels, cfg.batch_size, cfg.seed, cfg.per_class)
        self.streams = ("cb", "ib") if cfg.sampling == "dual" else ("ib",)
        self.loss_gen = torch.Generator(device=ctx.device)
        self.aug_gen = torch.Generator()
        self.losses = {s: self._build_loss(s) for s in self.streams}
        self.pre = BatchPreprocessor.from_data_config(model.data_config(), True, self.aug_gen)
        self.pre.channels_last = cfg.channels_last
        self.step_module = D.wrap(_Streams(model), ctx)
        self.start_epoch, self.best_epoch, self.best_top1 = 0, -1, -math.inf
        self.history: list[dict[str, Any]] = []

    def _build_loss(self, stream: str) -> nn.Module:
        kwargs = self.cfg.stream_loss_kwargs(stream)
        if self.cfg.loss == "agcl":
            kwargs["generator"] = self.loss_gen
        return build_loss(self.cfg.loss, self.data.class_counts, **kwargs).to(self.ctx.device)

    # ----- checkpoints ---------------------------------------------------------------------
    def state(self, phase: str, epoch: int) -> dict[str, Any]:
        params = dict(self.model.named_parameters())
        return {
            "format": "lpt-train-checkpoint/1", "phase": phase, "config": to_dict(self.cfg), "epoch": epoch,
            "trainable": {n: params[n].detach().cpu().clone() for n in self.names},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "sampler": to_torch(self.sampler.state_dict()),
            "best_epoch": self.best_epoch, "best_top1": self.best_top1, "history": self.history,
        }

    def restore(self, ckpt: dict[str, Any], phase: str) -> None:
        if ckpt.get("phase") != phase or _result_config(ckpt.get("config")) != _result_config(to_dict(self.cfg)):
            raise ValueError(  # cannot happen through fit(), whose folder is keyed by phase and config
                f"checkpoint was written for phase {ckpt.get('phase')!r} with config {ckpt.get('config')}; "
                f"this run is phase {phase!r} with {to_dict(self.cfg)}"
            )
        load_named(self.model, ckpt["trainable"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.sampler.load_state_dict(ckpt["sampler"])
        self.start_epoch, self.history = int(ckpt["epoch"]), list(ckpt["history"])
        self.best_epoch, self.best_top1 = int(ckpt["best_epoch"]), float(ckpt["best_top1"])
        self.scheduler.step(self.start_epoch)
        self.scheduler.step_update(self.start_epoch * self.steps)

    # ----- one epoch -----------------------------------------------------------------------
    def plan(self, epoch: int) -> list[list[tuple[np.ndarray, Any]]]:
        """Every step's per-stream (local indices, local crop params), drawn up front."""
        cfg, ctx, imgs = self.cfg, self.ctx, self.data.train.images
        self.aug_gen.manual_seed(_seed(cfg.seed, epoch, 1))
        plan = []
        for _ in range(self.steps):
            cb, ib = self.sampler.next_batch()
            batches = {"cb": cb, "ib": ib}
            step = []
            for s in self.streams:
                params = self.pre.sample(len(batches[s]), imgs.shape[1], imgs.shape[2])
                rows = shard(np.arange(len(batches[s])), ctx.rank, ctx.world_size)
                step.append((shard(batches[s], ctx.rank, ctx.world_size), params[rows[0] : rows[-1] + 1]))
            plan.append(step)
        return plan

    def run_epoch(self, epoch: int) -> dict[str, float]:
        cfg, ctx = self.cfg, self.ctx
        plan = self.plan(epoch)
        torch.manual_seed(_seed(cfg.seed, epoch, 2, ctx.rank))  # dropout
        self.loss_gen.manual_seed(_seed(cfg.seed, epoch, 3, ctx.rank))
        alpha = cfg.ib_weight * (cfg.epochs - epoch) / cfg.epochs
        weights = (1.0, alpha) if len(self.streams) == 2 else (1.0,)
        self.model.train()
        total, t0 = 0.0, time.perf_counter()
        bar = tqdm(plan, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and ctx.is_main))
        for i, batches in enumerate(_prefetch(lambda step: _fetch(self.data.train, step), bar, cfg.num_workers)):
            total += self.step(batches, weights)
            self.scheduler.step_update(epoch * self.steps + i + 1)  # a no-op with schedule: epoch
        bar.close()
        seconds = time.perf_counter() - t0
        sums = D.all_reduce_sums({"loss": total}, ctx)
        n_images = len(plan) * cfg.batch_size * len(self.streams)
        return {"loss": sums["loss"] / ctx.world_size / len(plan), "images_per_second": n_images / seconds,
                "seconds": seconds}

    def step(self, batches: list[tuple[np.ndarray, np.ndarray, Any]], weights: tuple[float, ...]) -> float:
        dev = self.ctx.device
        xs, ys = [], []
        for images, labels, params in batches:
            xs.append(self.pre(torch.from_numpy(images).to(dev, non_blocking=True), params))
            ys.append(torch.from_numpy(labels).to(dev, non_blocking=True))
        with autocast(dev, self.cfg.amp):
            outs = self.step_module(*xs)
        loss = torch.zeros((), device=dev)
        for out, y, stream, w in zip(outs, ys, self.streams, weights):
            term = self.losses[stream](out.logits.float(), y)
            if out.match_loss is not None:
                term = term + out.match_loss.float()
            loss = loss + w * term
        if not torch.isfinite(loss):
            raise RuntimeError(f"training loss became {loss.item()}; lower train.lr_per_256 or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def validate(self) -> tuple[float, float]:
        """(top-1, class-balanced top-1) on the validation split, sharded over ranks and gathered.

        The balanced figure, the mean per-class recall over the classes present, is what selection
        uses: the held-out split is as long-tailed as training, so its plain top-1 rewards
        head-class bias, while the test split is balanced.
        """

        val, ctx = self.data.val, self.ctx
        rows = D.row_slice(len(val), ctx)
        logits = predict(self.model, val.images[rows], batch_size=self.cfg.eval_batch_size,
                         device=ctx.device, amp=self.cfg.amp, as_numpy=False)
        logits = D.all_gather_rows(logits.to(ctx.device), ctx).cpu().numpy()
        pred, labels = logits.argmax(1), np.asarray(val.labels)
        correct, n = per_class_accuracy(pred, labels, logits.shape[1])
        present = n > 0
        return float((pred == labels).mean()), float((correct[present] / n[present]).mean())


def _fetch(split: ArraySplit, step: list[tuple[np.ndarray, Any]]) -> list[tuple[np.ndarray, np.ndarray, Any]]:
    """Gather one step's images (uint8) and labels from the (memory-mapped) split."""
    return [(np.ascontiguousarray(split.images[idx]), np.asarray(split.labels[idx]), p) for idx, p in step]


def _prefetch(fn: Callable[[Any], Any], items: Any, workers: int) -> Iterator[Any]:
    """map(fn, items) in order, computed up to 2 * workers items ahead by a thread pool."""
    if workers <= 0:
        yield from map(fn, items)
        return
    it = iter(items)
    with ThreadPoolExecutor(workers) as pool:
        pending = deque(pool.submit(fn, x) for _, x in zip(range(2 * workers), it))
        while pending:
            result = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt))
            yield result


def _result_config(cfg: dict[str, Any] | None) -> dict[str, Any] | None:
    """The config keys that change results (progress bars and loader threads do not)."""
    return None if cfg is None else {k: v for k, v in cfg.items() if k not in ("progress", "num_workers")}


def fit(
    model: nn.Module,
    data: PreparedDataset,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    device: str = "auto",
    phase: str | None = None,
    resume: bool = True,
    dist: D.DistContext | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train ``model`` (a ``Classifier``) in ``phase`` on ``data.train``; select on ``data.val``.

    The run's checkpoints go to ``out_dir/<phase>-<key>/`` (``checkpoint.pt`` after every epoch,
    atomic, and ``best.pt``), where the key identifies the run (:func:`lpt_core.checkpoints.run_key`);
    with ``resume`` this run's own checkpoint is continued (a finished one is just reloaded), and
    checkpoints of any other run of this phase are removed with a log line. ``on_epoch_end`` is
    called with (epoch, record) after each checkpoint. Returns a :class:`FitResult`; the model
    then holds the selected trainable tensors.
    """
    ctx = dist or D.single_process(device)
    if phase is not None:
        model.set_phase(phase)
    phase = getattr(model, "phase", "train")
    if cfg.select == "val" and len(data.val) == 0:
        raise ValueError("train.select='val' but the prepared dataset has an empty validation split; "
                         "use select: last")
    identity = run_identity(model, data, _result_config(to_dict(cfg)), phase, ctx.world_size)
    key = run_key(model, identity)
    out = Path(out_dir) / f"{phase}-{key[:16]}"
    if ctx.is_main:
        run_folder(out_dir, phase, key, identity)
        if not resume:
            for name in (CHECKPOINT, BEST):
                (out / name).unlink(missing_ok=True)
    D.barrier(ctx)
    model.to(ctx.device)
    t0 = time.perf_counter()
    with _determinism(cfg.deterministic, ctx.device):
        trainer = _Trainer(model, data, cfg, ctx)
        if resume and (out / CHECKPOINT).is_file():
            trainer.restore(load_checkpoint(out / CHECKPOINT), phase)
            log.info("resuming %s from epoch %d of %d (%s)", phase, trainer.start_epoch, cfg.epochs, out / CHECKPOINT)
        else:
            log.info("%s: training from scratch, lr %g per 256 images = %g at batch %d (%s schedule), "
                     "checkpoints in %s", phase, cfg.lr_per_256, effective_lr(cfg), cfg.batch_size, cfg.schedule, out)
        for epoch in range(trainer.start_epoch, cfg.epochs):
            _epoch(trainer, epoch, phase, out, on_epoch_end)
    return _finish(trainer, out, time.perf_counter() - t0)


def _epoch(
    trainer: _Trainer, epoch: int, phase: str, out: Path, on_epoch_end: Callable[[int, dict[str, Any]], None] | None
) -> None:
    cfg, ctx = trainer.cfg, trainer.ctx
    lr = trainer.optimizer.param_groups[0]["lr"]
    record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **trainer.run_epoch(epoch)}
    trainer.scheduler.step(epoch + 1)
    last = epoch + 1 == cfg.epochs
    if cfg.val_every and ((epoch + 1) % cfg.val_every == 0 or last):
        record["val_top1"], record["val_balanced_top1"] = trainer.validate()
        if record["val_balanced_top1"] > trainer.best_top1:
            trainer.best_epoch, trainer.best_top1 = epoch + 1, record["val_balanced_top1"]
            if ctx.is_main:
                save_checkpoint(trainer.state(phase, epoch + 1)["trainable"], out / BEST)
    trainer.history.append(record)
    if ctx.is_main:
        save_checkpoint(trainer.state(phase, epoch + 1), out / CHECKPOINT)
        log.info(
            "%s epoch %d/%d loss %.4f lr %.3g val top-1 %s (balanced %s) %.0f img/s", phase, epoch + 1, cfg.epochs,
            record["loss"], lr, f"{record['val_top1']:.4f}" if "val_top1" in record else "-",
            f"{record['val_balanced_top1']:.4f}" if "val_balanced_top1" in record else "-",
            record["images_per_second"],
        )
    D.barrier(ctx)
    if on_epoch_end is not None:
        on_epoch_end(epoch, record)


def _finish(trainer: _Trainer, out: Path, seconds: float) -> FitResult:
    cfg = trainer.cfg
    if cfg.select == "val" and (out / BEST).is_file():
        load_named(trainer.model, load_checkpoint(out / BEST))
    trained = [r for r in trainer.history if "images_per_second" in r]
    ips = float(np.mean([r["images_per_second"] for r in trained])) if trained else 0.0
    best = trainer.best_top1 if trainer.best_epoch >= 0 else None
    return FitResult(
        epochs=cfg.epochs, best_epoch=trainer.best_epoch if cfg.select == "val" else cfg.epochs,
        best_val_balanced_top1=best, history=trainer.history, checkpoint=out / CHECKPOINT, seconds=seconds,
        images_per_second=ips,
    )
