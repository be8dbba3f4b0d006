"""The ask/tell contract every search algorithm implements, and the records that cross it.

State is never pickled: on resume the runner replays the stored outcomes through ``tell`` in the order they
finished, which rebuilds populations, archives, Optuna studies and surrogate models.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from evaluators.config import Objective
from evaluators.vocabulary import Status
from spaces import Genome, Space

if TYPE_CHECKING:
    from search.config import StudyConfig
    from search.store import Store


class AlgorithmConfigError(ValueError):
    """Unknown algorithm or bad algorithm options."""


@dataclass
class Proposal:
    """A genome to evaluate and where it came from (recorded on the candidate row)."""

    genome: Genome
    origin: str  # seed, sample, mutate, crossover, optuna, surrogate
    parents: list[int] = field(default_factory=list)
    mutation_op: str | None = None
    generation: int = 0
    seed_name: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """A finished evaluation as algorithms see it.

    A duplicate is told with its original's outcome; ``key`` (the canonical key) and ``fingerprint`` (the
    functional one, None where it was not computed) say which layer it is, so populations never hold a layer twice.
    With successive halving, ``rungs`` holds the objective values at each rung the candidate trained, rung 0 first
    (``evaluators.halving.rung_values``): a candidate stopped at a rung is REJECTED, yet its shorter runs say how
    good it looked, which a model of the search space can use.
    """

    candidate_id: int
    genome: Genome
    generation: int
    status: Status  # DONE, REJECTED or FAILED
    objectives: dict[str, float]
    proposal_data: dict[str, Any] = field(default_factory=dict)
    key: str | None = None  # None: the algorithm asks the space
    fingerprint: str | None = None
    rungs: list[dict[str, float]] = field(default_factory=list)


class Algorithm(ABC):
    name: ClassVar[str]

    def __init__(self, space: Space, objectives: list[Objective], rng: np.random.Generator, **options: Any):
        self.space = space
        self.objectives = objectives
        self.rng = rng
        if options:
            raise AlgorithmConfigError(
                f"unknown options for algorithm {self.name!r}: {sorted(options)}; known: {self.option_names()}"
            )

    @classmethod
    def option_names(cls) -> list[str]:
        return []

    def learn_from(self, store: Store, config: StudyConfig) -> None:
        """Read prior data from other studies in the study's store (a ``warm_start`` option); the runner calls it
        once, before replay. Most algorithms learn only from their own study."""
        return None

    @abstractmethod
    def ask(self) -> Proposal: ...

    @abstractmethod
    def tell(self, result: Result) -> None: ...
