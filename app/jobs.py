"""The nightly job: discover new shift batches, evaluate every (model, batch) pair not yet
evaluated by this code version, then run the deployment gate, write the report and raise alerts.

Reliability rules (tested in tests/app/test_jobs_reliability.py):
- one job at a time across processes (a file lock next to the SQLite file, a PostgreSQL advisory
  lock on PostgreSQL); a second job is refused and recorded as ``skipped``;
- each pair has its own transactions: its eval run is committed as ``running`` first, then marked
  ``succeeded`` in the same transaction as its metrics, or ``failed`` with the error; a process
  killed mid-pair leaves a ``running`` row that the next job marks failed and retries;
- the model artifact's sha256 is verified before evaluating: missing or tampered is a failed run.
Pairs are grouped into work units (``app.units``: one backbone family, batch by batch) and run by
an executor (``app.executors``: in this process, or on Ray actors); whichever runs them, this
process alone writes the store, pair by pair, through :class:`PairRecorder`.
Heavy imports (torch, timm, great_expectations, ray) happen only inside the evaluator, the
executor and batch intake.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from app.db import repository as repo
from app.db.schema import ModelVersion, ShiftBatch, utcnow
from app.db.session import init_db, make_engine, session_scope
from app.ingest import Hasher, default_hasher
from app.intake import discover_batches
from app.settings import Settings
from lpt_core.fsutil import atomic_file

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class PairSpec:
    """What an evaluator needs to evaluate one model version on one shift batch."""

    model_name: str
    method: str
    artifact_path: str
    artifact_sha256: str
    batch_id: str
    batch_path: str
    batch_kind: str
    dataset: str
    corruption: str
    severity: int
    size: int
    content_hash: str
    dvc_hash: str | None
    code_version: str
    model_version: int = 1
    labels_hash: str = ""  # the batch's late label set ("" for none): part of the eval run's key


Evaluator = Callable[[PairSpec], Mapping[str, Any]]


class JobLockedError(RuntimeError):
    """Another job holds the job lock."""


class ArtifactError(RuntimeError):
    """A model artifact is missing or does not hash to its registered sha256."""


@dataclass
class JobSummary:
    """The outcome of one job run."""

    job_run_id: int
    status: str
    batches_added: list[str] = field(default_factory=list)
    batches_refused: dict[str, str] = field(default_factory=dict)
    pairs_evaluated: int = 0
    pairs_failed: int = 0
    pair_seconds: list[float] = field(default_factory=list)  # wall seconds of each pair, in order
    executor: str = "local"
    workers: list[dict[str, Any]] = field(default_factory=list)  # per worker: pairs, backbone builds, batch reads
    gate_changes: list[str] = field(default_factory=list)
    alerts: int = 0
    report_path: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


@contextmanager
def job_lock(settings: Settings, engine: Engine) -> Iterator[None]:
    """Hold the cross-process job lock for the block; ``JobLockedError`` when already held."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            if not repo.try_job_lock(conn):
                raise JobLockedError("another lpt job is running (PostgreSQL advisory lock held)")
            try:
                yield
            finally:
                repo.release_job_lock(conn)
        return
    from filelock import FileLock, Timeout

    path = settings.resolved_lock_path
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        raise JobLockedError(f"another lpt job is running (lock file {path} is held)") from None
    try:
        yield
    finally:
        lock.release()


def run_job(
    settings: Settings, *, trigger: str = "manual", evaluator: Evaluator | None = None,
    hasher: Hasher = default_hasher, engine: Engine | None = None,
) -> JobSummary:
    """Run the nightly job once (see the module docstring); raises ``JobLockedError`` when refused."""
    engine = engine or make_engine(settings.db_url)
    init_db(engine)
    code_version = settings.resolved_code_version
    try:
        with job_lock(settings, engine):
            return _locked_job(settings, engine, trigger, code_version, evaluator, hasher)
    except JobLockedError as exc:
        with session_scope(engine) as s:
            run = repo.start_job_run(s, trigger, code_version)
            repo.finish_job_run(s, run.id, "skipped", error=str(exc))
        raise


