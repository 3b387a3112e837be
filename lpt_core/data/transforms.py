"""Batched, device-side image preprocessing for LPT (Dong et al., ICLR 2023).

Images travel as uint8 (B, H, W, 3) tensors; this module turns a whole batch into normalised
float (B, 3, S, S) on the images' device in one call, no per-image Python:

- train: RandomResizedCrop(S, scale=(0.08, 1) unless given, ratio=(3/4, 4/3)) with torchvision's box-sampling
  rule, evaluated for all images at once with ``torchvision.ops.roi_align`` (bilinear, with
  adaptive averaging when a box is shrunk), then a random horizontal flip;
- eval: resize to int(S * 256 / 224) square (the spec's "resize 256 x 256"), centre crop S.

Random parameters come from an explicit CPU ``torch.Generator``. :meth:`BatchPreprocessor.sample`
draws them for a *global* batch so that each distributed rank can apply its own slice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
EVAL_RESIZE_RATIO = 256.0 / 224.0
_ATTEMPTS = 10


@dataclass(frozen=True)
class CropParams:
    """Per-image crop boxes (x0, y0, x1, y1) in pixels (B, 4) and flip flags (B,)."""

    boxes: torch.Tensor
    flips: torch.Tensor

    def __getitem__(self, index: slice) -> CropParams:
        return CropParams(self.boxes[index], self.flips[index])

    def __len__(self) -> int:
        return len(self.flips)


def sample_crop_boxes(
    n: int, height: int, width: int, generator: torch.Generator, scale: tuple[float, float] = SCALE
) -> torch.Tensor:
    """RandomResizedCrop boxes (area share in ``scale``) for ``n`` images of (height, width), vectorised.

    Follows torchvision's rule: up to 10 attempts of (area scale, log-uniform ratio) per image,
    the first that fits wins; images with no fitting attempt get the ratio-clamped centre crop.
    """
    area = float(height * width)
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"crop scale must satisfy 0 < low <= high <= 1, got {tuple(scale)}")
    area_share = torch.empty(n, _ATTEMPTS).uniform_(*scale, generator=generator)
    log_r = torch.empty(n, _ATTEMPTS).uniform_(math.log(RATIO[0]), math.log(RATIO[1]), generator=generator)
    u = torch.rand(n, _ATTEMPTS, 2, generator=generator)
    ratio = torch.exp(log_r)
    w = torch.round(torch.sqrt(area * area_share * ratio))
    h = torch.round(torch.sqrt(area * area_share / ratio))
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    pick = first.clamp(min=0)
    rows = torch.arange(n)
    w, h = w[rows, pick], h[rows, pick]
    y0 = torch.floor(u[rows, pick, 0] * (height - h + 1))
    x0 = torch.floor(u[rows, pick, 1] * (width - w + 1))
    fw, fh = _fallback_size(height, width)
    none = first < 0
    w = torch.where(none, torch.tensor(float(fw)), w)
    h = torch.where(none, torch.tensor(float(fh)), h)
    x0 = torch.where(none, torch.tensor(float((width - fw) // 2)), x0)
    y0 = torch.where(none, torch.tensor(float((height - fh) // 2)), y0)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def _fallback_size(height: int, width: int) -> tuple[int, int]:
    """torchvision's whole-image centre crop with the aspect ratio clamped to RATIO."""
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        return width, int(round(width / RATIO[0]))
    if in_ratio > RATIO[1]:
        return int(round(height * RATIO[1])), height
    return width, height


def eval_resize_size(input_size: int) -> int:
    """Side of the square resize before the centre crop: int(S * 256 / 224)."""
    return int(input_size * EVAL_RESIZE_RATIO)


class BatchPreprocessor:
    """uint8 (B, H, W, 3) tensor on any device -> normalised float (B, 3, S, S) on that device."""

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
        scale: tuple[float, float] = SCALE,
        hflip: bool = True,
    ) -> None:
        if int(input_size) <= 0:
            raise ValueError(f"input_size must be positive, got {input_size}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 entries with std > 0, got mean={mean}, std={std}")
        if train and generator is None:
            raise ValueError("a training BatchPreprocessor needs an explicit torch.Generator")
        self.input_size, self.train, self.generator = int(input_size), bool(train), generator
        self.channels_last = channels_last
        self.scale, self.hflip = (float(scale[0]), float(scale[1])), bool(hflip)
        self._mean = torch.tensor([float(m) for m in mean]).view(1, 3, 1, 1)
        self._std = torch.tensor([float(s) for s in std]).view(1, 3, 1, 1)

    @classmethod
    def from_data_config(
        cls, data_config: dict, train: bool, generator: torch.Generator | None = None
    ) -> BatchPreprocessor:
        """Build from a timm-style data config (``input_size`` (3, S, S) or S, ``mean``, ``std``)."""
        size = data_config["input_size"]
        size = size[-1] if isinstance(size, (tuple, list)) else size
        return cls(int(size), data_config["mean"], data_config["std"], train, generator)

    def sample(self, n: int, height: int, width: int) -> CropParams:
        """Random crop boxes and flips for a (global) batch of ``n`` images of (height, width)."""
        if not self.train:
            raise ValueError("sample() is only defined for a training preprocessor")
        boxes = sample_crop_boxes(n, height, width, self.generator, self.scale)
        flips = torch.rand(n, generator=self.generator) < 0.5
        if not self.hflip:
            flips = torch.zeros_like(flips)
        return CropParams(boxes, flips)

    def __call__(self, images: torch.Tensor | np.ndarray, params: CropParams | None = None) -> torch.Tensor:
        """Preprocess a batch; in training, ``params`` (default: freshly sampled) fixes the crops."""
        images = _as_uint8_tensor(images)
        x = images.permute(0, 3, 1, 2).float()
        if self.train:
            if params is None:
                params = self.sample(len(images), images.shape[1], images.shape[2])
            if len(params) != len(images):
                raise ValueError(f"{len(params)} crop params for a batch of {len(images)} images")
            x = self._random_resized_crop(x, params)
        else:
            x = self._resize_centre_crop(x)
        x = (x / 255.0 - self._mean.to(x.device)) / self._std.to(x.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _random_resized_crop(self, x: torch.Tensor, params: CropParams) -> torch.Tensor:
        s = self.input_size
        index = torch.arange(len(x), dtype=torch.float32).unsqueeze(1)
        rois = torch.cat([index, params.boxes.float()], dim=1).to(x.device)
        out = roi_align(x, rois, (s, s), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        flips = params.flips.to(x.device).view(-1, 1, 1, 1)
        return torch.where(flips, out.flip(-1), out)

    def _resize_centre_crop(self, x: torch.Tensor) -> torch.Tensor:
        s, r = self.input_size, eval_resize_size(self.input_size)
        if x.shape[-2:] != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        top = int(round((r - s) / 2.0))
        return x[:, :, top : top + s, top : top + s]


def _as_uint8_tensor(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected a uint8 (B, H, W, 3) batch, got {tuple(images.shape)} {images.dtype}")
    return images
