"""The study driver: ask, dedupe, dispatch, record, tell; resumable from the store alone."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import ray
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from evaluators.fingerprint import fingerprint as functional_fingerprint
from evaluators.proxy import AGGREGATE_METRICS
from evaluators.registry import get_arch, get_dataset
from evaluators.training import metric_names
from search.algorithms import Algorithm, Proposal, Result, make_algorithm, signed_values
from search.config import ConfigError, StudyConfig, parse_config
from search.dispatch import Dispatcher, Job
from search.store import CandidateRow, EvaluationRow, Store, StudyRow, utcnow
from search.workers import WorkerPool, cluster_capacity, ensure_ray
from spaces import GenomeError, Space, genome_key, get_space

# Consecutive proposals that were all duplicates before the runner decides the space is exhausted.
MAX_CONSECUTIVE_DUPLICATES = 500


@dataclass
class FinalOutcome:
    """What dedupe and the algorithms need of a finished evaluation."""

    status: str
    objectives: dict[str, float]


@dataclass
class _Pending:
    """Runner-side context of a job in flight."""

    candidate_id: int
    genome: dict[str, Any]
    generation: int
    proposal_data: dict[str, Any] = field(default_factory=dict)
    driver_stage_seconds: dict[str, float] = field(default_factory=dict)  # the fingerprint, timed by the driver


def start_ray_for(config: StudyConfig, runs_dir: Path) -> bool:
    """Connect to the configured cluster or start the embedded local Ray; True if this call started it."""
    tmpdir = config.ray.tmpdir or str(runs_dir / "ray")
    return ensure_ray(config.ray.address, config.ray.object_store_memory_mb, tmpdir)


def make_pool(config: StudyConfig, workers: int | None = None) -> WorkerPool:
    """A pool sized by ``workers`` (the CLI's), else the config's, else what the cluster holds now.

    With ``resources.autoscale`` the pool starts at what the cluster holds (capped by the worker count, if given)
    and follows the cluster as nodes join and leave. ``gpus_per_worker`` counts only if the cluster has a GPU now
    (an autoscaling cluster should keep one GPU node up: min_workers 1 in ray_cluster.yaml).
    """
    res = config.resources
    limit = res.workers if workers is None else workers
    # CPU-only machines run GPU configs: with no GPU in the cluster the workers ask for none and train on CPU.
    gpus = res.gpus_per_worker if ray.cluster_resources().get("GPU", 0.0) > 0 else 0.0
    capacity = cluster_capacity(res.cpus_per_worker, gpus)
    if res.autoscale:
        size = capacity if limit is None else min(capacity, limit)
    else:
        size = capacity if limit is None else limit
    in_flight = res.max_in_flight or 2 * size
    queue = max(1, math.ceil(in_flight / size))
    return WorkerPool(
        size,
        config.space.kind,
        config.space.options,
        config.evaluator.model_dump(),
        num_cpus=res.cpus_per_worker,
        num_gpus=gpus,
        queue_per_worker=queue,
        autoscale=res.autoscale,
        max_size=limit,
    )


class StudyRunner:
    """Runs (or resumes) one study to its budget. Only this object writes to the store."""

    def __init__(
        self,
        config: StudyConfig,
        store: Store,
        *,
        console: Console | None = None,
        workers: int | None = None,
        progress: bool = True,
        runs_dir: str | Path = "runs",
    ):
        self.config = config
        self.store = store
        self.console = console or Console(stderr=True)
        self.workers = workers
        self.show_progress = progress
        self.runs_dir = Path(runs_dir)
        self.space: Space = get_space(config.space.kind, **config.space.options)
        self.objectives = config.evaluator.objectives
        self._stop = threading.Event()
        # Fail on a bad config here, before a study row exists or a worker starts.
        self.seed_genomes = self._resolve_seeds()
        make_algorithm(
            config.algorithm.name, self.space, self.objectives, np.random.default_rng(0), config.algorithm.options
        )
        if config.evaluator.kind == "proxy":
            for proxy in config.evaluator.proxies:
                get_dataset(proxy.dataset)
                get_arch(proxy.arch)
            known = set(AGGREGATE_METRICS) | {
                m for task in ("classification", "regression") for m in metric_names(task)
            }
            for objective in self.objectives:
                if objective.name.split("@")[0] not in known:
                    raise ConfigError(
                        f"evaluator.objectives: {objective.name!r} names no metric a proxy reports; "
                        f"metrics: {', '.join(sorted(known))} (as metric@proxy)"
                    )

    # -- set-up -----------------------------------------------------------------------------------
    @classmethod
    def for_existing(cls, store: Store, name: str, **kwargs: Any) -> StudyRunner:
        """A runner for a stored study, configured exactly as it was launched."""
        row = store.get_study(name)
        return cls(parse_config(row.config, f"stored config of study {name!r}"), store, **kwargs)

    def _open_study(self, resume: bool) -> StudyRow:
        cfg = self.config
        if resume:
            return self.store.get_study(cfg.name)
        return self.store.create_study(
            cfg.name,
            space=cfg.space.kind,
            algorithm=cfg.algorithm.name,
            seed=cfg.seed,
            config=cfg.model_dump(mode="json"),
            objectives=[o.model_dump() for o in self.objectives],
            budget_evaluations=cfg.budget.evaluations,
            budget_minutes=cfg.budget.minutes,
        )

    def _replay(self) -> None:
        """Rebuild algorithm state and the dedupe maps from the stored history, in finishing order."""
        self.by_key: dict[str, int] = {}
        self.by_fingerprint: dict[str, int] = {}
        self.final: dict[int, FinalOutcome] = {}
        self.best: float | None = None
        self.waiting_duplicates: dict[int, list[tuple[int, int, _Pending]]] = {}
        self.finished = 0
        self.counts: dict[str, int] = {}
        history = self.store.history(self.study.id)
        seed = self.config.seed
        self.algorithm: Algorithm = make_algorithm(
            self.config.algorithm.name,
            self.space,
            self.objectives,
            np.random.default_rng([seed, len(history)]),  # a resumed study draws fresh numbers
            self.config.algorithm.options,
        )
        for cand, ev in history:
            self._remember(cand)
            self.counts[ev.status] = self.counts.get(ev.status, 0) + 1
            if ev.status != "duplicate":
                self.finished += 1
                self.final[cand.id] = FinalOutcome(ev.status, ev.objectives)
                self._note_best(ev.status, ev.objectives)
            self.algorithm.tell(self._result(cand, ev))
        for cand, _ in self.store.unfinished(self.study.id):
            self._remember(cand)

    def _remember(self, cand: CandidateRow) -> None:
        if cand.duplicate_of is None:
            self.by_key.setdefault(cand.key, cand.id)
            if cand.fingerprint:
                self.by_fingerprint.setdefault(cand.fingerprint, cand.id)

    def _result(self, cand: CandidateRow, ev: EvaluationRow) -> Result:
        status = ev.status
        if status == "duplicate":
            status = "done" if signed_values(ev.objectives, self.objectives) is not None else "rejected"
        return Result(cand.id, cand.genome, cand.generation, status, ev.objectives, cand.proposal or {})

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> StudyRow:
        self.study = self._open_study(resume)
        if resume and self.study.status == "finished":
            self.console.print(f"study {self.study.name!r} already finished its budget; nothing to resume")
            return self.study
        self._replay()
        self.seed_queue = deque(self._seed_proposals())
        self.requeue = deque(
            Job(
                ev.id,
                self._payload(cand.genome),
                attempt=ev.attempt + 1,
                context=_Pending(cand.id, cand.genome, cand.generation, cand.proposal or {}, ev.stage_seconds or {}),
            )
            for cand, ev in self.store.unfinished(self.study.id)
        )
        self.run_started = time.time()
        self.finished_at_start = self.finished
        self.active_before = self.study.active_seconds or 0.0
        self.consecutive_duplicates = 0
        self.store.update_study(self.study.id, status="running", started_at=self.study.started_at or utcnow())
        self.store.log_event(
            self.study.id,
            "resume" if resume else "start",
            f"{'resumed' if resume else 'started'} with {self.finished} finished evaluations",
            requeued=len(self.requeue),
        )
        started_ray = start_ray_for(self.config, self.runs_dir)
        pool = make_pool(self.config, self.workers)
        if self.config.resources.gpus_per_worker and not pool.num_gpus:
            self.console.print("[yellow]no GPU in the Ray cluster: the workers train on CPU[/yellow]")
        previous_handler = self._install_sigint()
        try:
            infos = self.worker_infos = pool.start()
            self.store.log_event(self.study.id, "workers", f"{len(infos)} workers ready", workers=infos)
            dispatcher = Dispatcher(
                pool,
                self.config.evaluator.timeout_seconds,
                self.config.resources.max_attempts,
                on_workers_started=self._log_workers_started,
            )
            self.dispatcher = dispatcher
            with self._progress() as self.progress:
                self.task = self.progress.add_task(
                    "search", total=self.config.budget.evaluations, study=self.study.name, line=""
                )
                self._refresh_progress()
                abandoned = dispatcher.run(self)
            for job in abandoned:
                self.store.update_evaluation(job.evaluation_id, status="pending", worker=None, attempt=job.attempt - 1)
            status = "stopped" if self._stop.is_set() else "finished"
            self._close(status, replaced_workers=dispatcher.replaced_workers, left_pending=len(abandoned))
        except BaseException:
            self._close("stopped")
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            pool.shutdown()
            if started_ray:
                ray.shutdown()
        return self.store.get_study(self.study.name)

    def _close(self, status: str, **data: Any) -> None:
        active = self.active_before + (time.time() - self.run_started)
        values: dict[str, Any] = {"status": status, "active_seconds": active}
        if status == "finished":
            values["finished_at"] = utcnow()
        self.store.update_study(self.study.id, **values)
        self.store.log_event(self.study.id, status, f"study {status} after {self.finished} evaluations", **data)

    def _install_sigint(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, frame: Any) -> None:
            if self._stop.is_set():
                raise KeyboardInterrupt
            self.console.print(
                "[yellow]stopping: no new evaluations; in-flight ones are left for `resume` "
                "(Ctrl-C again to quit at once)[/yellow]"
            )
            self._stop.set()

        return signal.signal(signal.SIGINT, handler)

    def request_stop(self) -> None:
        self._stop.set()

    def _log_workers_started(self, infos: list[dict[str, Any]]) -> None:
        """Actors that came up mid-study: replacements for lost ones, or new ones on nodes that joined."""
        self.store.log_event(self.study.id, "workers", f"{len(infos)} more workers ready", workers=infos)

    # -- JobSource --------------------------------------------------------------------------------
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _budget_left(self) -> bool:
        budget = self.config.budget
        if budget.evaluations is not None and self.finished + len(self.dispatcher.in_flight) >= budget.evaluations:
            return False
        if budget.minutes is not None:
            elapsed = self.active_before + time.time() - self.run_started
            if elapsed >= budget.minutes * 60:
                return False
        return self.consecutive_duplicates < MAX_CONSECUTIVE_DUPLICATES

    def next_job(self) -> Job | None:
        if self.requeue:
            return self.requeue.popleft()
        while self._budget_left():
            proposal = self.seed_queue.popleft() if self.seed_queue else self.algorithm.ask()
            job = self._admit(proposal)
            if job is not None:
                self.consecutive_duplicates = 0
                return job
            self.consecutive_duplicates += 1
            if self.consecutive_duplicates == MAX_CONSECUTIVE_DUPLICATES:
                self.store.log_event(
                    self.study.id,
                    "exhausted",
                    f"{MAX_CONSECUTIVE_DUPLICATES} proposals in a row were duplicates; "
                    "the space looks exhausted, so the study stops early",
                )
        return None

    def _payload(self, genome: dict[str, Any]) -> dict[str, Any]:
        return {"genome": genome, "seed": self.config.seed}

    def _admit(self, proposal: Proposal) -> Job | None:
        """Record a proposal; returns a job to run, or None if it was a duplicate or invalid (recorded)."""
        genome = proposal.genome
        candidate: dict[str, Any] = {
            "genome": genome,
            "origin": proposal.origin,
            "parents": proposal.parents,
            "mutation_op": proposal.mutation_op,
            "generation": proposal.generation,
            "seed_name": proposal.seed_name,
            "proposal": proposal.data,
        }
        try:
            self.space.validate(genome)
            canonical = self.space.canonical(genome)
        except GenomeError as exc:
            candidate.update(key=genome_key(repr(genome)), canonical="", formula="")
            self._record_final_without_run(candidate, "rejected", "static", f"invalid genome: {exc}")
            return None
        candidate.update(canonical=canonical, key=genome_key(canonical), formula=self._describe(genome))
        original = self.by_key.get(candidate["key"])
        if original is not None:
            self._record_duplicate(candidate, original, "same canonical form as candidate", proposal)
            return None
        started = time.perf_counter()
        fp = self._fingerprint(genome)
        stage_seconds = {"fingerprint": time.perf_counter() - started} if fp is not None else {}
        candidate["fingerprint"] = fp
        if fp is not None and fp in self.by_fingerprint:
            self._record_duplicate(
                candidate,
                self.by_fingerprint[fp],
                "functionally equivalent (same outputs on the fingerprint points) to candidate",
                proposal,
                stage_seconds,
            )
            return None
        now = utcnow()
        cand_id, ev_id = self.store.add_candidate_with_evaluation(
            self.study.id,
            candidate,
            {
                "status": "running",
                "seed": self.config.seed,
                "queued_at": now,
                "started_at": now,
                "stage_seconds": stage_seconds,
            },
        )
        self.by_key[candidate["key"]] = cand_id
        if fp is not None:
            self.by_fingerprint[fp] = cand_id
        return Job(
            ev_id,
            self._payload(genome),
            context=_Pending(cand_id, genome, proposal.generation, proposal.data, stage_seconds),
        )

    def _describe(self, genome: dict[str, Any]) -> str:
        try:
            return self.space.describe(genome, "text")
        except Exception:  # noqa: BLE001 - a formula is cosmetic; never lose a candidate over it
            return ""

    def _fingerprint(self, genome: dict[str, Any]) -> str | None:
        if not self.config.evaluator.fingerprint.enabled:
            return None
        try:
            return functional_fingerprint(self.space, genome, self.config.evaluator.fingerprint)
        except Exception:  # noqa: BLE001 - the worker's cascade will report why this genome fails
            return None

    def _record_final_without_run(self, candidate: dict[str, Any], status: str, stage: str, reason: str) -> None:
        now = utcnow()
        cand_id, _ = self.store.add_candidate_with_evaluation(
            self.study.id,
            candidate,
            {
                "status": status,
                "stage": stage,
                "reason": reason,
                "queued_at": now,
                "started_at": now,
                "finished_at": now,
                "seconds": 0.0,
            },
        )
        self.finished += 1
        self._count(status)
        self.algorithm.tell(
            Result(cand_id, candidate["genome"], candidate["generation"], status, {}, candidate["proposal"])
        )

    def _record_duplicate(
        self,
        candidate: dict[str, Any],
        original_id: int,
        why: str,
        proposal: Proposal,
        stage_seconds: dict[str, float] | None = None,
    ) -> None:
        """A duplicate costs no training: it reuses the original's outcome (now, or when the original finishes).

        ``stage_seconds`` holds the driver's fingerprint time; ``seconds`` (worker time) stays 0.
        """
        original = self.final.get(original_id)
        now = utcnow()
        candidate["duplicate_of"] = original_id
        cand_id, ev_id = self.store.add_candidate_with_evaluation(
            self.study.id,
            candidate,
            {
                "status": "duplicate",
                "stage": "fingerprint" if "fingerprint" in why else "dedupe",
                "reason": f"{why} {original_id}",
                "queued_at": now,
                "started_at": now,
                "finished_at": now,
                "seconds": 0.0,
                "stage_seconds": stage_seconds or {},
                "objectives": original.objectives if original else {},
                "metrics": {"original_status": original.status} if original else {},
            },
        )
        self._count("duplicate")
        pending = _Pending(cand_id, candidate["genome"], proposal.generation, proposal.data)
        if original is None:
            self.waiting_duplicates.setdefault(original_id, []).append((ev_id, cand_id, pending))
        else:
            self._tell_duplicate(pending, original)

    def _tell_duplicate(self, pending: _Pending, original: FinalOutcome) -> None:
        self.algorithm.tell(
            Result(
                pending.candidate_id,
                pending.genome,
                pending.generation,
                original.status,
                original.objectives,
                pending.proposal_data,
            )
        )

    def on_dispatch(self, job: Job, worker: str) -> None:
        # A new job's row was inserted as running; the worker is written with the result (one write fewer).
        if job.attempt > 1:
            self.store.update_evaluation(job.evaluation_id, status="running", worker=worker, attempt=job.attempt)

    def on_result(self, job: Job, result: dict[str, Any]) -> None:
        out = result["outcome"]
        objectives = {k: v for k, v in out["objectives"].items() if isinstance(v, int | float) and math.isfinite(v)}
        status = out["status"]
        if status == "done" and len(objectives) < len(out["objectives"]):
            status, out["stage"], out["reason"] = "rejected", "full", "non-finite objective values"
        self._finish(
            job,
            status=status,
            stage=out["stage"],
            reason=out["reason"],
            objectives=objectives,
            metrics=_json_safe(out["metrics"]),
            seconds=out["seconds"],
            stage_seconds={**job.context.driver_stage_seconds, **out["stage_seconds"]},
            worker=result["worker"],
            started_at=_from_epoch(result["started"]),
            finished_at=_from_epoch(result["finished"]),
        )

    def on_failure(self, job: Job, stage: str, reason: str) -> None:
        self._finish(job, status="failed", stage=stage, reason=reason, objectives={}, metrics={}, finished_at=utcnow())

    def _finish(self, job: Job, **values: Any) -> None:
        self.store.update_evaluation(job.evaluation_id, attempt=job.attempt, **values)
        pending: _Pending = job.context
        ev = FinalOutcome(values["status"], values["objectives"])
        self.final[pending.candidate_id] = ev
        self._note_best(ev.status, ev.objectives)
        self.finished += 1
        self._count(values["status"])
        self.algorithm.tell(
            Result(
                pending.candidate_id,
                pending.genome,
                pending.generation,
                values["status"],
                values["objectives"],
                pending.proposal_data,
            )
        )
        for dup_ev_id, _, dup in self.waiting_duplicates.pop(pending.candidate_id, []):
            self.store.update_evaluation(
                dup_ev_id, objectives=values["objectives"], metrics={"original_status": values["status"]}
            )
            self._tell_duplicate(dup, ev)
        self._refresh_progress()

    def on_tick(self) -> None:
        self._refresh_progress()

    # -- progress ---------------------------------------------------------------------------------
    def _count(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.fields[study]}[/bold]"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.show_progress,
            transient=False,
        )

    def _refresh_progress(self) -> None:
        first = self.objectives[0]
        best = "-" if self.best is None else f"{first.name}={self.best:.4g}"
        minutes = max((time.time() - self.run_started) / 60, 1e-9)
        line = (
            f"done {self.counts.get('done', 0)} rejected {self.counts.get('rejected', 0)} "
            f"failed {self.counts.get('failed', 0)} dup {self.counts.get('duplicate', 0)} | "
            f"best {best} | {(self.finished - self.finished_at_start) / minutes:.1f} eval/min"
        )
        self.progress.update(self.task, completed=self.finished, study=self.study.name, line=line)

    def _note_best(self, status: str, objectives: dict[str, float]) -> None:
        """Track the best first-objective value incrementally (the progress line shows it)."""
        first = self.objectives[0]
        value = objectives.get(first.name)
        if status != "done" or value is None:
            return
        if self.best is None or (value > self.best if first.direction == "max" else value < self.best):
            self.best = value

    def _resolve_seeds(self) -> list[tuple[str, dict[str, Any]]]:
        """Config seeds are names of the space's seeds, or genomes in the space's text form."""
        named = self.space.seeds()
        resolved = []
        for entry in self.config.space.seeds:
            if entry in named:
                resolved.append((entry, named[entry]))
                continue
            try:
                resolved.append((entry, self.space.parse(entry)))
            except GenomeError as exc:
                raise ConfigError(
                    f"space.seeds: {entry!r} is neither a seed of space {self.space.kind!r} "
                    f"({', '.join(sorted(named))}) nor a valid genome text: {exc}"
                ) from None
        return resolved

    def _seed_proposals(self) -> list[Proposal]:
        # Seeds already evaluated before a resume are not proposed again.
        return [
            Proposal(genome, origin="seed", seed_name=name)
            for name, genome in self.seed_genomes
            if self.space.key(genome) not in self.by_key
        ]


def _from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)


def _json_safe(value: Any) -> Any:
    """Metrics as JSON: non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
