"""The quickstart backbone: a small timm ViT pretrained on Fashion-MNIST base classes.

LPT (Dong et al., "LPT: Long-tailed Prompt Tuning for Image Classification", ICLR 2023) tunes
prompts on a *pretrained, frozen* ViT that never saw the target labels (ImageNet-21k weights for
CIFAR-100-LT). No weights can be downloaded offline, so the quickstart mirrors that setting with a
base/novel split of Fashion-MNIST: the backbone is trained supervised (cross-entropy, AdamW,
cosine schedule, light batched augmentation) on every training image of five *base* classes, and
the long-tailed target task uses the other five (*novel*) classes only.

The result is a timm-loadable state dict (``model.safetensors``, no classifier head) plus
``backbone.json`` with the exact ``timm.create_model`` kwargs, so that
``timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": path}, **kwargs)``
(or ``lpt_core.models.backbone.create_backbone(name, weights=path, **kwargs)``) rebuilds it.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.scheduler import CosineLRScheduler
from tqdm import tqdm

from lpt_core.data.sources import FASHION_MNIST_CLASSES, read_idx
from lpt_core.data.transforms import BatchPreprocessor
from lpt_core.models.folder import META_FILE, WEIGHTS_FILE, load_backbone, save_backbone  # noqa: F401

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class PretrainConfig:
    """The ``pretrain`` section of params.yaml (see docs/PIPELINE.md)."""

    base_classes: tuple[str, ...] = ("T-shirt/top", "Trouser", "Pullover", "Sandal", "Bag")
    model_name: str = "vit_tiny_patch16_224"
    img_size: int = 32
    patch_size: int = 4
    embed_dim: int = 128
    depth: int = 6
    num_heads: int = 4
    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    label_smoothing: float = 0.1
    crop_scale: tuple[float, float] = (0.6, 1.0)
    hflip: bool = True
    max_train_images: int = 0  # 0 = every training image of the base classes
    max_eval_images: int = 0  # 0 = every test image of the base classes
    seed: int = 0
    num_threads: int = 0  # 0 = torch's default


def backbone_kwargs(cfg: PretrainConfig) -> dict[str, Any]:
    """The ``timm.create_model`` keyword arguments that rebuild the headless backbone."""
    return {
        "img_size": cfg.img_size,
        "patch_size": cfg.patch_size,
        "embed_dim": cfg.embed_dim,
        "depth": cfg.depth,
        "num_heads": cfg.num_heads,
        "num_classes": 0,
    }


def load_base_split(root: str | Path, split: str, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` ("train"/"test") restricted to ``class_names``, labels remapped to 0..K-1.

    Returns grayscale uint8 images (N, 28, 28) and int64 labels (N,).
    """
    unknown = [c for c in class_names if c not in FASHION_MNIST_CLASSES]
    if unknown or not class_names:
        raise ValueError(f"base classes {unknown or '(none)'} are not Fashion-MNIST classes {FASHION_MNIST_CLASSES}")
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    files = [root / f"{prefix}-{kind}-idx{n}-ubyte.gz" for kind, n in (("images", 3), ("labels", 1))]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files {missing} not found; install Debian's dataset-fashion-mnist "
            f"(apt-get install dataset-fashion-mnist) or pass --data-root"
        )
    images, labels = read_idx(files[0]), read_idx(files[1])
    original = [FASHION_MNIST_CLASSES.index(c) for c in class_names]
    keep = np.isin(labels, original)
    remap = np.full(len(FASHION_MNIST_CLASSES), -1, dtype=np.int64)
    remap[original] = np.arange(len(original))
    return np.ascontiguousarray(images[keep]), remap[labels[keep]]


def as_rgb(x: torch.Tensor) -> torch.Tensor:
    """uint8 grayscale (B, H, W) -> (B, H, W, 3), the project's image convention (RGB stays)."""
    return x.unsqueeze(-1).expand(-1, -1, -1, 3) if x.ndim == 3 else x


def preprocessors(cfg: PretrainConfig, generator: torch.Generator) -> tuple[BatchPreprocessor, BatchPreprocessor]:
    """(train, eval) preprocessing of the backbone's data config: the same batched RandomResizedCrop
    (with the section's crop scale and flip) and resize + centre crop as every method's training."""
    mean = std = (0.5, 0.5, 0.5)
    train = BatchPreprocessor(cfg.img_size, mean, std, True, generator, scale=tuple(cfg.crop_scale),
                              hflip=cfg.hflip)  # fmt: skip
    return train, BatchPreprocessor(cfg.img_size, mean, std, False)


def build_model(cfg: PretrainConfig, num_classes: int) -> torch.nn.Module:
    """The ViT with a ``num_classes`` head for supervised pretraining (random init, no download)."""
    import timm

    kwargs = backbone_kwargs(cfg) | {"num_classes": num_classes}
    return timm.create_model(cfg.model_name, pretrained=False, **kwargs)


