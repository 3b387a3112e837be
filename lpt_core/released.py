"""Import of the checkpoint released with LPT (Dong et al., "LPT: Long-tailed Prompt Tuning for
Image Classification", ICLR 2023; code DongSky/LPT): their Places-LT phase-2 model.

The released file is ``torch.save({"config": vars(args), "state_dict": model.state_dict(),
"val_acc": float})`` of a DataParallel-wrapped ``VPT_ViT``
(``phase2_test/PromptModels_pool_eval/structure.py``): the whole model, its frozen timm-0.5 ViT
included ("I stored the whole model", their README). It is read with ``weights_only=True``
(never a full unpickle) and mapped key by key onto an ``lpt`` phase-2 artifact; a missing,
unknown or misshaped key is refused, and backbone tensors must equal the backbone built here.
The layout and how it maps are in docs/METHOD.md, "The released checkpoint".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lpt_core.models import (
    MethodConfig,
    PromptConfig,
    build_classifier,
    create_backbone,
)
from lpt_core.models.backbone import BackboneUnavailableError, backbone_spec

#: VPT_ViT passes ``norm_layer=nn.LayerNorm`` to timm 0.5's VisionTransformer and its blocks, so
#: every LayerNorm of the released model has torch's default eps 1e-5 (timm's ViT uses 1e-6).
RELEASED_LAYERNORM_EPS = 1e-5
#: top-1 (%) the README reports for the released checkpoint on the Places-LT test split.
RELEASED_REPORTED = {"overall": 50.07123, "many": 49.26718, "medium": 52.30573, "few": 46.88312}
#: the released evaluation's shot groups: few <= 20 training images, accuracy pooled per group.
RELEASED_GROUP_RULE = {"few_includes_20": True, "pooling": "pooled", "counts": "full long-tailed training counts"}
PROMPT_PREFIX = "prompt_learner."
#: released name -> our classifier's name. No transposes and no reordering are needed: the
#: released NormedLinear weight is (D, C) with classes as columns like CosineHead, and the
#: pool is (M, depth-K, L, D) indexed by block - K like GroupPromptPool.
PROMPT_MAP = {
    "prompt_learner.Prompt_Tokens": "shared_prompt.tokens",
    "prompt_learner.Prompt_Tokens_pool": "group_pool.prompts",
    "prompt_learner.Prompt_Keys": "group_pool.keys",
    "prompt_learner.head.weight": "head.weight",
}


def released_backbone_layout(backbone: nn.Module) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the backbone tensors of the released ``VPT_ViT`` (timm 0.5
    VisionTransformer + AdaBlock: no pre-logits, no distillation token, ``head`` an Identity)
    at ``backbone``'s size (embedding dim, depth, patch, MLP width, token count)."""
    d, proj = int(backbone.embed_dim), backbone.patch_embed.proj
    hidden = int(backbone.blocks[0].mlp.fc1.out_features)
    layout: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, int(backbone.patch_embed.num_patches) + 1, d),
        "patch_embed.proj.weight": (d, int(proj.in_channels), *map(int, proj.kernel_size)),
        "patch_embed.proj.bias": (d,),
    }
    shapes = {"norm1.weight": (d,), "norm1.bias": (d,), "attn.qkv.weight": (3 * d, d), "attn.qkv.bias": (3 * d,),
              "attn.proj.weight": (d, d), "attn.proj.bias": (d,), "norm2.weight": (d,), "norm2.bias": (d,),
              "mlp.fc1.weight": (hidden, d), "mlp.fc1.bias": (hidden,), "mlp.fc2.weight": (d, hidden),
              "mlp.fc2.bias": (d,)}  # fmt: skip
    for i in range(len(backbone.blocks)):
        layout.update({f"blocks.{i}.{k}": v for k, v in shapes.items()})
    return layout | {"norm.weight": (d,), "norm.bias": (d,)}


