"""What a study has already seen: a duplicate costs no training, it reuses the original's outcome.

Candidates are the same layer when their canonical forms match (the space's structural key) or when they compute
the same function (the functional fingerprint, computed by the driver). Everything here is rebuilt from the
store on resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evaluators.config import Fingerprint
from evaluators.fingerprint import fingerprint_or_none
from evaluators.vocabulary import Status
from search.algorithms import Result
from search.store import CandidateRow
from spaces import Genome, Space


@dataclass
class FinalOutcome:
    """What dedupe and the algorithms need of a finished evaluation."""

    status: Status
    objectives: dict[str, float]
    rungs: list[dict[str, float]] = field(default_factory=list)  # ``Result.rungs``


@dataclass
class Pending:
    """The driver's context of a candidate whose outcome its algorithm has yet to hear."""

    candidate_id: int
    genome: Genome
    generation: int
    proposal_data: dict[str, Any] = field(default_factory=dict)
    driver_stage_seconds: dict[str, float] = field(default_factory=dict)  # the fingerprint, timed by the driver
    key: str | None = None  # the candidate's canonical key and fingerprint: algorithms tell layers apart by them
    fingerprint: str | None = None

    @classmethod
    def of(cls, candidate: CandidateRow, driver_stage_seconds: dict[str, float] | None = None) -> Pending:
        return cls(
            candidate.id,
            candidate.genome,
            candidate.generation,
            candidate.proposal or {},
            driver_stage_seconds or {},
            candidate.key,
            candidate.fingerprint,
        )

    def result(self, outcome: FinalOutcome) -> Result:
        """The finished evaluation as algorithms see it."""
        return Result(
            self.candidate_id,
            self.genome,
            self.generation,
            outcome.status,
            outcome.objectives,
            self.proposal_data,
            self.key,
            self.fingerprint,
            outcome.rungs,
        )


class Dedupe:
    """Originals by canonical key and by fingerprint, their final outcomes, and duplicates waiting for one."""

    def __init__(self, space: Space, config: Fingerprint):
        self.space = space
        self.config = config
        self.by_key: dict[str, int] = {}
        self.by_fingerprint: dict[str, int] = {}
        self.final: dict[int, FinalOutcome] = {}
        # original candidate id -> (evaluation id, context) of duplicates proposed while it was in flight
        self.waiting: dict[int, list[tuple[int, Pending]]] = {}

    def fingerprint(self, genome: Genome) -> str | None:
        """The functional fingerprint, or None when disabled or the genome does not build (its evaluation says why)."""
        return fingerprint_or_none(self.space, genome, self.config) if self.config.enabled else None

    def remember(self, candidate: CandidateRow) -> None:
        """A stored candidate (replay): originals are what later proposals are matched against; a late promotion
        (``search.promotion``) takes its layer's place, as ``add`` gave it when it was made."""
        if candidate.duplicate_of is None:
            self.by_key[candidate.key] = candidate.id
            if candidate.fingerprint:
                self.by_fingerprint[candidate.fingerprint] = candidate.id

    def add(self, candidate_id: int, key: str, fingerprint: str | None) -> None:
        """A new original, just recorded."""
        self.by_key[key] = candidate_id
        if fingerprint is not None:
            self.by_fingerprint[fingerprint] = candidate_id

    def wait_for(self, original_id: int, evaluation_id: int, duplicate: Pending) -> None:
        """A duplicate of an original still in flight hears the outcome when the original finishes."""
        self.waiting.setdefault(original_id, []).append((evaluation_id, duplicate))

    def finish(self, candidate_id: int, outcome: FinalOutcome) -> list[tuple[int, Pending]]:
        """Record an original's outcome; returns the duplicates that were waiting for it."""
        self.final[candidate_id] = outcome
        return self.waiting.pop(candidate_id, [])
