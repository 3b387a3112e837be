"""Stage ``baselines``: a softmax (multinomial logistic) regression on raw pixels, for honesty.

The quickstart's long-tailed task is small; a pixel-level linear model shows how much the
pretrained backbone and the prompt-tuning methods (LPT, Dong et al., ICLR 2023) actually add.
Inputs get one global mean/std normalisation; training is full-batch L-BFGS with a seeded init.
Results are written in the same "Result file" schema as the evaluate stage.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lpt_core.data.store import load_prepared
from lpt_core.pipeline.common import parse, section, stage_parser

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselinesConfig:
    """The ``baselines`` section: L2 penalty, L-BFGS iterations, seed."""

    l2: float = 1e-3
    max_iter: int = 200
    seed: int = 0
    few_includes_20: bool = False


class PixelLogReg:
    """Softmax regression on flattened uint8 pixels, normalised by one global mean and std."""

    def __init__(self, num_features: int, num_classes: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.weight = (0.01 * torch.randn(num_features, num_classes, generator=gen)).requires_grad_(True)
        self.bias = torch.zeros(num_classes, requires_grad=True)
        self.mean, self.std = 0.0, 1.0

    def _x(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).reshape(len(images), -1).float()
        return (x - self.mean) / self.std

    def logits(self, images: np.ndarray) -> torch.Tensor:
        """Logits (N, C) for uint8 (N, H, W, 3) images."""
        with torch.no_grad():
            return self._x(images) @ self.weight + self.bias

    def fit(self, images: np.ndarray, labels: np.ndarray, l2: float, max_iter: int) -> float:
        """Full-batch L-BFGS on cross-entropy + ``l2``·|W|²; returns the final loss."""
        flat = np.asarray(images, dtype=np.float64)
        self.mean, self.std = float(flat.mean()), float(flat.std()) or 1.0
        x, y = self._x(images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
        opt = torch.optim.LBFGS([self.weight, self.bias], max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(x @ self.weight + self.bias, y) + l2 * self.weight.pow(2).sum()
            loss.backward()
            return loss

        return float(opt.step(closure))


def run(cfg: BaselinesConfig, data_dir: Path, shifts_dir: Path, out: Path) -> list[Path]:
    """Fit the pixel baseline on the training split and write its result file per shift set."""
    from lpt_core.data.batches import load_batch, read_index
    from lpt_core.metrics import classification_metrics
    from lpt_core.results import EvalResult, shift_block

    data = load_prepared(data_dir)
    model = PixelLogReg(int(np.prod(data.train.images.shape[1:])), data.num_classes, cfg.seed)
    loss = model.fit(data.train.images, data.train.labels, cfg.l2, cfg.max_iter)
    info = {"name": out.name, "method": "pixel_logreg", "artifact": "", "artifact_sha256": "",
            "backbone": "none", "backbone_fingerprint": "", "trainable_params": int(model.weight.numel()
            + model.bias.numel()), "stored_params": int(model.weight.numel() + model.bias.numel()),
            "data_version": data.meta.get("content_hashes", {}).get("train", "")}  # fmt: skip
    if out.exists():
        shutil.rmtree(out)
    written = []
    for meta in read_index(shifts_dir):
        batch = load_batch(shifts_dir / meta["id"])
        if batch.labels is None:
            raise ValueError(f"pipeline shift set {meta['id']} has no labels: the baseline measures labelled sets only")
        logits = model.logits(batch.images).numpy()
        scores = classification_metrics(logits, batch.labels, data.class_counts, logit_scale=1.0,
                                         few_includes_20=cfg.few_includes_20, seed=cfg.seed)  # fmt: skip
        result = EvalResult(model=info, shift=shift_block(batch.meta, batch.images, batch.labels),
                            metrics=scores["metrics"], per_class=scores["per_class"],
                            labels={"n_images": len(batch.labels), "n_labeled": len(batch.labels), "hash": None})  # fmt: skip
        written.append(result.write(out / f"{meta['id']}.json", with_run=False))
    log.info("pixel logistic regression: train loss %.4f, %d result files", loss, len(written))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Fit the raw-pixel logistic regression on ``--data``; results per shift set into ``--out``."""
    parser = stage_parser("baselines", main.__doc__ or "")
    parser.add_argument("--data", required=True, type=Path, help="prepared target dataset")
    parser.add_argument("--shifts", required=True, type=Path, help="folder of shift sets (index.json)")
    parser.add_argument("--out", required=True, type=Path, help="results folder of the baseline")
    args = parse(parser, argv)
    run(section(args.params, "baselines", BaselinesConfig), args.data, args.shifts, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
