"""Frozen backbones shared by every artifact one evaluation worker loads.

LPT (Dong et al., ICLR 2023), VPT and the linear probe train prompts, keys and a head on a
frozen ViT: tens of prompt sets share one backbone. A worker builds each backbone once, moves it
to its device, fingerprints it once (:func:`lpt_core.models.backbone.pin_fingerprint`) and lends
it to :func:`lpt_core.artifacts.load_artifact`, which then loads only the artifact's own tensors
and still checks the recorded fingerprint against the pinned one.

:func:`backbone_key` is torch-free: the service groups a night's pairs by it before any worker
starts.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

#: methods whose backbone is frozen, so one loaded copy serves every artifact on it
SHARING_METHODS = ("lpt", "vpt", "linear")


def backbone_key(meta: Mapping[str, Any], backbone_weights: str | Path | None = None) -> str:
    """The identity of the backbone an artifact's ``meta.json`` runs on (a JSON string): what
    rebuilds it (name, source, seed, timm kwargs, a weights override), its recorded fingerprint and
    the LayerNorm eps the artifact sets. Artifacts with equal keys can share one loaded backbone."""
    spec = meta.get("backbone") or {}
    spec = spec if isinstance(spec, Mapping) else {"name": str(spec)}
    return json.dumps({
        "name": spec.get("name"), "source": spec.get("source"), "seed": spec.get("seed"),
        "timm_kwargs": spec.get("timm_kwargs"), "fingerprint": spec.get("fingerprint"),
        "weights": None if backbone_weights is None else str(backbone_weights),
        "layernorm_eps": meta.get("layernorm_eps"),
    }, sort_keys=True, default=str)


class BackbonePool:
    """Backbones built once per worker, on ``device``, at most ``capacity`` held (least recently
    used dropped first). ``builds`` and ``fingerprints`` count the work done (tests read them)."""

    def __init__(self, device: str, capacity: int = 4) -> None:
        if capacity < 1:
            raise ValueError(f"backbone pool capacity must be >= 1, got {capacity}")
        self.device, self.capacity = device, int(capacity)
        self._held: OrderedDict[str, nn.Module] = OrderedDict()
        self._failed: dict[str, Exception] = {}
        self.builds = 0
        self.fingerprints = 0

    def lend(self, meta: Mapping[str, Any], backbone_weights: str | Path | None = None) -> nn.Module | None:
        """The shared backbone for an artifact with this ``meta``, or None where the artifact
        brings its own weights (full fine-tuning: it gets a held base to copy, if one is held,
        instead of a random init; it never causes a build)."""
        key = backbone_key(meta, backbone_weights)
        if meta.get("method") not in SHARING_METHODS:
            return self._held.get(key)
        return self.get(key, meta["backbone"], backbone_weights)

    def get(self, key: str, spec: Mapping[str, Any], backbone_weights: str | Path | None = None) -> nn.Module:
        """The backbone of ``key``, built from ``spec`` (an artifact's meta ``backbone``) on first use.

        A build that failed raises the same error again for the rest of the worker's life
        (``BackboneUnavailableError`` does not heal within a night).
        """
        if key in self._held:
            self._held.move_to_end(key)
            return self._held[key]
        if key in self._failed:
            raise self._failed[key]
        try:
            model = self._build(spec, backbone_weights)
        except Exception as exc:
            self._failed[key] = exc
            raise
        self._held[key] = model
        while len(self._held) > self.capacity:
            self._held.popitem(last=False)
        return model

    def _build(self, spec: Mapping[str, Any], backbone_weights: str | Path | None) -> nn.Module:
        from lpt_core.artifacts import rebuild_backbone
        from lpt_core.models.backbone import pin_fingerprint

        model = rebuild_backbone(dict(spec), backbone_weights).to(self.device).eval()
        self.builds += 1
        pin_fingerprint(model)
        self.fingerprints += 1
        return model

    def clear(self) -> None:
        """Drop every held backbone and remembered failure."""
        self._held.clear()
        self._failed.clear()

    def __len__(self) -> int:
        return len(self._held)
