"""Fixtures of the pipeline tests: a throw-away git + DVC repository running the real dvc.yaml.

The repository's dvc.yaml, params.yaml, profiles/, lpt_core/ and app/ are copied into ``tmp_path``
(outside the project tree); the real params.yaml is then shrunk (tiny sizes, few steps, one
corruption) and pointed at a synthetic Fashion-MNIST in IDX format; a tiny random ViT stands in for
the pretrained backbone (the frozen pretrain stage is never rerun). The ingest stage writes its
store into the repository (``LPT_DB_URL``), so each session starts from an empty one.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 48, "depth": 2, "num_heads": 3}


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def synthetic_fashion_mnist(root: Path, per_class_train: int = 60, per_class_test: int = 12, seed: int = 0) -> Path:
    """Ten classes of 28x28 images with a class-dependent bright square (learnable, distinct images)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for prefix, per_class in (("train", per_class_train), ("t10k", per_class_test)):
        labels = np.repeat(np.arange(10), per_class)
        images = rng.integers(0, 60, size=(len(labels), 28, 28)).astype(np.uint8)
        for i, y in enumerate(labels):
            r, c = divmod(int(y), 5)
            images[i, 2 + 12 * r : 12 + 12 * r, 1 + 5 * c : 6 + 5 * c] = 220
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return root


def shrink_params(params: dict[str, Any], data_root: Path) -> dict[str, Any]:
    """The real params, shrunk to seconds: tiny data, one corruption, 2 epochs of 2 steps, tiny ViT."""
    p = dict(params)
    p["paths"] = {**p["paths"], "fashion_mnist": str(data_root), "target_raw": str(data_root)}
    p["prepare"] = {**p["prepare"], "n_max": 40, "rho": 10, "test_per_class": 10}
    p["shifts"] = {**p["shifts"], "corruptions": ["gaussian_noise"], "severities": [3], "size": 30}
    p["pretrain"] = {**p["pretrain"], **{k: v for k, v in TINY_VIT.items()}}
    recipe = dict(p["recipe"])
    recipe["model"] = {**recipe["model"], "prompt": {**recipe["model"]["prompt"], "group_start": 1, "pool_size": 4,
                                                     "prompt_length": 2}}
    recipe["train"] = {**recipe["train"], "epochs": 2, "batch_size": 8, "max_steps_per_epoch": 2, "per_class": 2,
                       "progress": False}
    p["recipe"] = recipe
    p["baselines"] = {**p["baselines"], "max_iter": 20}
    return p


def run(cmd: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd``; a failure shows its output."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(cwd), OMP_NUM_THREADS="2",
               LPT_DB_URL=f"sqlite:///{cwd / 'lpt_store.db'}")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC repository with the real pipeline files, shrunk params and a tiny backbone."""
    from lpt_core.config import from_mapping
    from lpt_core.pretrain import PretrainConfig, save_random_backbone

    repo = tmp_path_factory.mktemp("pipeline") / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    for package in ("lpt_core", "app", "profiles"):
        shutil.copytree(ROOT / package, repo / package, ignore=shutil.ignore_patterns("__pycache__"))
    data_root = synthetic_fashion_mnist(repo.parent / "fashion-mnist")
    params = shrink_params(yaml.safe_load((ROOT / "params.yaml").read_text()), data_root)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    save_random_backbone(from_mapping(PretrainConfig, params["pretrain"]), repo / "models" / "backbone")
    (repo / ".gitignore").write_text("__pycache__/\n/runs/\n/lpt_store.db*\n")
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    run(["dvc", "commit", "-f", "pretrain"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], repo)
    return repo


@pytest.fixture(scope="session")
def repro(pipeline_repo: Path) -> subprocess.CompletedProcess:
    """``dvc repro`` of the whole shrunk pipeline, once per session."""
    return run(["dvc", "repro"], pipeline_repo, timeout=1200)  # ~2-3 min on an idle 2-core CI box


@pytest.fixture()
def sh(pipeline_repo: Path):  # noqa: ANN201 - returns a callable
    """Run a command in the pipeline repository (asserting success); returns the completed process."""
    return lambda *cmd, timeout=240: run(list(cmd), pipeline_repo, timeout=timeout)
