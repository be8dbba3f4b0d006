"""Re-training chosen candidates with several seeds on the test split, through the Ray pool and the store.

``rerank`` (the study's own proxies, often longer) and ``transfer`` (networks of other families) both queue one
evaluation row per run, with its purpose, seed and steps, and run them here: the driver owns the ``ray.wait``
loop (``search.dispatch``) and is the only writer of the store, as in a search.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from evaluators.outcome import Outcome
from evaluators.splits import TEST
from evaluators.vocabulary import Status
from search.config import StudyConfig
from search.dispatch import Dispatcher, Job
from search.progress import CountProgress
from search.store import CandidateRow, Store, StudyRow, utcnow
from search.workers import make_pool, start_ray_for, stop_ray
from spaces import get_space

FIRST_SEED = 1000  # training seeds of final runs: 1000, 1001, ... (search runs use 0)


def seed_values(seeds: int) -> list[int]:
    """The training seeds of ``seeds`` final runs; the same list everywhere, so runs pair up by seed."""
    return [FIRST_SEED + i for i in range(seeds)]


def queue_test_run(
    store: Store,
    study: StudyRow,
    candidate: CandidateRow,
    *,
    purpose: str,
    seed: int,
    steps: int | None,
    metrics: dict[str, Any] | None = None,
) -> Job:
    """A pending evaluation row and its job: train on train + validation, score on test, no cascade.

    ``metrics`` are stored with the row from the start (``transfer`` records its proxy there).
    """
    evaluation_id = store.add_evaluation(
        study.id,
        candidate.id,
        purpose=purpose,
        status=Status.PENDING,
        seed=seed,
        steps=steps,
        metrics=metrics or {},
    )
    payload = {"genome": candidate.genome, "seed": seed, "steps": steps, "cascade": False, "split": TEST}
    return Job(evaluation_id, payload)


class _StoredRuns:
    """Job source over a fixed list of queued runs: each result or failure updates its evaluation row."""

    def __init__(self, store: Store, jobs: list[Job], progress: CountProgress):
        self.store, self.jobs, self.progress = store, list(jobs), progress

    def next_job(self, in_flight: int) -> Job | None:
        return self.jobs.pop(0) if self.jobs else None

    def on_dispatch(self, job: Job, worker: str) -> None:
        self.store.update_evaluation(
            job.evaluation_id, status=Status.RUNNING, worker=worker, attempt=job.attempt, started_at=utcnow()
        )

    def on_result(self, job: Job, result: dict[str, Any]) -> None:
        outcome = Outcome.from_dict(result["outcome"])
        self.store.update_evaluation(
            job.evaluation_id,
            status=outcome.status,
            stage=outcome.stage,
            reason=outcome.reason,
            objectives=outcome.finite_objectives(),
            seconds=outcome.seconds,
            worker=result["worker"],
            finished_at=utcnow(),
        )
        self.progress.advance()

    def on_failure(self, job: Job, stage: str, reason: str) -> None:
        self.store.update_evaluation(
            job.evaluation_id, status=Status.FAILED, stage=stage, reason=reason, finished_at=utcnow()
        )
        self.progress.advance()

    def stopping(self) -> bool:
        return False

    def on_tick(self) -> None:
        pass


@contextmanager
def ray_for(config: StudyConfig, runs_dir: Path) -> Iterator[None]:
    """The study's Ray cluster, or an embedded local instance started here and stopped at the end."""
    started = start_ray_for(config, runs_dir)
    try:
        yield
    finally:
        if started:
            stop_ray()


def run_queued(
    store: Store,
    config: StudyConfig,
    jobs: list[Job],
    *,
    description: str,
    timeout_seconds: float,
    console: Console,
    workers: int | None = None,
) -> None:
    """Run queued jobs on a fresh pool of workers built from ``config`` (call inside ``ray_for``)."""
    if not jobs:
        return
    pool = make_pool(config, get_space(config.space.kind, **config.space.options), workers)
    try:
        pool.start()
        with CountProgress(console, description, len(jobs)) as progress:
            Dispatcher(pool, timeout_seconds, config.resources.max_attempts).run(_StoredRuns(store, jobs, progress))
    finally:
        pool.shutdown()
