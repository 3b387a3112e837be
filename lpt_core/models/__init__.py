"""Models of LPT (Dong et al., "LPT: Long-tailed Prompt Tuning for Image Classification", ICLR
2023) and its baselines on frozen timm Vision Transformers."""

from lpt_core.models.backbone import (
    BackboneUnavailableError,
    backbone_fingerprint,
    backbone_spec,
    create_backbone,
)
from lpt_core.models.classifier import Classifier, TrainOutput
from lpt_core.models.config import MethodConfig, PromptConfig
from lpt_core.models.heads import CosineHead
from lpt_core.models.methods import (
    METHODS,
    FullFineTuneClassifier,
    LinearClassifier,
    LPTClassifier,
    VPTClassifier,
    build_classifier,
)
from lpt_core.models.prompts import GroupPromptPool, Selection, SharedPrompt, matching_loss

__all__ = [
    "METHODS",
    "BackboneUnavailableError",
    "Classifier",
    "CosineHead",
    "FullFineTuneClassifier",
    "GroupPromptPool",
    "LPTClassifier",
    "LinearClassifier",
    "MethodConfig",
    "PromptConfig",
    "Selection",
    "SharedPrompt",
    "TrainOutput",
    "VPTClassifier",
    "backbone_fingerprint",
    "backbone_spec",
    "build_classifier",
    "create_backbone",
    "matching_loss",
]