def released_prompt_layout(depth: int, dim: int, num_classes: int, prompt: PromptConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of ``PromptLearner``: shared prompt (depth, L, D), pool (M, depth-K, L, D),
    keys (M, D), cosine head (D, C)."""
    length, pool = prompt.prompt_length, prompt.pool_size
    return {
        "prompt_learner.Prompt_Tokens": (depth, length, dim),
        "prompt_learner.Prompt_Tokens_pool": (pool, depth - prompt.group_start, length, dim),
        "prompt_learner.Prompt_Keys": (pool, dim),
        "prompt_learner.head.weight": (dim, num_classes),
    }


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """A released checkpoint as read: its state dict (DataParallel prefix removed) and provenance."""

    path: Path
    sha256: str
    state: dict[str, torch.Tensor]
    saved_keys: list[str]  # top-level keys of the saved dict; [] for a bare state dict
    module_prefix: bool
    config: dict[str, Any] | None  # the training arguments saved with it, when JSON-safe

    @property
    def has_backbone(self) -> bool:
        """Whether it carries backbone tensors (the released file does: the whole model)."""
        return any(not k.startswith(PROMPT_PREFIX) for k in self.state)


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> ReleasedCheckpoint:
    """Read a checkpoint with ``torch.load(map_location="cpu", weights_only=True)``; accepts the
    released ``{"state_dict": ...}`` wrapper or a bare state dict, with or without ``module.``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"released checkpoint {path} does not exist")
    sha = file_sha256(path)
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- unpickling and zip errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read {path} with torch.load(weights_only=True) (a full unpickle is "
                         f"never done): {first}") from exc  # fmt: skip
    wrapped = isinstance(obj, dict) and "state_dict" in obj
    state = obj["state_dict"] if wrapped else obj
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path} holds no state dict (got {type(state).__name__}); expected {{'state_dict': ...}}")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: state dict entries that are not named tensors: {_names(bad)}")
    prefixed = [k for k in state if k.startswith("module.")]
    if prefixed and len(prefixed) != len(state):
        raise ValueError(f"{path}: only some keys carry DataParallel's 'module.' prefix: {_names(prefixed)}")
    if prefixed:
        state = {k[len("module."):]: v for k, v in state.items()}
    config = obj.get("config") if wrapped else None
    saved = sorted(map(str, obj)) if wrapped else []
    return ReleasedCheckpoint(path, sha, dict(state), saved, bool(prefixed), _json_safe(config))


def _numpy_scalar_globals() -> list[Any]:
    """numpy scalars (e.g. a ``val_acc`` saved as np.float64 next to the state dict): the scalar
    constructor and numeric dtypes, under numpy 2 and numpy 1 names. Values only, no code."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... ({len(keys)} in all)' if len(keys) > limit else ''}]"


def check_layout(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], what: str) -> None:
    """Raise ``ValueError`` naming every missing and unknown key, then every misshaped tensor."""
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    if missing or unknown:
        raise ValueError(f"{what} does not have the released layout: missing keys {_names(missing)}, "
                         f"unknown keys {_names(unknown)}")  # fmt: skip
    wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})" for k in expected
             if tuple(state[k].shape) != tuple(expected[k])]  # fmt: skip
    if wrong:
        raise ValueError(f"{what} has tensors of the wrong shape: {'; '.join(wrong[:6])}")
    not_float = [k for k in expected if not state[k].is_floating_point()]
    if not_float:
        raise ValueError(f"{what} has non-float tensors {_names(not_float)}")


def expected_layout(ckpt: ReleasedCheckpoint, backbone: nn.Module, num_classes: int,
                    prompt: PromptConfig) -> dict[str, tuple[int, ...]]:  # fmt: skip
    """The full released layout for ``backbone`` (prompt keys only for a prompts-only file); the
    backbone built here must itself have exactly the released backbone layout."""
    layout = released_backbone_layout(backbone)
    ours = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    if ours != layout:
        extra, lacking = sorted(set(ours) - set(layout)), sorted(set(layout) - set(ours))
        odd = sorted(k for k in set(ours) & set(layout) if ours[k] != layout[k])
        raise ValueError(f"backbone {backbone_spec(backbone)['name']!r} is not the released ViT layout: "
                         f"extra {_names(extra)}, lacking {_names(lacking)}, other shapes {_names(odd)}")  # fmt: skip
    prompts = released_prompt_layout(len(backbone.blocks), int(backbone.embed_dim), num_classes, prompt)
    return (layout | prompts) if ckpt.has_backbone else prompts


def check_backbone_equal(ckpt: ReleasedCheckpoint, backbone: nn.Module) -> None:
    """Raise unless every backbone tensor of the checkpoint equals ``backbone``'s, bit for bit."""
    ours = backbone.state_dict()
    differ = [k for k in released_backbone_layout(backbone)
              if not torch.equal(ckpt.state[k].to(ours[k].dtype), ours[k].detach().cpu())]  # fmt: skip
    if differ:
        k = differ[0]
        diff = float((ckpt.state[k].double() - ours[k].detach().cpu().double()).abs().max())
        spec = backbone_spec(backbone)
        raise ValueError(
            f"the checkpoint's backbone differs from {spec['name']!r} ({spec['source']}) in {len(differ)} of "
            f"{len(ours)} tensors (first {k}: max |diff| {diff:.3g}); pass the weights it was trained with "
            f"(--backbone-weights PATH) or use the checkpoint's own (--extract-backbone PATH)"
        )


