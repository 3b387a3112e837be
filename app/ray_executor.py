"""The Ray executor of the nightly job (``LPT_EXECUTOR=ray``): work units on Ray actors.

Each actor is one evaluation worker (``app.evaluator.RealEvaluator`` around
``lpt_core.eval_worker.EvalWorker``): it holds its backbones, loaded artifacts and current batch
across units, on one GPU (``num_gpus=1``) where the cluster has GPUs, else on
``LPT_EXECUTOR_WORKER_CPUS`` CPUs. A unit runs as a streaming generator: each pair's outcome
(a Result dict or the error) comes back to the driver as soon as it exists, and the driver, the
only writer of the store, records it in the pair's own transaction (``app.jobs.PairRecorder``).

The driver commits a unit's eval runs as ``running`` when it hands the unit to an actor. When
an actor or its node is lost mid-unit, the pairs it had not reported are recorded ``failed``
("Ray worker lost") and the next job retries them; Ray restarts the actor once
(``max_restarts=1``) for the units still queued, and never re-runs a unit itself
(``max_task_retries=0``), so no pair is evaluated or recorded twice. A driver killed mid-job
leaves ``running`` rows, which the next job marks failed and retries, as with the local executor.

Ray is optional (``pip install -e ".[ray]"``) and imported only here. The job connects to the
cluster at ``RAY_ADDRESS`` (``ray start --head``, then ``ray start --address=...`` on each
machine), else to a Ray already initialised in this process, else starts a local Ray for the
job and shuts it down afterwards.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.settings import Settings

log = logging.getLogger(__name__)

ACTOR_RESTARTS = 1


def import_ray() -> Any:
    """The ``ray`` module, or a ``RuntimeError`` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError('LPT_EXECUTOR=ray needs Ray: pip install -e ".[ray]" (or set LPT_EXECUTOR=local)') from exc
    return ray


class EvalActor:
    """One Ray worker: an evaluator kept for the whole job (``ray.remote`` is applied by the executor)."""

    def __init__(self, settings: Settings, evaluator: Any, threads: int) -> None:
        if evaluator is None:
            import torch

            from app.evaluator import RealEvaluator

            torch.set_num_threads(threads)
            evaluator = RealEvaluator(settings)
        self.evaluator = evaluator

    def run(self, specs: list[Any]) -> Iterator[tuple[int, dict[str, Any] | None, str | None, float]]:
        """Evaluate ``specs`` in order, yielding (index, result, error, seconds) per pair."""
        expect = getattr(self.evaluator, "expect", None)
        if expect is not None:
            expect(specs)
        for index, spec in enumerate(specs):
            start = time.perf_counter()
            try:
                result = dict(self.evaluator(spec))
            except Exception as exc:  # one pair's failure is reported, the unit goes on
                yield index, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - start
                continue
            yield index, result, None, time.perf_counter() - start

    def stats(self) -> dict[str, Any]:
        """The evaluator's counts, with this worker's process id and node."""
        import ray

        stats = getattr(self.evaluator, "stats", None)
        own = stats() if callable(stats) else {}
        return {"worker": f"ray pid {os.getpid()}", "node": ray.get_runtime_context().get_node_id()[:12], **own}


@dataclass
class _Flight:
    """A unit handed to an actor: its generator, and each submitted pair's (spec, version id, run id)."""

    worker: int
    family: int
    gen: Any
    pairs: list[tuple[Any, int, int]]
    reported: set[int] = field(default_factory=set)