def _locked_job(
    settings: Settings, engine: Engine, trigger: str, code_version: str, evaluator: Evaluator | None,
    hasher: Hasher,
) -> JobSummary:
    """The job body, run while holding the lock."""
    started = time.perf_counter()
    with session_scope(engine) as s:
        jobs, evals = repo.fail_interrupted(s, utcnow())
        if jobs or evals:
            log.warning("marked %d job run(s) and %d eval run(s) left running by a dead process as failed", jobs, evals)
        summary = JobSummary(job_run_id=repo.start_job_run(s, trigger, code_version).id, status="running")
    try:
        summary.batches_added, summary.batches_refused = discover_batches(settings, engine)
        with session_scope(engine) as s:
            pairs = [(_spec(m, b, code_version)) for m, b in repo.pending_pairs(s, code_version)]
        if pairs:
            _evaluate_pairs(settings, engine, summary, pairs, evaluator, _once_per_job(hasher))
        if pairs or summary.batches_added:
            _after_evaluation(settings, engine, summary)
    except BaseException as exc:
        with session_scope(engine) as s:
            repo.finish_job_run(s, summary.job_run_id, "failed", error=f"{type(exc).__name__}: {exc}",
                                pairs_evaluated=summary.pairs_evaluated, pairs_failed=summary.pairs_failed)
        raise
    summary.status = "succeeded" if not summary.pairs_failed else "failed"
    with session_scope(engine) as s:
        repo.finish_job_run(s, summary.job_run_id, summary.status, pairs_evaluated=summary.pairs_evaluated,
                            pairs_failed=summary.pairs_failed, report_path=summary.report_path,
                            error=f"{summary.pairs_failed} pair(s) failed" if summary.pairs_failed else None)
    summary.seconds = time.perf_counter() - started
    log.info("job %d %s: %d pair(s) evaluated, %d failed, %d batch(es) added in %.2f s", summary.job_run_id,
             summary.status, summary.pairs_evaluated, summary.pairs_failed, len(summary.batches_added), summary.seconds)
    return summary


def _evaluate_pairs(
    settings: Settings, engine: Engine, summary: JobSummary, pairs: list[tuple[PairSpec, int]],
    evaluator: Evaluator | None, hasher: Hasher,
) -> None:  # fmt: skip
    """Group the pairs into units and run them on the settings' executor, recording each pair."""
    from app.executors import make_executor
    from app.units import plan_units

    recorder = PairRecorder(engine, summary.job_run_id, hasher, job_results_dir(settings), summary)
    executor = make_executor(settings, evaluator)
    summary.executor = settings.executor
    try:
        units = plan_units(pairs, workers=executor.workers, backbone_weights=settings.backbone_weights or None)
        executor.run(units, recorder)
    finally:
        summary.workers = executor.worker_stats()
        executor.close()


def _once_per_job(hasher: Hasher) -> Hasher:
    """``hasher`` memoised for one job run: a large artifact is hashed once, not once per batch."""
    seen: dict[Path, str] = {}

    def cached(path: Path) -> str:
        if path not in seen:
            seen[path] = hasher(path)
        return seen[path]

    return cached


def _after_evaluation(settings: Settings, engine: Engine, summary: JobSummary) -> None:
    """Gate, report and alerts once the pairs are recorded."""
    from app.alerting import monitoring_alerts
    from app.gate import auto_gate
    from app.report import write_report

    with session_scope(engine) as s:  # the night's label-free verdicts first: the report shows them
        monitoring_alerts(s, settings, summary.job_run_id)
    with session_scope(engine) as s:
        summary.gate_changes = auto_gate(s, settings, summary.job_run_id)
    report = write_report(engine, settings, summary.job_run_id)
    summary.report_path = str(report.paths["html"])
    with session_scope(engine) as s:
        for reg in report.regressions:
            repo.add_alert(s, "regression", reg["message"], job_run_id=summary.job_run_id,
                           model_version_id=reg.get("version_id"), batch_id=reg["batch_id"], details=reg)
        summary.alerts = len(repo.alerts_for_job(s, summary.job_run_id))
    for alert_line in report.alert_lines:
        log.warning("ALERT %s", alert_line)