def train_backbone(
    cfg: PretrainConfig, images: np.ndarray, labels: np.ndarray, *, device: torch.device
) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Supervised training of the ViT on (images, labels); returns the model and per-epoch history."""
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # timm's weight init draws from the global RNG
    model = build_model(cfg, int(labels.max()) + 1).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 or "pos_embed" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    steps_per_epoch = len(labels) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(labels)} training images")
    # timm's cosine schedule per optimiser step (the trainer's, lpt_core.train), warm-up from 0
    scheduler = CosineLRScheduler(opt, t_initial=cfg.epochs * steps_per_epoch, lr_min=0.0,
                                  warmup_t=cfg.warmup_steps, warmup_lr_init=0.0, t_in_epochs=False)  # fmt: skip
    augment, _ = preprocessors(cfg, gen)
    step, history = 0, []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(labels), generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"pretrain epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for i in bar:
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            x = augment(as_rgb(x_all[idx]).to(device))
            y = y_all[idx].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            scheduler.step_update(step)
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen})
        log.info("pretrain epoch %d: loss %.4f train acc %.4f", epoch + 1, loss_sum / seen, correct / seen)
    return model, history


@torch.no_grad()
def evaluate_accuracy(
    model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, size: int, *, device: torch.device, batch_size: int = 500
) -> float:
    """Top-1 accuracy of ``model`` on (images, labels) with the evaluation transform."""
    model.eval()
    correct = 0
    pre = BatchPreprocessor(size, (0.5,) * 3, (0.5,) * 3, False)
    for i in range(0, len(labels), batch_size):
        x = pre(as_rgb(torch.from_numpy(images[i : i + batch_size])).to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            pred = model(x).argmax(1).cpu()
        correct += int((pred == torch.from_numpy(labels[i : i + batch_size])).sum())
    return correct / max(1, len(labels))


def state_fingerprint(model_name: str, kwargs: dict[str, Any], state: dict[str, torch.Tensor]) -> str:
    """The backbone fingerprint of ``state`` as ``lpt_core.models.backbone.backbone_fingerprint`` computes it."""
    from lpt_core.models.backbone import backbone_fingerprint, create_backbone

    model = create_backbone(model_name, seed=0, **kwargs)
    model.load_state_dict(state, strict=True)
    return backbone_fingerprint(model)


def headless_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without the classifier head (what the frozen backbone loads)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("head.")}


def _subsample(images: np.ndarray, labels: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random subset of ``limit`` rows (all rows when limit is 0)."""
    if limit <= 0 or limit >= len(labels):
        return images, labels
    idx = np.sort(np.random.default_rng(seed).choice(len(labels), size=limit, replace=False))
    return images[idx], labels[idx]


def pretrain(cfg: PretrainConfig, data_root: str | Path, out_dir: str | Path, *, device: str | None = None) -> dict[str, Any]:
    """Pretrain the quickstart backbone on the base classes and save it to ``out_dir``; returns its meta."""
    import timm

    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    x_tr, y_tr = _subsample(*load_base_split(data_root, "train", cfg.base_classes), cfg.max_train_images, cfg.seed)
    x_te, y_te = _subsample(*load_base_split(data_root, "test", cfg.base_classes), cfg.max_eval_images, cfg.seed + 1)
    log.info("pretraining %s on %d images of %s (device %s)", cfg.model_name, len(y_tr), cfg.base_classes, dev)
    start = time.perf_counter()
    model, history = train_backbone(cfg, x_tr, y_tr, device=dev)
    seconds = time.perf_counter() - start
    accuracy = evaluate_accuracy(model, x_te, y_te, cfg.img_size, device=dev)
    state = headless_state(model)
    meta = {
        **_identity_meta(cfg, state),
        "pretrain_data": {"source": "fashion_mnist", "base_classes": list(cfg.base_classes),
                          "train_images": int(len(y_tr)), "test_images": int(len(y_te))},
        "base_class_test_accuracy": accuracy,
        "epochs": cfg.epochs,
        "history": history,
        "train_seconds": round(seconds, 1),
        "device": str(dev),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(cfg).items()},
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version()},
    }  # fmt: skip
    save_backbone(out_dir, state, meta)
    log.info("backbone saved to %s: base-class test accuracy %.4f in %.0f s", out_dir, accuracy, seconds)
    return meta


def _identity_meta(cfg: PretrainConfig, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The part of backbone.json that rebuilds and identifies the backbone."""
    return {
        "schema": "lpt-backbone/1",
        "timm_name": cfg.model_name,
        "timm_kwargs": backbone_kwargs(cfg),
        "fingerprint": state_fingerprint(cfg.model_name, backbone_kwargs(cfg), state),
        "num_params": int(sum(t.numel() for t in state.values())),
        "data_config": {"input_size": [3, cfg.img_size, cfg.img_size], "mean": [0.5] * 3, "std": [0.5] * 3},
    }


def save_random_backbone(cfg: PretrainConfig, out_dir: str | Path, *, seed: int = 0) -> dict[str, Any]:
    """Write a seeded random-init backbone in the pretrain stage's output format (tests, dry runs).

    It stands in for the pretrained one where only the wiring matters; its meta says so
    (``pretrain_data.source = "none (random init)"``, no accuracy).
    """
    import timm

    torch.manual_seed(seed)
    state = headless_state(build_model(cfg, 1))
    meta = {
        **_identity_meta(cfg, state),
        "pretrain_data": {"source": "none (random init)", "base_classes": list(cfg.base_classes)},
        "base_class_test_accuracy": None,
        "epochs": 0,
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version()},
    }
    save_backbone(out_dir, state, meta)
    return meta