class RayExecutor:
    """Work units on Ray actors (see the module docstring)."""

    def __init__(self, settings: Settings, evaluator: Any = None) -> None:
        self.ray = import_ray()
        self.started = _connect(self.ray)
        resources = self.ray.cluster_resources()
        self.use_gpu = resources.get("GPU", 0) >= 1 and settings.eval_device != "cpu"
        cpus = settings.executor_worker_cpus
        auto = int(resources.get("GPU", 0)) if self.use_gpu else max(1, int(resources.get("CPU", 1)) // cpus)
        self.workers = settings.executor_workers or auto
        options = {"num_cpus": cpus, **({"num_gpus": 1} if self.use_gpu else {})}
        actor_settings = settings.replace(eval_device="cuda" if self.use_gpu else "cpu", executor="local")
        remote = self.ray.remote(max_restarts=ACTOR_RESTARTS, max_task_retries=0)(EvalActor)
        self.actors = [remote.options(**options).remote(actor_settings, evaluator, cpus) for _ in range(self.workers)]
        self.deaths = [0] * self.workers
        self.last_family: list[int | None] = [None] * self.workers
        log.info("ray executor: %d actor(s) on %s", self.workers, "GPUs" if self.use_gpu else f"{cpus} CPU(s) each")

    def run(self, units: Sequence[Any], recorder: Any) -> None:
        """Hand units to idle actors (one with the unit's backbones loaded first) and record each
        pair as its outcome arrives."""
        queue, idle = list(units), list(range(self.workers))
        inflight: dict[Any, Any] = {}
        while queue or inflight:
            while idle and queue:
                worker = idle.pop(0)
                flight = self._dispatch(worker, _take(queue, self.last_family[worker]), recorder)
                if flight is None:
                    idle.insert(0, worker)
                else:
                    inflight[flight.gen] = flight
            if not inflight:
                for unit in queue:
                    self._abandon(unit, recorder, "no Ray worker is left (every actor died twice)")
                return
            ready, _ = self.ray.wait(list(inflight), num_returns=1)
            flight = inflight[ready[0]]
            if self._advance(flight, recorder):
                del inflight[flight.gen]
                if self.deaths[flight.worker] <= ACTOR_RESTARTS:
                    idle.append(flight.worker)

    def _dispatch(self, worker: int, unit: Any, recorder: Any) -> _Flight | None:
        """Commit the unit's runs as ``running``, refuse unverifiable artifacts, submit the rest."""
        submitted = []
        for spec, version_id in unit.pairs:
            run_id = recorder.begin(spec, version_id)
            try:
                recorder.verify(spec)
            except Exception as exc:  # missing or tampered: that pair fails, before any worker sees it
                recorder.fail(spec, version_id, run_id, exc, 0.0)
                continue
            submitted.append((spec, version_id, run_id))
        if not submitted:
            return None
        self.last_family[worker] = unit.family
        gen = self.actors[worker].run.remote([spec for spec, _, _ in submitted])
        return _Flight(worker, unit.family, gen, submitted)

    def _advance(self, flight: _Flight, recorder: Any) -> bool:
        """Record the flight's next outcome; True when the flight is over (done or lost)."""
        errors = self.ray.exceptions.RayError
        try:
            index, result, error, seconds = self.ray.get(next(flight.gen))
        except StopIteration:
            self._lose(flight, recorder, "the Ray worker ended its unit without reporting this pair")
            return True
        except errors as exc:
            if isinstance(exc, self.ray.exceptions.RayActorError):
                self.deaths[flight.worker] += 1
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._lose(flight, recorder, f"Ray worker lost mid-unit ({type(exc).__name__}: {first[:300]}); "
                                         "the next job retries this pair")  # fmt: skip
            return True
        if index in flight.reported:  # cannot happen without task retries; never record a pair twice
            log.error("ray executor: a second outcome for pair %d of a unit ignored", index)
            return False
        flight.reported.add(index)
        spec, version_id, run_id = flight.pairs[index]
        if error is None:
            recorder.succeed(spec, version_id, run_id, result, seconds)
        else:
            recorder.fail(spec, version_id, run_id, error, seconds)
        return False

    def _lose(self, flight: _Flight, recorder: Any, message: str) -> None:
        """Record every pair of ``flight`` not reported yet as failed with ``message``."""
        for index, (spec, version_id, run_id) in enumerate(flight.pairs):
            if index not in flight.reported:
                flight.reported.add(index)
                recorder.fail(spec, version_id, run_id, message, 0.0)

    def _abandon(self, unit: Any, recorder: Any, message: str) -> None:
        """Record every pair of a unit no actor can take as failed (begun, then failed)."""
        for spec, version_id in unit.pairs:
            recorder.fail(spec, version_id, recorder.begin(spec, version_id), message, 0.0)

    def worker_stats(self) -> list[dict[str, Any]]:
        """Each live actor's counts (a lost one: its restarts only)."""
        out = []
        for worker, actor in enumerate(self.actors):
            try:
                stats = self.ray.get(actor.stats.remote(), timeout=60)
            except Exception as exc:  # a dead actor has no stats; say so
                stats = {"worker": f"ray actor {worker}", "error": f"{type(exc).__name__}"}
            out.append({**stats, "restarts": self.deaths[worker]})
        return out

    def close(self) -> None:
        """Stop the actors; shut down the Ray instance when this executor started or joined it."""
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already gone
                log.debug("ray executor: actor already gone at close")
        if self.started:
            self.ray.shutdown()


def _take(queue: list[Any], family: int | None) -> Any:
    """Pop the first unit of ``family`` (the backbones the actor holds), else the first unit."""
    for i, unit in enumerate(queue):
        if unit.family == family:
            return queue.pop(i)
    return queue.pop(0)


def _connect(ray: Any) -> bool:
    """Join ``RAY_ADDRESS``, else start a local Ray; False when Ray was already initialised here."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # the job's stdout carries its JSON summary: keep worker output in Ray's log files
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    return True