def job_results_dir(settings: Settings) -> Path:
    """Where the nightly job writes its Result files (kept apart from the pipeline's DVC outputs)."""
    return Path(settings.reports_dir) / "results"


def _spec(version: ModelVersion, batch: ShiftBatch, code_version: str) -> tuple[PairSpec, int]:
    """The evaluator's view of a (model version, batch) pair, plus the version id."""
    model = version.model
    spec = PairSpec(model.name, model.method, version.artifact_path, version.artifact_sha256, batch.id, batch.path,
                    batch.kind, batch.dataset, batch.corruption, batch.severity, batch.size, batch.content_hash,
                    batch.dvc_hash, code_version, version.version, getattr(batch, "labels_hash", "") or "")
    return spec, version.id


def verify_artifact(spec: PairSpec, hasher: Hasher) -> None:
    """Raise ``ArtifactError`` unless the artifact exists and hashes to its registered sha256."""
    path = Path(spec.artifact_path)
    if not path.is_dir():
        raise ArtifactError(f"model {spec.model_name!r}: artifact {path} is missing; refusing to evaluate")
    try:
        actual = hasher(path)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"model {spec.model_name!r}: artifact {path} cannot be hashed ({exc}); refusing") from exc
    if actual != spec.artifact_sha256:
        raise ArtifactError(
            f"model {spec.model_name!r}: artifact {path} hashes to {actual[:12]}, registered "
            f"{spec.artifact_sha256[:12]} (tampered or replaced); refusing to evaluate"
        )


class PairRecorder:
    """Each pair's eval run in its own transactions: ``running`` committed by :meth:`begin`, then
    ``succeeded`` with its metrics (:meth:`succeed`) or ``failed`` with the error and a failure
    alert (:meth:`fail`). The only writer of eval runs; a pair is recorded once (a second outcome
    for it is refused and logged), and ``summary`` (when given) counts every outcome."""

    def __init__(self, engine: Engine, job_run_id: int, hasher: Hasher, results_dir: Path,
                 summary: JobSummary | None = None) -> None:  # fmt: skip
        self.engine, self.job_run_id, self.hasher, self.results_dir = engine, job_run_id, hasher, results_dir
        self.summary = summary
        self._open: set[int] = set()

    def begin(self, spec: PairSpec, version_id: int) -> int:
        """Commit the pair's eval run as ``running``; returns its id."""
        late = {"labels_hash": spec.labels_hash} if spec.labels_hash else {}  # a late label set keys its own run
        with session_scope(self.engine) as s:
            run_id = repo.begin_eval_run(s, version_id, spec.batch_id, spec.code_version, self.job_run_id, **late).id
        self._open.add(run_id)
        return run_id

    def verify(self, spec: PairSpec) -> None:
        """Raise ``ArtifactError`` unless the pair's artifact hashes to its registered sha256."""
        verify_artifact(spec, self.hasher)

    def succeed(self, spec: PairSpec, version_id: int, run_id: int, result: Mapping[str, Any], seconds: float) -> bool:
        """Check and write the result file, then the metrics and ``succeeded`` in one transaction;
        any failure on the way records the pair failed instead. True when it succeeded."""
        if not self._claim(run_id, spec):
            return False
        return self._count(self._store(spec, version_id, run_id, result), seconds)

    def fail(self, spec: PairSpec, version_id: int, run_id: int, error: BaseException | str, seconds: float) -> bool:
        """Record the pair failed with ``error`` (no metrics) and a failure alert; returns False."""
        if self._claim(run_id, spec):
            self._record_failure(spec, version_id, run_id, error)
            self._count(False, seconds)
        return False

    def evaluate(self, spec: PairSpec, version_id: int, evaluator: Evaluator) -> bool:
        """Begin, verify, evaluate and record one pair in this process (the local executor)."""
        started = time.perf_counter()
        run_id = self.begin(spec, version_id)
        self._claim(run_id, spec)
        try:
            self.verify(spec)
            ok = self._store(spec, version_id, run_id, dict(evaluator(spec)))
        except Exception as exc:  # any failure of one pair is recorded, and the job goes on
            self._record_failure(spec, version_id, run_id, exc)
            ok = False
        return self._count(ok, time.perf_counter() - started)

    def _store(self, spec: PairSpec, version_id: int, run_id: int, result: Mapping[str, Any]) -> bool:
        try:
            result = dict(result)
            check_result(result, spec)
            write_result_file(self.results_dir, spec, result)
            with session_scope(self.engine) as s:
                repo.complete_eval_run(s, run_id, result)
        except Exception as exc:  # a bad result, an unwritable file: the pair fails, the job goes on
            self._record_failure(spec, version_id, run_id, exc)
            return False
        return True

    def _claim(self, run_id: int, spec: PairSpec) -> bool:
        if run_id not in self._open:
            log.error("pair (%s, %s): a second outcome for eval run %d ignored", spec.model_name, spec.batch_id, run_id)
            return False
        self._open.discard(run_id)
        return True

    def _record_failure(self, spec: PairSpec, version_id: int, run_id: int, error: BaseException | str) -> None:
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        log.error("pair (%s, %s) failed: %s", spec.model_name, spec.batch_id, message)
        with session_scope(self.engine) as s:
            repo.fail_eval_run(s, run_id, message)
            repo.add_alert(s, "failure", f"evaluation of {spec.model_name}@{spec.model_version} on {spec.batch_id} "
                           f"failed: {message}", job_run_id=self.job_run_id, model_version_id=version_id,
                           batch_id=spec.batch_id)  # fmt: skip

    def _count(self, ok: bool, seconds: float) -> bool:
        if self.summary is not None:
            self.summary.pair_seconds.append(round(seconds, 4))
            self.summary.pairs_evaluated += ok
            self.summary.pairs_failed += not ok
        return ok


