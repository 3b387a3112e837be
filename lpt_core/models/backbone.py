"""Frozen timm Vision Transformer backbones for LPT (Dong et al., ICLR 2023).

The backbone is built by ``timm.create_model`` and never forked: the prompted model calls it at
its seams (``patch_embed``, ``_pos_embed``, ``patch_drop``, ``norm_pre``, ``blocks``, ``norm``,
``forward_head``). Weights come from timm's hub, from a local file loaded through timm, or from
a seeded random initialisation (tests, quickstart), and the source is recorded on the model so
an artifact can rebuild it.
"""

from __future__ import annotations

import difflib
import hashlib
import sys
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

SPEC_ATTR = "lpt_backbone_spec"


class BackboneUnavailableError(RuntimeError):
    """The requested backbone weights cannot be obtained (offline, missing file)."""


def _unavailable_message(name: str, reason: str) -> str:
    return (
        f"backbone {name!r} weights are unavailable ({reason}). Options: pass a local weights file "
        "with --backbone-weights PATH (weights=PATH; for training, `python -m lpt_core.pipeline.import_backbone "
        "--name NAME --weights PATH --out DIR` and paths.backbone: DIR); or set HF_HUB_OFFLINE=0 on a machine "
        "with internet so timm can download them; or set `pretrained: false` for a random init."
    )


def create_backbone(
    name: str,
    *,
    weights: str | Path | None = None,
    pretrained: bool = False,
    img_size: int | None = None,
    seed: int | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """Build the timm ViT ``name`` without classifier (``num_classes=0``), frozen and in eval mode.

    ``weights`` (a local .safetensors/.pth/.bin/.npz file) wins over ``pretrained`` (timm hub).
    With neither, the init is random; ``seed`` makes it reproducible. The build recipe is stored
    on the model as ``model.lpt_backbone_spec`` (name, weights source, seed, timm kwargs).
    Raises ``ValueError`` for an unknown model and ``BackboneUnavailableError`` when weights
    cannot be obtained.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=8, cutoff=0.6)
        hint = f"similar names: {', '.join(close)}" if close else "see timm.list_models('vit_*')"
        raise ValueError(f"unknown timm model {name!r}; {hint}")
    if "num_classes" in timm_kwargs and timm_kwargs["num_classes"] != 0:
        raise ValueError(f"backbones are built without classifier; got num_classes={timm_kwargs['num_classes']}")
    kwargs = dict(timm_kwargs, num_classes=0)
    if img_size is not None:
        kwargs["img_size"] = int(img_size)
    if weights is not None:
        model = _build_random(name, kwargs, seed)
        _load_local_weights(model, name, Path(weights))
        source = f"file:{Path(weights)}"  # as given: an absolute path would differ on every clone
    elif pretrained:
        model = _build_from_hub(name, kwargs)
        source = "hub"
    else:
        model = _build_random(name, kwargs, seed)
        source = "random"
    _check_vit(model, name)
    model.requires_grad_(False)
    model.eval()
    spec = {"name": name, "source": source, "seed": seed, "timm_kwargs": kwargs}
    setattr(model, SPEC_ATTR, spec)
    return model


def backbone_spec(model: nn.Module) -> dict[str, Any]:
    """The build recipe recorded by :func:`create_backbone`; raises if the model has none."""
    spec = getattr(model, SPEC_ATTR, None)
    if spec is None:
        raise ValueError("backbone was not built by lpt_core.models.create_backbone (no build spec)")
    return dict(spec)


def _build_random(name: str, kwargs: dict[str, Any], seed: int | None) -> nn.Module:
    """Random init; with a seed, under a forked RNG so the global RNG state is untouched."""
    if seed is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return timm.create_model(name, pretrained=False, **kwargs)


def _build_from_hub(name: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:  # hub errors subclass these
        raise BackboneUnavailableError(_unavailable_message(name, f"{type(exc).__name__}: {exc}")) from exc


def _load_local_weights(model: nn.Module, name: str, path: Path) -> None:
    """Load ``path`` strictly through timm's loaders (classifier keys dropped, pos-embed resized)."""
    if not path.is_file():
        raise BackboneUnavailableError(_unavailable_message(name, f"weights file {path} does not exist"))
    if path.suffix == ".npz":  # big_vision / augreg JAX checkpoints
        model.load_pretrained(str(path))
        return
    state = timm.models.load_state_dict(str(path))
    classifier = model.pretrained_cfg.get("classifier") or "head"
    prefixes = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    state = {k: v for k, v in state.items() if not k.startswith(tuple(p + "." for p in prefixes))}
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights file {path} does not match backbone {name!r}: missing keys {list(missing)[:8]}, "
            f"unexpected keys {list(unexpected)[:8]}"
        )


def _check_vit(model: nn.Module, name: str) -> None:
    needed = ("patch_embed", "_pos_embed", "patch_drop", "norm_pre", "blocks", "norm", "forward_head")
    lacking = [attr for attr in needed if not hasattr(model, attr)]
    if lacking:
        raise ValueError(f"timm model {name!r} is not a VisionTransformer-like model (lacks {lacking})")


