"""Test doubles and tiny on-disk fixtures for the service tests (also run as a script by the
process-level reliability tests: ``python app_fakes.py run-job <db_url> <root> [sleep_on]``)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

N_IMAGES = 1000


def tree_sha256(path: Path) -> str:
    """A deterministic hash of every file under ``path`` (stands in for artifact_sha256)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def make_artifact(root: Path, name: str, method: str) -> Path:
    """A minimal artifact directory (meta.json + a payload file)."""
    d = Path(root) / name
    d.mkdir(parents=True, exist_ok=True)
    stored = {"lpt": 1200, "vpt": 900, "linear": 480, "full_ft": 50000}[method]
    meta = {"method": method, "backbone": {"name": "vit_tiny_test", "fingerprint": "f" * 64},
            "param_counts": {"trainable": stored, "stored": stored}, "data_version": "md5:abc",
            "class_counts": [500, 100, 10], "created_at": "2026-11-01T00:00:00Z"}
    (d / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    (d / "tensors.bin").write_bytes(name.encode() * 10)
    return d


def make_batch(root: Path, batch_id: str, corruption: str = "gaussian_noise", severity: int = 3,
               kind: str = "generated", success: bool = True, size: int = N_IMAGES) -> Path:
    """A minimal shift batch directory (batch.json only; fake evaluators never read arrays)."""
    d = Path(root) / batch_id
    d.mkdir(parents=True, exist_ok=True)
    meta = {"schema": "lpt-shift-batch/1", "id": batch_id, "kind": kind, "source": "test", "dataset": "tiny",
            "corruption": corruption, "severity": severity, "size": size,
            "content_hash": hashlib.sha256(batch_id.encode()).hexdigest(),
            "created_at": datetime.now(timezone.utc).isoformat(),
            "validation": {"success": success, "result_path": "validation.json"}}
    (d / "batch.json").write_text(json.dumps(meta), encoding="utf-8")
    return d


def fake_accuracy(model: str, batch: str) -> float:
    """A deterministic accuracy in [0.3, 0.9] per (model, batch)."""
    return 0.3 + 0.6 * (zlib.crc32(f"{model}|{batch}".encode()) % 1000) / 1000


class FakeEvaluator:
    """Returns a Result dict with deterministic metrics; can sleep or fail on chosen pairs."""

    def __init__(self, accuracy: dict[tuple[str, str], float] | None = None, sleep_on: str | None = None,
                 fail_on: str | None = None, sleep_s: float = 60.0, kill_on: str | None = None,
                 kill_marker: Path | None = None) -> None:
        self.accuracy = accuracy or {}
        self.sleep_on, self.fail_on, self.sleep_s = sleep_on, fail_on, sleep_s
        self.kill_on, self.kill_marker = kill_on, kill_marker  # SIGKILL this process once (marker file)
        self.calls: list[tuple[str, str]] = []

    def __call__(self, spec: Any) -> dict[str, Any]:
        self.calls.append((spec.model_name, spec.batch_id))
        if self.kill_on == spec.batch_id and self.kill_marker is not None and not self.kill_marker.exists():
            self.kill_marker.write_text(f"{spec.model_name} {spec.batch_id}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        if self.sleep_on == spec.batch_id:
            print("SLEEPING", flush=True)
            time.sleep(self.sleep_s)
        if self.fail_on == spec.batch_id:
            raise RuntimeError(f"injected failure on {spec.batch_id}")
        acc = self.accuracy.get((spec.model_name, spec.batch_id), fake_accuracy(spec.model_name, spec.batch_id))
        return result_dict(spec, acc)


def result_dict(spec: Any, acc: float, n: int = N_IMAGES) -> dict[str, Any]:
    """A Result file dict for ``spec`` with top-1 ``acc`` overall and per shot group."""
    metrics = [{"name": "top1", "group": g, "value": acc, "ci_low": acc - 0.03, "ci_high": acc + 0.03, "n": n}
               for g in ("overall", "many", "medium", "few")]
    metrics.append({"name": "error", "group": "overall", "value": 1 - acc, "ci_low": None, "ci_high": None, "n": n})
    return {"schema": "lpt-result/1",
            "model": {"name": spec.model_name, "method": spec.method, "artifact": spec.artifact_path,
                      "artifact_sha256": spec.artifact_sha256},
            "shift": {"id": spec.batch_id}, "metrics": metrics,
            "per_class": {"class_ids": [0, 1, 2], "train_counts": [500, 100, 10], "accuracy": [acc] * 3,
                          "n": [n // 3] * 3},
            "eval_seconds": 0.01, "images_per_second": 1e5, "device": "cpu",
            "code_version": spec.code_version, "created_at": datetime.now(timezone.utc).isoformat()}


def settings_for(db_url: str, root: Path, code_version: str = "test-1") -> Any:
    """Service settings rooted in a temporary folder."""
    from app.settings import Settings

    return Settings(db_url=db_url, reports_dir=str(root / "reports"), shifts_dir=str(root / "shifts"),
                    incoming_dir=str(root / "incoming"), models_dir=str(root / "models"),
                    prepared_dir=str(root / "prepared"), code_version=code_version,
                    lock_path=str(root / "job.lock"))


def main(argv: list[str]) -> int:
    """``run-job DB_URL ROOT [SLEEP_ON]``: run the job once with the fake evaluator."""
    from app.jobs import JobLockedError, run_job

    _, db_url, root, *rest = argv
    evaluator = FakeEvaluator(sleep_on=rest[0] if rest else None)
    try:
        summary = run_job(settings_for(db_url, Path(root)), evaluator=evaluator, hasher=tree_sha256)
    except JobLockedError as exc:
        print(f"REFUSED {exc}", flush=True)
        return 3
    print(f"DONE {summary.pairs_evaluated}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