def evaluate_pair(
    engine: Engine, job_run_id: int, spec: PairSpec, version_id: int, evaluator: Evaluator, hasher: Hasher,
    results_dir: Path,
) -> bool:
    """Evaluate one pair in its own transactions; True when it succeeded (see module docstring)."""
    return PairRecorder(engine, job_run_id, hasher, results_dir).evaluate(spec, version_id, evaluator)


def check_result(result: Mapping[str, Any], spec: PairSpec) -> None:
    """Refuse a result that is not a Result file for this pair (``ValueError`` naming the field)."""
    if result.get("schema") not in ("lpt-result/1", "lpt-result/2"):
        raise ValueError(f"evaluator returned schema {result.get('schema')!r}, expected 'lpt-result/2'")
    labeled = int((result.get("labels") or {}).get("n_labeled", 1)) > 0  # an unlabeled batch measures nothing
    if labeled and not any(m.get("name") == "top1" and m.get("group") == "overall" for m in result.get("metrics") or []):
        raise ValueError(f"evaluator result for ({spec.model_name}, {spec.batch_id}) lacks top1/overall")
    if not labeled and not (result.get("monitoring") or {}).get("estimates"):
        raise ValueError(f"evaluator result for the unlabeled batch {spec.batch_id} has no estimates: model "
                         f"{spec.model_name} has no monitoring calibration (`lpt calibrate` gives it one)")


def write_result_file(results_dir: Path, spec: PairSpec, result: Mapping[str, Any]) -> Path:
    """Write ``results/<model>@<version>/<batch>.json`` atomically (the pipeline's layout, per version)."""
    path = results_dir / f"{spec.model_name}@{spec.model_version}" / f"{spec.batch_id}.json"
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True), encoding="utf-8")
    return path


def make_default_evaluator(settings: Settings) -> Evaluator:
    """The real evaluator: ``app.evaluator.RealEvaluator`` (lpt_core.evaluate on the batch's arrays)."""
    from app.evaluator import RealEvaluator

    return RealEvaluator(settings)