def mapped_state(ckpt: ReleasedCheckpoint) -> dict[str, torch.Tensor]:
    """The prompt, pool, key and head tensors under our classifier's names, float32."""
    return {ours: ckpt.state[theirs].to(torch.float32).contiguous() for theirs, ours in PROMPT_MAP.items()}


def apply_layernorm_eps(module: nn.Module, eps: float) -> int:
    """Set ``eps`` on every LayerNorm of ``module`` (see :func:`lpt_core.artifacts.set_layernorm_eps`)."""
    from lpt_core.artifacts import set_layernorm_eps

    return set_layernorm_eps(module, eps)


# --------------------------------------------------------------------------- class names and counts


@dataclass(frozen=True)
class ClassInfo:
    """Class names and per-class training counts for an imported model, and where they came from."""

    names: list[str]
    counts: list[int]
    source: dict[str, Any]


def read_classes(path: str | Path) -> ClassInfo:
    """Class names and full training counts from a prepared dataset folder (``dataset.json``), a
    ``path label`` split list (``.txt``, e.g. Places_LT_train.txt), a ``.json`` with
    ``class_names`` and ``class_counts``, or a ``.csv`` with columns ``name,count``."""
    path = Path(path)
    if path.is_dir():
        from lpt_core.data.store import group_rule

        meta_path = path / "dataset.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"--classes {path} is a folder without dataset.json (not a prepared dataset)")
        meta = json.loads(meta_path.read_text())
        names, counts = list(meta["class_names"]), group_rule(meta, "released").class_counts.tolist()
        kind, sha = "prepared-dataset", meta.get("content_hashes", {}).get("train")
    elif path.is_file():
        names, counts = _read_class_file(path)
        kind, sha = f"file{path.suffix}", file_sha256(path)
    else:
        raise FileNotFoundError(f"--classes {path} does not exist")
    if len(names) != len(counts) or not names:
        raise ValueError(f"{path}: {len(names)} class names but {len(counts)} counts")
    if min(counts) < 0:
        raise ValueError(f"{path}: negative training counts {[c for c in counts if c < 0]}")
    return ClassInfo(names, [int(c) for c in counts], {"path": str(path), "kind": kind, "sha256": sha})


def _read_class_file(path: Path) -> tuple[list[str], list[int]]:
    if path.suffix == ".txt":
        from lpt_core.data.image_sources import _class_names_from_paths, _read_list

        rels, labels = _read_list(path)
        if not len(labels):
            raise ValueError(f"{path} lists no images")
        names = _class_names_from_paths(rels, labels)
        return names, np.bincount(labels, minlength=len(names)).tolist()
    if path.suffix == ".json":
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not {"class_names", "class_counts"} <= set(doc):
            raise ValueError(f"{path} must be a JSON object with class_names and class_counts")
        return [str(n) for n in doc["class_names"]], [int(c) for c in doc["class_counts"]]
    if path.suffix == ".csv":
        import pandas as pd

        table = pd.read_csv(path)
        if list(table.columns[:2]) != ["name", "count"]:
            raise ValueError(f"{path} must have columns name,count; has {list(table.columns)}")
        return table["name"].astype(str).tolist(), table["count"].astype(int).tolist()
    raise ValueError(f"--classes {path}: expected a prepared dataset folder, a .txt split list, a .json or a .csv")


# --------------------------------------------------------------------------- import and load


def import_released(
    checkpoint: str | Path, out_dir: str | Path, *, backbone: str, classes: str | Path,
    backbone_weights: str | Path | None = None, extract_backbone: str | Path | None = None,
    timm_kwargs: dict[str, Any] | None = None, layernorm_eps: float = RELEASED_LAYERNORM_EPS,
    prompt: PromptConfig | None = None, backbone_model: nn.Module | None = None,
) -> Path:  # fmt: skip
    """Map the released phase-2 ``checkpoint`` onto an ``lpt`` phase-2 artifact in ``out_dir``.

    The backbone is ``backbone_model`` if given, else timm's ``backbone`` built from
    ``backbone_weights`` (or the hub), or from the checkpoint's own tensors written to
    ``extract_backbone`` (a .safetensors file). Everything is checked before anything is written.
    """
    from lpt_core.artifacts import save_artifact

    ckpt, info = read_checkpoint(checkpoint), read_classes(classes)
    prompt = prompt or PromptConfig()
    kwargs = dict(timm_kwargs or {})
    model = backbone_model if backbone_model is not None else _geometry_or_backbone(
        backbone, backbone_weights, extract_backbone, kwargs)  # fmt: skip
    check_layout(ckpt.state, expected_layout(ckpt, model, len(info.names), prompt), f"checkpoint {ckpt.path}")
    if extract_backbone is not None and backbone_model is None:
        model = _extracted_backbone(ckpt, model, backbone, Path(extract_backbone), kwargs)
    if ckpt.has_backbone:
        check_backbone_equal(ckpt, model)
    clf = build_classifier("lpt", model, len(info.names), MethodConfig(prompt=prompt), seed=0)
    clf.set_phase("phase2")
    clf.load_stored_state_dict(mapped_state(ckpt))
    return save_artifact(out_dir, clf, _import_meta(ckpt, info, Path(out_dir), layernorm_eps))


