"""The driver-owned ``ray.wait`` loop: bounded in-flight jobs, per-job timeouts, dead actors replaced.

What to run and what to do with results is the job source's business (the study runner, re-ranking);
this loop only keeps workers busy and turns worker loss (a crash, a lost node) and hangs into re-queues or failures.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray
from ray.exceptions import GetTimeoutError, OutOfMemoryError, RayActorError, RayError, RayTaskError

from evaluators.vocabulary import Stage
from search.workers import Slot, WorkerPool


@dataclass
class Job:
    evaluation_id: int
    payload: dict[str, Any]  # what the worker's evaluate() receives
    attempt: int = 1
    context: Any = None  # the source's own bookkeeping
    started: float = field(default=0.0, repr=False)  # when its batch reached the head of its actor's queue
    # Set when a batch it was in timed out: it runs on its own next, so a hang is pinned on the job that hangs.
    alone: bool = field(default=False, repr=False)


class JobSource(Protocol):
    def next_job(self, in_flight: int) -> Job | None:
        """A new job, or None when nothing more should start now (budget spent, stopping).

        ``in_flight``: the jobs running or queued on workers now (a budget counts them as spent).
        """

    def on_dispatch(self, job: Job, worker: str) -> None: ...

    def on_result(self, job: Job, result: dict[str, Any]) -> None: ...

    def on_failure(self, job: Job, stage: Stage, reason: str) -> None:
        """The job ends without a result: it hung (Stage.TIMEOUT) or lost its worker too often."""

    def stopping(self) -> bool: ...

    def on_tick(self) -> None: ...


class Dispatcher:
    """Hands each worker a batch of up to its ``candidates_per_batch`` jobs per call (one job: today's
    ``evaluate``); accounting stays per job: the source hears of every job, every attempt and every outcome.

    A batch's time limit is ``timeout_seconds`` per job in it (the time they would have had one after another);
    a batch that runs past it is cut, and its jobs run again one at a time, so only a job that hangs on its own
    fails with a timeout. A lost worker costs every job of the batch it was running an attempt; the batches
    queued behind it go back in the queue as they were.
    """

    def __init__(
        self,
        pool: WorkerPool,
        timeout_seconds: float,
        max_attempts: int,
        poll_seconds: float = 0.5,
        on_workers_started: Callable[[list[dict[str, Any]]], None] | None = None,
    ):
        """``on_workers_started`` hears of actors that came up after the pool's start (replacements, new nodes)."""
        self.pool = pool
        self.on_workers_started = on_workers_started
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds
        self.requeued: deque[Job] = deque()
        self.batches: dict[Any, tuple[list[Job], Slot]] = {}  # ObjectRef -> (its jobs, slot)
        self.replaced_workers = 0

    @property
    def in_flight(self) -> dict[tuple[Any, int], tuple[Job, Slot]]:
        """Every job running or queued on a worker, with its worker's slot (keyed by its batch and position)."""
        return {(ref, i): (job, slot) for ref, (jobs, slot) in self.batches.items() for i, job in enumerate(jobs)}

    def jobs_in_flight(self) -> int:
        return sum(len(jobs) for jobs, _ in self.batches.values())

    def run(self, source: JobSource) -> list[Job]:
        """Run until the source has nothing more and nothing is in flight, or it asks to stop.

        Returns the jobs that were in flight or queued when stopping (the caller leaves them for resume).
        """
        while True:
            if source.stopping():
                return self._abandon()
            started = self.pool.maintain()
            if started and self.on_workers_started is not None:
                self.on_workers_started(started)
            source_done = self._fill(source)
            if not self.batches:
                if source_done and not self.requeued:
                    return []  # nothing in flight, nothing re-queued, and the source has nothing more: done
                # Jobs wait while every actor is starting (e.g. replacements for a lost node).
                self.pool.wait_for_start(self.poll_seconds)
                source.on_tick()
                continue
            ready, _ = ray.wait(list(self.batches), num_returns=1, timeout=self.poll_seconds)
            if ready:
                # Take everything already finished in one go: cheap, and keeps the driver ahead of the workers.
                ready, _ = ray.wait(list(self.batches), num_returns=len(self.batches), timeout=0)
            fetched = self._get_batch(ready)
            for ref in ready:
                if ref in self.batches:
                    self._collect(ref, source, fetched)
            self._cut_hung(source)
            source.on_tick()

    def _fill(self, source: JobSource) -> bool:
        """Dispatch re-queued jobs, then new ones, while actors have room; True when the source has nothing more."""
        while (slot := self.pool.free_slot()) is not None:
            jobs, source_done = self._take(source, slot.batch_size)
            if jobs:
                self._submit(slot, jobs, source)
            if source_done:
                return True
        return False

    def _take(self, source: JobSource, size: int) -> tuple[list[Job], bool]:
        """Up to ``size`` jobs for one worker, re-queued ones first; a job marked ``alone`` goes by itself.

        Returns the jobs and whether the source said it has nothing more.
        """
        jobs: list[Job] = []
        while len(jobs) < size:
            if self.requeued:
                if self.requeued[0].alone and jobs:
                    break
                jobs.append(self.requeued.popleft())
                if jobs[-1].alone:
                    break
                continue
            job = source.next_job(self.jobs_in_flight() + len(jobs))
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _submit(self, slot: Slot, jobs: list[Job], source: JobSource) -> None:
        if not slot.jobs:
            _start(jobs)
        ref = self.pool.submit(slot, [job.payload for job in jobs])
        self.batches[ref] = (jobs, slot)
        for job in jobs:
            source.on_dispatch(job, slot.name)

    @staticmethod
    def _get_batch(refs: list[Any]) -> dict[Any, Any]:
        """All ready results in one round trip; if any of them failed, {} (then each is fetched alone)."""
        try:
            return dict(zip(refs, ray.get(refs), strict=True))
        except RayError:
            return {}

    def _collect(self, ref: Any, source: JobSource, fetched: dict[Any, Any]) -> None:
        jobs, slot = self.batches[ref]
        try:
            results = fetched[ref] if ref in fetched else ray.get(ref)
        except (RayActorError, OutOfMemoryError) as exc:
            self._lose_worker(slot, source, f"{type(exc).__name__}: {_short(exc)}")
            return
        except RayTaskError as exc:
            self._finish(ref, slot)
            cause = type(exc.cause).__name__ if exc.cause else "error"
            for job in jobs:
                source.on_failure(job, Stage.WORKER, f"{cause}: {_short(exc)}")
            return
        except (GetTimeoutError, RayError) as exc:
            self._lose_worker(slot, source, f"{type(exc).__name__}: {_short(exc)}")
            return
        self._finish(ref, slot)
        for job, result in zip(jobs, results if isinstance(results, list) else [results], strict=True):
            source.on_result(job, result)

    def _finish(self, ref: Any, slot: Slot) -> None:
        del self.batches[ref]
        slot.jobs.remove(ref)
        if slot.jobs:
            _start(self.batches[slot.jobs[0]][0])

    def _lose_worker(self, slot: Slot, source: JobSource, reason: str) -> None:
        """The actor died (it crashed, or its node went away): its jobs go back in the queue.

        Only the jobs of the batch it was running count an attempt (up to max_attempts); the ones queued behind
        never started.
        """
        lost = self.pool.replace(slot)
        self.replaced_workers += 1
        for position, ref in enumerate(lost):
            jobs, _ = self.batches.pop(ref)
            for job in jobs:
                if position > 0:
                    self.requeued.append(job)
                elif job.attempt >= self.max_attempts:
                    source.on_failure(job, Stage.WORKER_LOST, f"worker lost {job.attempt} times; last: {reason}")
                else:
                    job.attempt += 1
                    self.requeued.append(job)

    def _cut_hung(self, source: JobSource) -> None:
        now = time.time()
        for slot in list(self.pool.slots):
            if not slot.jobs:
                continue
            head, _ = self.batches[slot.jobs[0]]
            if now - head[0].started <= self.timeout_seconds * len(head):
                continue
            lost = self.pool.replace(slot)
            self.replaced_workers += 1
            for ref in lost:
                jobs, _ = self.batches.pop(ref)
                if jobs is head and len(jobs) == 1:
                    reason = f"no result after {self.timeout_seconds:.0f} s; worker replaced"
                    source.on_failure(jobs[0], Stage.TIMEOUT, reason)
                    continue
                for job in jobs:  # queued behind the hung job, or in a batch with it: same attempt
                    job.alone = job.alone or jobs is head
                    self.requeued.append(job)

    def _abandon(self) -> list[Job]:
        jobs = [job for batch, _ in self.batches.values() for job in batch] + list(self.requeued)
        self.batches.clear()
        self.requeued.clear()
        for slot in self.pool.slots:
            slot.jobs.clear()
        return jobs


def _start(jobs: list[Job]) -> None:
    now = time.time()
    for job in jobs:
        job.started = now


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
