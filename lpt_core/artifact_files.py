"""Artifact files without torch: the checksum check and the metadata of an artifact directory.

An artifact (see :mod:`lpt_core.artifacts`) is ``tensors.safetensors`` + ``meta.json`` +
``SHA256SUMS``, and optionally the model's monitoring calibration (``calibration/``, fitted on
data it did not train on; :mod:`lpt_core.monitoring`), listed in ``SHA256SUMS`` like the rest. The service hashes and reads artifacts on every nightly run; keeping this part
free of torch/timm lets a run with nothing new finish in well under a second.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

SCHEMA = "lpt-artifact/1"
TENSORS_FILE = "tensors.safetensors"
META_FILE = "meta.json"
SUMS_FILE = "SHA256SUMS"
CALIBRATION_DIR = "calibration"
CALIBRATION_FILES = (f"{CALIBRATION_DIR}/calibration.json", f"{CALIBRATION_DIR}/calibration.safetensors")
REQUIRED_FILES = (META_FILE, TENSORS_FILE)
RESERVED_KEYS = ("schema", "method", "phase", "method_config", "num_classes", "backbone", "versions", "param_counts")


class ArtifactError(ValueError):
    """An artifact directory is incomplete, corrupted or does not fit the given backbone."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_artifact(art_dir: str | Path) -> str:
    """Check every file against SHA256SUMS; returns the sha256 of SHA256SUMS (the artifact id)."""
    art_dir = Path(art_dir)
    sums_path = art_dir / SUMS_FILE
    if not sums_path.is_file():
        raise ArtifactError(f"{art_dir} is not an artifact: {SUMS_FILE} is missing")
    listed: dict[str, str] = {}
    for line in sums_path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    allowed = ({*REQUIRED_FILES}, {*REQUIRED_FILES, *CALIBRATION_FILES})
    if set(listed) not in allowed:
        raise ArtifactError(f"{sums_path} lists {sorted(listed)}, expected {sorted(REQUIRED_FILES)} "
                            f"(and optionally {list(CALIBRATION_FILES)})")
    for name, expected in listed.items():
        path = art_dir / name
        if not path.is_file():
            raise ArtifactError(f"artifact file {path} is missing")
        found = _sha256_file(path)
        if found != expected:
            raise ArtifactError(f"artifact file {path} is corrupted or edited: sha256 {found}, {SUMS_FILE} says {expected}")
    return hashlib.sha256(sums_path.read_bytes()).hexdigest()


def artifact_sha256(art_dir: str | Path) -> str:
    """The artifact's identity: sha256 of its SHA256SUMS, after verifying every file against it."""
    return verify_artifact(art_dir)


def read_meta(art_dir: str | Path) -> dict[str, Any]:
    """meta.json of a verified artifact."""
    verify_artifact(art_dir)
    return json.loads((Path(art_dir) / META_FILE).read_text(encoding="utf-8"))


def has_calibration(art_dir: str | Path) -> bool:
    """Whether the (verified) artifact carries a monitoring calibration."""
    listed = (Path(art_dir) / SUMS_FILE).read_text(encoding="utf-8")
    return all(f"  {name}\n" in listed for name in CALIBRATION_FILES)