def _geometry_or_backbone(name: str, weights: str | Path | None, extract: str | Path | None,
                          kwargs: dict[str, Any]) -> nn.Module:  # fmt: skip
    """The backbone to check against; with ``extract``, a random build (only its layout is used)."""
    if weights is not None and extract is not None:
        raise ValueError("pass either --backbone-weights or --extract-backbone, not both")
    if extract is not None:
        return create_backbone(name, seed=0, **kwargs)
    try:
        return create_backbone(name, weights=weights, pretrained=weights is None, **kwargs)
    except BackboneUnavailableError as exc:
        raise BackboneUnavailableError(
            f"{exc} For the released checkpoint, --extract-backbone PATH uses the backbone tensors it carries."
        ) from exc


def _extracted_backbone(ckpt: ReleasedCheckpoint, geometry: nn.Module, name: str, path: Path,
                        kwargs: dict[str, Any]) -> nn.Module:  # fmt: skip
    """Write the checkpoint's backbone tensors (timm names) to ``path`` and build the backbone from it."""
    import safetensors.torch

    from lpt_core.fsutil import atomic_file

    if not ckpt.has_backbone:
        raise ValueError(f"--extract-backbone: checkpoint {ckpt.path} carries no backbone tensors")
    tensors = {k: ckpt.state[k].to(torch.float32).contiguous() for k in released_backbone_layout(geometry)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata={"format": "pt", "source_sha256": ckpt.sha256})
    return create_backbone(name, weights=path, **kwargs)


def _import_meta(ckpt: ReleasedCheckpoint, info: ClassInfo, out_dir: Path, eps: float) -> dict[str, Any]:
    provenance = {
        "kind": "released-checkpoint", "sha256": ckpt.sha256, "file": str(ckpt.path),  # as given
        "bytes": ckpt.path.stat().st_size, "saved_keys": ckpt.saved_keys, "module_prefix": ckpt.module_prefix,
        "backbone_in_checkpoint": ckpt.has_backbone,
        "backbone_check": "equal" if ckpt.has_backbone else "not in checkpoint",
        "release": "DongSky/LPT phase2_test/PromptModels_pool_eval (VPT_ViT)", "training_config": ckpt.config,
        "reported_top1": dict(RELEASED_REPORTED), "classes_from": info.source,
    }  # fmt: skip
    return {
        "name": out_dir.name, "class_names": info.names, "class_counts": info.counts,
        "data_version": f"released:{ckpt.sha256[:16]}", "logit_scale": 20.0, "layernorm_eps": float(eps),
        "group_rule": dict(RELEASED_GROUP_RULE), "provenance": provenance,
    }  # fmt: skip


def load_released_artifact(
    art_dir: str | Path, *, backbone: nn.Module | None = None, backbone_weights: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
    """:func:`lpt_core.artifacts.load_artifact` (which sets the LayerNorm eps recorded in meta.json,
    the released model's 1e-5, on the backbone; a given ``backbone`` is changed in place)."""
    from lpt_core.artifacts import load_artifact

    return load_artifact(art_dir, backbone=backbone, backbone_weights=backbone_weights, device=device)


def released_top1(model: nn.Module, meta: dict[str, Any], images: np.ndarray, labels: np.ndarray, *,
                  device: str = "cpu", batch_size: int = 256, amp: str = "off") -> dict[str, float]:  # fmt: skip
    """Top-1 (%) overall / many / medium / few the released way (meta's group rule and counts)."""
    from lpt_core.evaluate import predict
    from lpt_core.metrics import group_accuracy

    rule = meta.get("group_rule", RELEASED_GROUP_RULE)
    logits = predict(model, images, batch_size=batch_size, device=device, amp=amp)
    acc = group_accuracy(np.asarray(logits).argmax(axis=1), labels, np.asarray(meta["class_counts"]),
                         few_includes_20=bool(rule["few_includes_20"]), pooling=str(rule["pooling"]))  # fmt: skip
    return {k: 100.0 * v for k, v in acc.items()}
