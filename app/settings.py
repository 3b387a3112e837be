"""Service settings, read from environment variables (``LPT_*``) into one frozen dataclass.

There is no global settings object: call :func:`load_settings` (or ``Settings.from_env``) at the
edge (CLI, scheduler, dashboard) and pass the values down explicitly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DB_URL = "sqlite:///lpt_store.db"
EXECUTORS = ("local", "ray")  # where the nightly job evaluates its pairs (app.executors)


@dataclass(frozen=True)
class Settings:
    """Every knob of the service; each field maps to the env variable ``LPT_<FIELD>`` (upper case)."""

    db_url: str = DEFAULT_DB_URL
    reports_dir: str = "reports"
    shifts_dir: str = "data/shifts"
    incoming_dir: str = "data/incoming"
    models_dir: str = "models"
    results_dir: str = "results"
    prepared_dir: str = "data/prepared/target"  # the pipeline's prepared target dataset (dvc.yaml)
    schedule_time: str = "02:30"
    schedule_tz: str = "UTC"
    code_version: str = ""
    eval_device: str = "auto"  # CUDA when present
    eval_batch_size: int = 256
    eval_amp: str = "auto"  # bf16 autocast on CUDA; "off": fp32 everywhere
    eval_few_includes_20: str = "auto"  # auto: the artifact's shot-group rule; true | false
    backbone_weights: str = ""
    eval_reuse: int = 1  # 1: a worker keeps backbones, artifacts and the batch across pairs; 0: loads per pair
    eval_compile: str = "off"  # on: torch.compile the forward (one graph per architecture and batch shape)
    executor: str = "local"  # local: in the job's process; ray: Ray actors (RAY_ADDRESS, else a local Ray)
    executor_workers: int = 0  # ray: actors (0: one per GPU of the cluster, else one per worker_cpus CPUs)
    executor_worker_cpus: int = 1  # ray: CPUs per CPU actor (its torch threads)
    gate_recent_batches: int = 5
    gate_min_gain: float = 0.0
    gate_max_clean_drop: float = 0.01
    alert_alpha: float = 0.05
    estimate_drop_margin: float = 0.05  # an estimated top-1 this far below clean raises estimated_drop
    lock_path: str = ""
    use_dvc: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``env`` (default ``os.environ``); unset variables keep their defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = f"LPT_{f.name.upper()}"
            if key in env:
                values[f.name] = _parse(f.name, f.type, env[key], key)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting whose value is out of range."""
        hour, minute = self.schedule_hour_minute
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError(f"LPT_SCHEDULE_TIME must be HH:MM within a day, got {self.schedule_time!r}")
        if self.eval_batch_size < 1:
            raise ValueError(f"LPT_EVAL_BATCH_SIZE must be >= 1, got {self.eval_batch_size}")
        if self.eval_amp not in ("auto", "bf16", "off"):
            raise ValueError(f"LPT_EVAL_AMP must be auto, bf16 or off, got {self.eval_amp!r}")
        if self.eval_few_includes_20 not in ("auto", "true", "false"):
            raise ValueError(f"LPT_EVAL_FEW_INCLUDES_20 must be auto, true or false, got {self.eval_few_includes_20!r}")
        if self.eval_reuse not in (0, 1):
            raise ValueError(f"LPT_EVAL_REUSE must be 0 or 1, got {self.eval_reuse}")
        if self.eval_compile not in ("off", "on"):
            raise ValueError(f"LPT_EVAL_COMPILE must be off or on, got {self.eval_compile!r}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"LPT_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.executor_workers < 0 or self.executor_worker_cpus < 1:
            raise ValueError(f"LPT_EXECUTOR_WORKERS must be >= 0 and LPT_EXECUTOR_WORKER_CPUS >= 1, got "
                             f"{self.executor_workers} and {self.executor_worker_cpus}")
        if self.gate_recent_batches < 1:
            raise ValueError(f"LPT_GATE_RECENT_BATCHES must be >= 1, got {self.gate_recent_batches}")
        if not 0.0 < self.alert_alpha < 1.0:
            raise ValueError(f"LPT_ALERT_ALPHA must be in (0, 1), got {self.alert_alpha}")
        if not 0.0 <= self.estimate_drop_margin < 1.0:
            raise ValueError(f"LPT_ESTIMATE_DROP_MARGIN must be in [0, 1), got {self.estimate_drop_margin}")
        if self.gate_max_clean_drop < 0.0:
            raise ValueError(f"LPT_GATE_MAX_CLEAN_DROP must be >= 0, got {self.gate_max_clean_drop}")

    @property
    def schedule_hour_minute(self) -> tuple[int, int]:
        """``schedule_time`` parsed as (hour, minute)."""
        parts = self.schedule_time.split(":")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"LPT_SCHEDULE_TIME must look like HH:MM, got {self.schedule_time!r}")
        return int(parts[0]), int(parts[1])

    @property
    def resolved_code_version(self) -> str:
        """``code_version`` if set, else :func:`default_code_version` (lpt_core's version plus a hash of its sources)."""
        return self.code_version or default_code_version()

    @property
    def resolved_lock_path(self) -> Path:
        """The job lock file: ``lock_path`` if set, else next to the SQLite file or in reports_dir."""
        if self.lock_path:
            return Path(self.lock_path)
        if self.db_url.startswith("sqlite:///") and self.db_url != "sqlite:///:memory:":
            return Path(self.db_url[len("sqlite:///"):] + ".job.lock")
        return Path(self.reports_dir) / ".lpt_job.lock"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (tests and the CLI use it for overrides)."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new


def load_settings() -> Settings:
    """The settings of this process, from its environment."""
    return Settings.from_env()


def _parse(name: str, type_name: Any, raw: str, key: str) -> Any:
    """Convert one env string to the field's type, naming the variable on failure."""
    type_name = type_name if isinstance(type_name, str) else type_name.__name__
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"{key} must be a {type_name}, got {raw!r}") from None
    return raw


def default_code_version() -> str:
    """The code version results are keyed by (:func:`lpt_core.version.code_version`)."""
    from lpt_core.version import code_version

    return code_version()
