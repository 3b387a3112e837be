"""The ``Classifier`` interface every method implements (see docs/ARCHITECTURE.md).

A classifier owns a timm ViT backbone, a cosine head (LPT, Dong et al., ICLR 2023) with dropout
before it in training, and whatever the method trains. ``set_phase`` decides exactly which
parameters are trainable; frozen modules stay in eval mode whatever ``train()`` is called with.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import timm
import torch
from torch import nn

from lpt_core.models.backbone import embed_tokens, known_fingerprint, pooled_feature
from lpt_core.models.config import MethodConfig
from lpt_core.models.heads import CosineHead


class TrainOutput(NamedTuple):
    """What one training forward returns: cosine logits and LPT's matching loss (phase 2 only)."""

    logits: torch.Tensor
    match_loss: torch.Tensor | None


class Classifier(nn.Module):
    """Base class: backbone + cosine head; subclasses define phases and the token path."""

    method: str = ""
    phases: tuple[str, ...] = ()
    #: parameter-name prefixes trained in each phase
    trainable_prefixes: dict[str, tuple[str, ...]] = {}
    #: parameter-name prefixes an artifact stores
    stored_prefixes: tuple[str, ...] = ("head.",)
    #: whether the backbone is trained (full fine-tuning) rather than frozen
    trains_backbone: bool = False

    def __init__(self, backbone: nn.Module, num_classes: int, cfg: MethodConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.embed_dim = int(backbone.embed_dim)
        self.depth = len(backbone.blocks)
        self.head_drop = nn.Dropout(cfg.head_dropout)
        on_meta = any(p.device.type == "meta" for p in backbone.parameters())
        #: fingerprint of the backbone this classifier started from (before any training)
        self.base_fingerprint: str | None = None if on_meta else known_fingerprint(backbone)
        self.phase = ""

    # ----- phases and trainable parameters -------------------------------------------------
    def set_phase(self, phase: str) -> None:
        """Make exactly the parameters of ``phase`` trainable; everything else is frozen."""
        if phase not in self.phases:
            raise ValueError(f"method {self.method!r} has no phase {phase!r}; phases: {list(self.phases)}")
        prefixes = self.trainable_prefixes[phase]
        for name, param in self.named_parameters():
            param.requires_grad_(name.startswith(prefixes))
        self.phase = phase
        self.train(self.training)

    def trainable_names(self) -> list[str]:
        """Names of the parameters trained in the current phase."""
        return [name for name, p in self.named_parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> Classifier:
        """Set train/eval mode; a frozen backbone stays in eval (no dropout/drop-path in it)."""
        super().train(mode)
        if not (self.trains_backbone and mode):
            self.backbone.eval()
        return self

    # ----- forward -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float images (B,3,S,S) -> cosine logits (B, C) (the inference path)."""
        return self.forward_train(x).logits

    def forward_train(self, x: torch.Tensor) -> TrainOutput:
        """Training forward: logits with head dropout (in train mode) and the matching loss."""
        return TrainOutput(self.classify(self.features(x)), None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled feature (B, D) after the final norm; subclasses add prompts."""
        tokens = self.backbone.blocks(embed_tokens(self.backbone, x))
        return pooled_feature(self.backbone, tokens)

    def classify(self, feature: torch.Tensor) -> torch.Tensor:
        """Dropout (active in train mode only) then the cosine head."""
        return self.head(self.head_drop(feature))

    # ----- storage -------------------------------------------------------------------------
    def stored_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors an artifact stores for this method (detached, on their device)."""
        return {k: v.detach() for k, v in self.state_dict().items() if k.startswith(self.stored_prefixes)}

    def load_stored_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`stored_state_dict` returned; any missing/extra/misshaped key raises."""
        expected = self.stored_state_dict()
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise ValueError(f"stored state of {self.method!r} mismatch: missing {missing}, unexpected {extra}")
        for key, value in state.items():
            if tuple(value.shape) != tuple(expected[key].shape):
                raise ValueError(
                    f"stored tensor {key!r} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}"
                )
        result = self.load_state_dict(state, strict=False)
        if result.unexpected_keys:  # cannot happen after the checks above; kept as a guard
            raise ValueError(f"unexpected keys {result.unexpected_keys}")

    def data_config(self) -> dict[str, Any]:
        """input_size, mean, std (and interpolation, crop_pct) from timm for this backbone."""
        cfg = dict(timm.data.resolve_data_config({}, model=self.backbone))
        img_size = getattr(getattr(self.backbone, "patch_embed", None), "img_size", None)
        if img_size is not None:  # a custom img_size is not in timm's pretrained_cfg
            cfg["input_size"] = (3, *tuple(img_size))
        return cfg

    def parameter_counts(self) -> dict[str, int]:
        """Trainable (current phase), stored and backbone parameter counts."""
        return {
            "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "stored": sum(v.numel() for v in self.stored_state_dict().values()),
            "backbone": sum(p.numel() for p in self.backbone.parameters()),
        }


def make_head(embed_dim: int, num_classes: int, generator: torch.Generator | None) -> CosineHead:
    """The cosine head shared by every method."""
    return CosineHead(embed_dim, num_classes, generator=generator)