def backbone_fingerprint(model: nn.Module) -> str:
    """sha256 over the sorted state dict: each entry's name, shape, dtype and raw bytes."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        if tensor.device.type == "meta":
            raise ValueError(f"cannot fingerprint a meta-device backbone (tensor {key!r})")
        t = tensor.detach().to("cpu").contiguous()
        digest.update(key.encode())
        digest.update(repr((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


PIN_ATTR = "lpt_pinned_fingerprint"


def _state_token(model: nn.Module) -> tuple:
    """Where each state tensor lives and how often it was written in place (cheap: no bytes read)."""
    return tuple((k, t.device.type, t.device.index, t.data_ptr(), t._version, tuple(t.shape), t.dtype)
                 for k, t in sorted(model.state_dict().items()))


def pin_fingerprint(model: nn.Module) -> str:
    """Compute ``model``'s fingerprint once and pin it: :func:`known_fingerprint` returns it
    without rehashing while every state tensor keeps its storage and version counter.

    For frozen backbones shared by many artifacts in one evaluation worker
    (:mod:`lpt_core.backbone_pool`). An in-place write through torch (``copy_``, ``add_``, an
    optimizer step, ``load_state_dict``) bumps a version counter and a ``.to()`` replaces the
    storage, so either unpins; writes that torch cannot see (through ``.data`` or a numpy view)
    are not detected, which is why only evaluation workers pin.
    """
    digest = backbone_fingerprint(model)
    setattr(model, PIN_ATTR, (_state_token(model), digest))
    return digest


def known_fingerprint(model: nn.Module) -> str:
    """The pinned fingerprint while the state is untouched since :func:`pin_fingerprint`, else
    :func:`backbone_fingerprint` (computed afresh; a stale pin is dropped)."""
    pinned = getattr(model, PIN_ATTR, None)
    if pinned is not None:
        if pinned[0] == _state_token(model):
            return pinned[1]
        delattr(model, PIN_ATTR)
    return backbone_fingerprint(model)


def embed_tokens(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Image (B,3,S,S) -> token sequence fed to the first block (timm's own pre-block steps)."""
    x = model.patch_embed(x)
    x = model._pos_embed(x)
    x = model.patch_drop(x)
    return model.norm_pre(x)


def _append_prompt(x: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
    """``x`` (B,N,D) with ``prompt`` (L,D) or (B,L,D) appended after its tokens."""
    if prompt is None:
        return x
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(0)
    return torch.cat([x, prompt.expand(x.shape[0], -1, -1).to(x.dtype)], dim=1)


def run_block(block: nn.Module, x: torch.Tensor, prompt: torch.Tensor | None, whole: bool = False) -> torch.Tensor:
    """One block with ``prompt`` (L,D) or (B,L,D) appended after the tokens and dropped after it.

    The prompt tokens' own outputs are dropped, so where :func:`rows_only_supported` holds they
    contribute keys and values only: their query, attention output, projection and MLP are not
    computed (:func:`run_block_rows`). ``whole=True`` runs timm's whole block on every token
    instead, as the released code does (the naive reference of tests and FLOP counts).
    """
    if prompt is None:
        return block(x)
    n = x.shape[1]
    if not whole and rows_only_supported(block):
        return run_block_rows(block, _append_prompt(x, prompt), n)
    return block(_append_prompt(x, prompt))[:, :n]


def rows_only_supported(block: nn.Module) -> bool:
    """Whether :func:`run_block_rows` may replace ``block``: timm's plain ``Block`` with its plain
    ``Attention``, in eval mode (the frozen backbone of every prompt method). Anything else takes
    the whole-block path, so a timm change can cost speed but never correctness.
    """
    attn = getattr(block, "attn", None)
    return (
        type(block) is timm.models.vision_transformer.Block
        and type(attn) is timm.layers.Attention
        and not block.training
    )


def cls_only_supported(model: nn.Module, block: nn.Module) -> bool:
    """Whether :func:`run_block_cls` may replace ``block`` for ``model``'s class-token feature:
    :func:`rows_only_supported`, and a model that pools the class token (not avg or attention
    pooling).
    """
    return (
        rows_only_supported(block)
        and getattr(model, "global_pool", None) == "token"
        and getattr(model, "attn_pool", None) is None
        and getattr(model, "num_prefix_tokens", 0) >= 1
    )


def run_block_cls(block: nn.Module, x: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
    """``run_block(block, x, prompt)[:, :1]``, computing only what the class token needs (the last
    query block: the other tokens' outputs are discarded). Call it where :func:`cls_only_supported`.
    """
    return run_block_rows(block, _append_prompt(x, prompt), 1)


def run_block_rows(block: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """``block(x)[:, :n]``, computing outputs for the first ``n`` tokens only.

    Every token of ``x`` gives keys and values; the query projection, attention output,
    projection and MLP run for the first ``n``. Composes the block's own sub-modules in timm's
    order (parity with the whole block is tested); call it where :func:`rows_only_supported`.
    """
    attn = block.attn
    h = block.norm1(x)
    b, total, _ = h.shape
    dim_q = attn.num_heads * attn.head_dim
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(h[:, :n], weight[:dim_q], None if bias is None else bias[:dim_q])
    kv = F.linear(h, weight[dim_q:], None if bias is None else bias[dim_q:])
    q = attn.q_norm(q.reshape(b, n, attn.num_heads, attn.head_dim).transpose(1, 2))
    k, v = kv.reshape(b, total, 2, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, attn.k_norm(k), v)
    out = attn.norm(out.transpose(1, 2).reshape(b, n, dim_q))
    if getattr(attn, "gate", None) is not None:
        out = out * attn.gate(h[:, :n]).sigmoid()
    rows = x[:, :n] + block.drop_path1(block.ls1(attn.proj_drop(attn.proj(out))))
    return rows + block.drop_path2(block.ls2(block.mlp(block.norm2(rows))))


def pooled_feature(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Final norm then timm's pooling (the cls token for ViT) -> feature (B, D)."""
    return model.forward_head(model.norm(x), pre_logits=True)
