"""One run of a study, as the dispatcher sees it: proposals become jobs (or recorded duplicates), results are
recorded and told to the algorithm.

All of a run's state is set when it is made, from the store alone (replay), so a resumed run carries on where
the last one stopped: the algorithm hears every stored outcome again in finishing order, dedupe relearns every
original, and evaluations left in flight are queued again.
"""

from __future__ import annotations

import math
import time
from collections import deque
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from evaluators.halving import RungHistory, rung_metrics, rung_values
from evaluators.outcome import Outcome
from evaluators.vocabulary import Stage, Status
from search.algorithms import Proposal
from search.dedupe import Dedupe, FinalOutcome, Pending
from search.dispatch import Job
from search.objectives import signed_values
from search.progress import StudyProgress
from search.promotion import Promotions, earlier_rung_metrics, promoted_from
from search.store import CandidateRow, EvaluationRow, StudyRow, utcnow
from spaces import Genome, GenomeError, genome_key

if TYPE_CHECKING:
    from search.runner import StudyRunner

# Consecutive proposals that were all duplicates before the run decides the space is exhausted.
MAX_CONSECUTIVE_DUPLICATES = 500
EXHAUSTED = "exhausted"  # the event a run logs when it stops for want of new layers


class StudyRun:
    """The dispatcher's job source for one run of a study; the runner around it starts and stops the workers."""

    def __init__(self, runner: StudyRunner, study: StudyRow):
        self.runner = runner
        self.config, self.space, self.store, self.study = runner.config, runner.space, runner.store, study
        self.objectives = self.config.evaluator.objectives
        self.dedupe = Dedupe(self.space, self.config.evaluator.fingerprint)
        halving = self.config.evaluator.rejection.halving
        # Every rung result so far (from the stored metrics): the bars each job's candidate must clear.
        self.rungs = RungHistory(halving, self.objectives) if halving.enabled else None
        self.promotions = Promotions(self.rungs) if self.rungs is not None and halving.late_promotion else None
        self.progress = StudyProgress(
            study.name, self.objectives[0], self.config.budget.evaluations, runner.console, runner.show_progress
        )
        history = self.store.history(study.id)
        self.algorithm = runner.algorithm_for(replayed=len(history))
        for candidate, evaluation in history:
            self._replay(candidate, evaluation)
        unfinished = self.store.unfinished(study.id)
        for candidate, _ in unfinished:
            self.dedupe.remember(candidate)
            if self.promotions is not None and promoted_from(candidate.proposal):
                self.promotions.started(Pending.of(candidate))
        self.seed_queue = deque(self._seed_proposals())
        self.requeue = deque(
            Job(
                ev.id,
                self._payload(cand.genome, promoted_from(cand.proposal)),
                attempt=ev.attempt + 1,
                context=Pending.of(cand, ev.stage_seconds),
            )
            for cand, ev in unfinished
        )
        self.active_before = study.active_seconds or 0.0  # over the earlier runs
        self.consecutive_duplicates = 0
        self.progress.start()

    def _replay(self, candidate: CandidateRow, evaluation: EvaluationRow) -> None:
        self.dedupe.remember(candidate)
        if self.rungs is not None and evaluation.status != Status.DUPLICATE:  # a duplicate's are its original's
            self.rungs.record(evaluation.metrics or {}, promoted_from(candidate.proposal))
        self.progress.record(evaluation.status, evaluation.objectives)
        status = evaluation.status
        if status == Status.DUPLICATE:
            # It holds its original's objectives (and rung results) once the original finished, and none otherwise.
            has_values = signed_values(evaluation.objectives, self.objectives) is not None
            status = Status.DONE if has_values else Status.REJECTED
        outcome = FinalOutcome(status, evaluation.objectives, self._rungs(evaluation.metrics))
        if evaluation.status != Status.DUPLICATE:
            self.dedupe.finish(candidate.id, outcome)
            self._note_promotion(Pending.of(candidate), evaluation.metrics or {}, outcome)
        self.algorithm.tell(Pending.of(candidate).result(outcome))

    def _rungs(self, metrics: dict[str, Any] | None) -> list[dict[str, float]]:
        """What an evaluation's successive-halving rungs measured (``Result.rungs``); nothing without halving."""
        return rung_values(metrics or {}, self.objectives) if self.rungs is not None else []

    def _seed_proposals(self) -> list[Proposal]:
        # Seeds already evaluated before a resume are not proposed again.
        return [
            Proposal(genome, origin="seed", seed_name=name)
            for name, genome in self.runner.seed_genomes
            if self.space.key(genome) not in self.dedupe.by_key
        ]

    def active_seconds(self) -> float:
        """Wall time the study has spent running, over all runs."""
        return self.active_before + self.progress.seconds()

    def leave_for_resume(self, jobs: list[Job]) -> None:
        """Jobs in flight when the run stopped go back to pending; `resume` queues them again."""
        for job in jobs:
            self.store.update_evaluation(job.evaluation_id, status=Status.PENDING, worker=None, attempt=job.attempt - 1)

    # -- JobSource --------------------------------------------------------------------------------
    def stopping(self) -> bool:
        return self.runner.stop_requested.is_set()

    def _budget_left(self, in_flight: int) -> bool:
        budget = self.config.budget
        if budget.evaluations is not None and self.progress.finished + in_flight >= budget.evaluations:
            return False
        if budget.minutes is not None and self.active_seconds() >= budget.minutes * 60:
            return False
        return self.consecutive_duplicates < MAX_CONSECUTIVE_DUPLICATES

    def next_job(self, in_flight: int) -> Job | None:
        if self.requeue:
            return self.requeue.popleft()
        while self._budget_left(in_flight):
            if not self.seed_queue and (promotion := self._promotion()) is not None:
                return promotion
            proposal = self.seed_queue.popleft() if self.seed_queue else self.algorithm.ask()
            job = self._admit(proposal)
            if job is not None:
                self.consecutive_duplicates = 0
                return job
            self.consecutive_duplicates += 1
            if self.consecutive_duplicates == MAX_CONSECUTIVE_DUPLICATES:
                seen = self.progress.finished + in_flight
                self.store.log_event(
                    self.study.id,
                    EXHAUSTED,
                    f"{MAX_CONSECUTIVE_DUPLICATES} proposals in a row were among the {seen} layers this study has "
                    f"evaluated: the space looks exhausted, or {self.config.algorithm.name} keeps proposing what it "
                    "has seen, so the study stops early",
                )
        return None

    def _payload(self, genome: Genome, first_rung: int = 0) -> dict[str, Any]:
        payload: dict[str, Any] = {"genome": genome, "seed": self.config.seed}
        if self.rungs is not None:
            payload["halving"] = self.rungs.bars(first_rung)
        return payload

    def _note_promotion(self, candidate: Pending, metrics: dict[str, Any], outcome: FinalOutcome) -> None:
        """Late promotion's record of a finished evaluation: a promotion's start (again, live: it is idempotent),
        and whether halving stopped the candidate."""
        if self.promotions is None:
            return
        if promoted_from(candidate.proposal_data):
            self.promotions.started(candidate)
        self.promotions.record(candidate, metrics, outcome.rungs)

    def _promotion(self) -> Job | None:
        """A job that trains a stopped candidate on from its next rung, if one qualifies now (late promotion)."""
        chosen = self.promotions.next() if self.promotions is not None else None
        if chosen is None:
            return None
        stopped, data = chosen
        genome, original = stopped.candidate.genome, stopped.candidate
        candidate: dict[str, Any] = {
            "genome": genome,
            "origin": "promotion",
            "parents": [original.candidate_id],
            "mutation_op": None,
            "generation": original.generation,
            "seed_name": None,
            "proposal": {**original.proposal_data, **data},  # the algorithm's own data say which proposal it was
            "canonical": self.space.canonical(genome),
            "key": original.key,
            "formula": self._describe(genome),
            "fingerprint": original.fingerprint,
        }
        job = self._start(candidate, {}, promoted_from(data))  # later duplicates of the layer hear the promotion
        self.promotions.started(job.context)
        return job

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
            reason = f"invalid genome: {exc}"
            _, pending = self._record_verdict(candidate, proposal, Status.REJECTED, Stage.STATIC, reason)
            self.algorithm.tell(pending.result(FinalOutcome(Status.REJECTED, {})))
            return None
        candidate.update(canonical=canonical, key=genome_key(canonical), formula=self._describe(genome))
        original = self.dedupe.by_key.get(candidate["key"])
        if original is not None:
            self._record_duplicate(candidate, proposal, original, Stage.DEDUPE, "same canonical form as candidate")
            return None
        started = time.perf_counter()
        fp = candidate["fingerprint"] = self.dedupe.fingerprint(genome)
        stage_seconds = {Stage.FINGERPRINT: time.perf_counter() - started} if fp is not None else {}
        if fp is not None and fp in self.dedupe.by_fingerprint:
            original = self.dedupe.by_fingerprint[fp]
            why = "functionally equivalent (same outputs on the fingerprint points) to candidate"
            self._record_duplicate(candidate, proposal, original, Stage.FINGERPRINT, why, stage_seconds)
            return None
        return self._start(candidate, stage_seconds)

    def _start(self, candidate: dict[str, Any], stage_seconds: dict[str, float], first_rung: int = 0) -> Job:
        """Record a candidate the workers will evaluate, as the original of its layer, and make its job."""
        now = utcnow()
        cand_id, ev_id = self.store.add_candidate_with_evaluation(
            self.study.id,
            candidate,
            {
                "status": Status.RUNNING,
                "seed": self.config.seed,
                "queued_at": now,
                "started_at": now,
                "stage_seconds": stage_seconds,
            },
        )
        key, fp, genome = candidate["key"], candidate["fingerprint"], candidate["genome"]
        self.dedupe.add(cand_id, key, fp)
        context = Pending(cand_id, genome, candidate["generation"], candidate["proposal"], stage_seconds, key, fp)
        return Job(ev_id, self._payload(genome, first_rung), context=context)

    def _describe(self, genome: Genome) -> str:
        """The formula people read in every table (simplified where the space simplifies); the genome keeps
        the exact form."""
        try:
            return self.space.describe(genome, "display")
        except Exception:  # noqa: BLE001 - a formula is cosmetic; never lose a candidate over it
            return ""

    def _record_verdict(
        self,
        candidate: dict[str, Any],
        proposal: Proposal,
        status: Status,
        stage: Stage,
        reason: str,
        **evaluation: Any,
    ) -> tuple[int, Pending]:
        """A candidate the driver settles without a worker (invalid, or a duplicate): its evaluation is final at once.

        Returns the evaluation's id and the candidate's context.
        """
        now = utcnow()
        cand_id, ev_id = self.store.add_candidate_with_evaluation(
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
                **evaluation,
            },
        )
        self.progress.record(status, {})
        key, fp = candidate["key"], candidate.get("fingerprint")
        return ev_id, Pending(cand_id, candidate["genome"], proposal.generation, proposal.data, key=key, fingerprint=fp)

    def _record_duplicate(
        self,
        candidate: dict[str, Any],
        proposal: Proposal,
        original_id: int,
        stage: Stage,
        why: str,
        stage_seconds: dict[str, float] | None = None,
    ) -> None:
        """A duplicate costs no training: it reuses the original's outcome (now, or when the original finishes).

        ``stage_seconds`` holds the driver's fingerprint time; ``seconds`` (worker time) stays 0.
        """
        original = self.dedupe.final.get(original_id)
        candidate["duplicate_of"] = original_id
        ev_id, pending = self._record_verdict(
            candidate,
            proposal,
            Status.DUPLICATE,
            stage,
            f"{why} {original_id}",
            stage_seconds=stage_seconds or {},
            objectives=original.objectives if original else {},
            metrics=_original_metrics(original) if original else {},
        )
        if original is None:
            self.dedupe.wait_for(original_id, ev_id, pending)
        else:
            self.algorithm.tell(pending.result(original))

    def on_dispatch(self, job: Job, worker: str) -> None:
        # A new job's row was inserted as running; the worker is written with the result (one write fewer).
        if job.attempt > 1:
            self.store.update_evaluation(job.evaluation_id, status=Status.RUNNING, worker=worker, attempt=job.attempt)

    def on_result(self, job: Job, result: dict[str, Any]) -> None:
        outcome = Outcome.from_dict(result["outcome"])
        if self.rungs is not None:
            self.rungs.record(outcome.metrics)
            outcome.metrics = {**earlier_rung_metrics(job.context.proposal_data), **outcome.metrics}
        objectives = outcome.finite_objectives()
        status, stage, reason = outcome.status, outcome.stage, outcome.reason
        if status == Status.DONE and len(objectives) < len(outcome.objectives):
            status, stage, reason = Status.REJECTED, Stage.FULL, "non-finite objective values"
        self._finish(
            job,
            status=status,
            stage=stage,
            reason=reason,
            objectives=objectives,
            metrics=_json_safe(outcome.metrics),
            seconds=outcome.seconds,
            stage_seconds={**job.context.driver_stage_seconds, **outcome.stage_seconds},
            worker=result["worker"],
            started_at=_from_epoch(result["started"]),
            finished_at=_from_epoch(result["finished"]),
        )

    def on_failure(self, job: Job, stage: Stage, reason: str) -> None:
        self._finish(
            job, status=Status.FAILED, stage=stage, reason=reason, objectives={}, metrics={}, finished_at=utcnow()
        )

    def _finish(self, job: Job, **values: Any) -> None:
        self.store.update_evaluation(job.evaluation_id, attempt=job.attempt, **values)
        pending: Pending = job.context
        outcome = FinalOutcome(values["status"], values["objectives"], self._rungs(values["metrics"]))
        self.progress.record(outcome.status, outcome.objectives)
        self._note_promotion(pending, values["metrics"], outcome)
        self.algorithm.tell(pending.result(outcome))
        for dup_ev_id, duplicate in self.dedupe.finish(pending.candidate_id, outcome):
            self.store.update_evaluation(dup_ev_id, objectives=outcome.objectives, metrics=_original_metrics(outcome))
            self.algorithm.tell(duplicate.result(outcome))
        self.progress.refresh()

    def on_tick(self) -> None:
        self.progress.refresh()


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


def _original_metrics(original: FinalOutcome) -> dict[str, Any]:
    """What a duplicate's row keeps of its original's outcome: the status, and its rung results for replay."""
    return {"original_status": original.status, **rung_metrics(original.rungs)}
