"""Real tiny artifacts and shift batches for tests that run the real evaluator (torch imported
on use): LPT / VPT / linear prompt sets on shared seeded backbones, full fine-tuning from the
same base, and stored batches in the lpt-shift-batch/1 layout."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3)
COUNTS = [40, 24, 14, 8, 5, 3]


def save_tiny_artifact(root: Path, name: str, method: str, *, backbone_seed: int = 0, seed: int = 0) -> Path:
    """One artifact of ``method`` on the seeded tiny backbone ``backbone_seed``, its own tensors
    drawn from ``seed``."""
    import torch

    from lpt_core.artifacts import save_artifact
    from lpt_core.models import MethodConfig, PromptConfig, build_classifier, create_backbone

    cfg = MethodConfig(prompt=PromptConfig(prompt_length=3, pool_size=5, top_k=2, group_start=2))
    backbone = create_backbone("vit_tiny_patch16_224", pretrained=False, seed=backbone_seed, **TINY)
    model = build_classifier(method, backbone, len(COUNTS), cfg, seed=seed)
    model.set_phase(model.phases[-1])
    if method == "full_ft":  # a trained backbone: weights differ from the base
        with torch.no_grad():
            model.backbone.blocks[0].mlp.fc1.weight.add_(0.01 * (seed + 1))
    return save_artifact(Path(root) / name, model.eval(), {
        "class_names": [f"c{i}" for i in range(len(COUNTS))], "class_counts": COUNTS, "data_version": "test"})


def save_tiny_batch(root: Path, batch_id: str, size: int = 24, seed: int = 0, severity: int = 2) -> Path:
    """A stored, validated-looking shift batch of ``size`` random 32 px images and labels."""
    from lpt_core.validation import batch_content_hash

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, len(COUNTS), size).astype(np.int64)
    d = Path(root) / batch_id
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "images.npy", images)
    np.save(d / "labels.npy", labels)
    meta = {"schema": "lpt-shift-batch/1", "id": batch_id, "kind": "generated", "source": "test",
            "dataset": "tiny-lt", "corruption": "gaussian_noise", "severity": severity, "size": size,
            "content_hash": batch_content_hash(images, labels), "created_at": datetime.now(timezone.utc).isoformat(),
            "validation": {"success": True, "result_path": "validation.json"}}
    (d / "batch.json").write_text(json.dumps(meta), encoding="utf-8")
    return d


def metric_values(engine: object) -> dict[tuple[str, str, str, str], float]:
    """Every metric of every succeeded run: (model, batch, name, group) -> value."""
    from app.db import repository as repo
    from app.db.session import session_scope

    names = ("top1", "error", "macro_f1", "nll", "ece")
    groups = ("overall", "many", "medium", "few", *(f"class:{i}" for i in range(len(COUNTS))))
    with session_scope(engine) as s:
        return {(r.model, r.batch_id, r.name, r.grp): r.value for r in repo.scores(s, names=names, groups=groups)}


#: (name, method, backbone seed): three prompt sets and a probe on backbone 0, full fine-tuning
#: from backbone 0, one prompt set on backbone 1
MODELS = [("lpt_a", "lpt", 0), ("lpt_b", "lpt", 0), ("vpt_a", "vpt", 0), ("linear_a", "linear", 0),
          ("ft_a", "full_ft", 0), ("lpt_other", "lpt", 1)]
BATCHES = 3


def build_world(root: Path) -> Path:
    """Artifacts under ``root/models`` and batches under ``root/shifts``."""
    for i, (name, method, bseed) in enumerate(MODELS):
        save_tiny_artifact(root / "models", name, method, backbone_seed=bseed, seed=i)
    for j in range(BATCHES):
        save_tiny_batch(root / "shifts", f"b{j:02d}", seed=j)
    return root


def night(world: Path, root: Path, db_url: str | None = None, **changes: object) -> tuple[object, object]:
    """A store on ``db_url`` (default SQLite in ``root``) with the world's models, and one job."""
    from app_fakes import settings_for

    from app.db.session import init_db, make_engine
    from app.ingest import ingest
    from app.jobs import run_job

    engine = make_engine(db_url or f"sqlite:///{root / 'store.db'}")
    init_db(engine)
    settings = settings_for(str(engine.url.render_as_string(hide_password=False)), root).replace(
        shifts_dir=str(world / "shifts"), eval_device="cpu", use_dvc=0, **changes)
    ingest(engine, results_dir=None, models_dir=world / "models", shift_dirs=[])
    return run_job(settings, engine=engine), engine
