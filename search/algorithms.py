"""Search algorithms behind one ask/tell interface (``search.ask_tell``), registered by name.

State is never pickled: on resume the runner replays the stored outcomes through ``tell`` in the order they
finished, which rebuilds populations, archives and Optuna studies.
"""

from __future__ import annotations

import math
import uuid
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import optuna
from deap import base as deap_base
from deap import tools

from evaluators.config import Objective
from evaluators.vocabulary import Status
from search.ask_tell import Algorithm, AlgorithmConfigError, Proposal, Result
from search.objectives import pareto_mask, pareto_ranks, signed_values
from search.surrogate import Surrogate
from spaces import Genome, Space


class RandomSearch(Algorithm):
    name = "random"

    def ask(self) -> Proposal:
        return Proposal(self.space.sample(self.rng), origin="sample")

    def tell(self, result: Result) -> None:
        pass


@dataclass
class _Member:
    candidate_id: int
    genome: Genome
    generation: int
    values: tuple[float, ...]
    fitness: Any = None  # DEAP fitness, for the multi-objective selections


class _Evolution(Algorithm):
    """Shared machinery: an aging population of valid members, filled by random samples first.

    A layer joins at most once (by canonical key or fingerprint): a duplicate told again, even after its original
    aged out, adds no member, so copies of one good layer never crowd out the rest.
    """

    def __init__(
        self,
        space: Space,
        objectives: list[Objective],
        rng: np.random.Generator,
        population_size: int = 50,
        tournament_size: int = 10,
        crossover_probability: float = 0.0,
        **options: Any,
    ):
        super().__init__(space, objectives, rng, **options)
        if population_size < 2 or not 1 <= tournament_size <= population_size:
            raise AlgorithmConfigError(
                f"need population_size >= 2 and 1 <= tournament_size <= population_size "
                f"(got {population_size}, {tournament_size})"
            )
        if not 0 <= crossover_probability <= 1:
            raise AlgorithmConfigError(f"crossover_probability must be in [0, 1], got {crossover_probability}")
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.crossover_probability = crossover_probability
        self.population: deque[_Member] = deque(maxlen=population_size)
        self._joined: set[str] = set()  # identities (key and fingerprint) of every layer that became a member
        weights = (1.0,) * len(objectives)
        self._fitness_cls = type("Fitness", (deap_base.Fitness,), {"weights": weights})

    @classmethod
    def option_names(cls) -> list[str]:
        return ["population_size", "tournament_size", "crossover_probability"]

    def _member(self, result: Result) -> _Member | None:
        """The population member for a finished evaluation; None if it is not a valid parent or already joined."""
        values = signed_values(result.objectives, self.objectives) if result.status == Status.DONE else None
        if values is None:
            return None
        identities = {f"key:{result.key or self.space.key(result.genome)}"}
        if result.fingerprint:
            identities.add(f"fingerprint:{result.fingerprint}")
        if identities & self._joined:
            return None
        self._joined |= identities
        return _Member(result.candidate_id, result.genome, result.generation, values, self._fitness_cls(values))

    def tell(self, result: Result) -> None:
        member = self._member(result)
        if member is not None:
            self.population.append(member)  # the oldest member ages out (regularized evolution)

    def _evaluated_members(self) -> int:
        return len(self.population)

    def ask(self) -> Proposal:
        if self._evaluated_members() < self.population_size:
            return Proposal(self.space.sample(self.rng), origin="sample")
        parent = self.select_parent()
        if self.crossover_probability and self.rng.random() < self.crossover_probability:
            mate = self.select_parent()
            child = self.space.crossover(parent.genome, mate.genome, self.rng)
            if child is not None:
                return Proposal(
                    child,
                    origin="crossover",
                    parents=[parent.candidate_id, mate.candidate_id],
                    generation=max(parent.generation, mate.generation) + 1,
                )
        genome, op = self.space.mutate(parent.genome, self.rng)
        return Proposal(
            genome,
            origin="mutate",
            parents=[parent.candidate_id],
            mutation_op=op,
            generation=parent.generation + 1,
        )

    def _tournament(self) -> list[_Member]:
        idx = self.rng.choice(len(self.population), size=self.tournament_size, replace=False)
        return [self.population[i] for i in idx]

    @abstractmethod
    def select_parent(self) -> _Member: ...


class RegularizedEvolution(_Evolution):
    """Aging evolution (Real et al.): best of a tournament by the first objective."""

    name = "evolution"

    def select_parent(self) -> _Member:
        return max(self._tournament(), key=lambda m: (m.values[0], m.candidate_id))


class ParetoTournament(_Evolution):
    """EvoNorm's selection: the winner is drawn uniformly from the Pareto front of the tournament sample."""

    name = "pareto"

    def select_parent(self) -> _Member:
        sample = self._tournament()
        on_front = pareto_mask(np.array([m.values for m in sample]))
        front = [m for m, keep in zip(sample, on_front, strict=True) if keep]
        front.sort(key=lambda m: m.candidate_id)  # deterministic order before the random draw
        return front[int(self.rng.integers(len(front)))]


class NSGA2(_Evolution):
    """Steady-state NSGA-II: parents by binary tournament on (rank, crowding) over the NSGA-II survivors
    of everything evaluated so far. The archive holds at most ``population_size`` distinct layers: each tell
    past that drops the worst by (rank, crowding)."""

    name = "nsga2"

    def __init__(self, space: Space, objectives: list[Objective], rng: np.random.Generator, **options: Any):
        options.setdefault("tournament_size", 2)
        super().__init__(space, objectives, rng, **options)
        self.archive: list[_Member] = []
        self._survivors: list[_Member] | None = None
        self._rank: dict[int, int] = {}

    def tell(self, result: Result) -> None:
        member = self._member(result)
        if member is None:
            return
        self.archive.append(member)
        if len(self.archive) > self.population_size:
            self.archive = self._select(self.population_size)
        self._survivors = None

    def _evaluated_members(self) -> int:
        return len(self.archive)

    def _select(self, k: int) -> list[_Member]:
        """NSGA-II's best ``k`` of the archive; sets every chosen member's crowding distance."""
        return tools.selNSGA2(sorted(self.archive, key=lambda m: m.candidate_id), k)

    def select_parent(self) -> _Member:
        if self._survivors is None:
            survivors = self._select(len(self.archive))
            ranks = pareto_ranks(np.array([m.values for m in survivors]))
            self._rank = {id(m): int(r) for m, r in zip(survivors, ranks, strict=True)}
            self._survivors = survivors
        a, b = (self._survivors[i] for i in self.rng.choice(len(self._survivors), size=2, replace=False))
        ka = (-self._rank[id(a)], a.fitness.crowding_dist)
        kb = (-self._rank[id(b)], b.fitness.crowding_dist)
        return a if ka >= kb else b


REPEAT_ASKS = 100  # Optuna asks per proposal while it repeats layers proposed before; the last is passed on


class OptunaAlgorithm(Algorithm):
    """Optuna samplers for categorical/parametric spaces; the space provides ``suggest(trial) -> genome``."""

    name = "optuna"
    sampler_name: ClassVar[str]

    def __init__(self, space: Space, objectives: list[Objective], rng: np.random.Generator, **options: Any):
        if not space.supports_suggest():
            raise AlgorithmConfigError(
                f"algorithm {self.name!r} needs a space with suggest(trial); space {space.kind!r} has none: "
                "use random, evolution, pareto or nsga2"
            )
        sampler_options = dict(options)
        super().__init__(space, objectives, rng)
        seed = int(rng.integers(2**31 - 1))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        directions = ["maximize" if o.direction == "max" else "minimize" for o in objectives]
        self.study = optuna.create_study(directions=directions, sampler=self.make_sampler(seed, sampler_options))
        self._trials: dict[int, optuna.trial.Trial] = {}
        # Trial numbers restart with every run of a study: a result asked by an earlier run (in flight at a kill,
        # or a late promotion of its candidate) must not be matched to this run's trial of the same number.
        self._run = uuid.uuid4().hex
        self._proposed: set[str] = set()  # canonical keys asked or told
        self._earlier_asks: set[tuple[Any, Any]] = set()  # (run, trial) told from earlier runs: their repeats added

    @abstractmethod
    def make_sampler(self, seed: int, options: dict[str, Any]) -> optuna.samplers.BaseSampler: ...

    def ask(self) -> Proposal:
        repeats: list[dict[str, Any]] = []
        distributions: dict[str, str] = {}
        for attempt in range(REPEAT_ASKS):
            trial = self.study.ask()
            genome = self.space.suggest(trial)
            distributions.update(
                {k: optuna.distributions.distribution_to_json(d) for k, d in trial.distributions.items()}
            )
            key = self.space.key(genome)
            if key not in self._proposed or attempt == REPEAT_ASKS - 1:
                break
            # A layer proposed before: the runner would answer with its stored result, and TPE, told that again,
            # proposes it once more (thousands of times on a small space). Told as cut short, it counts among the
            # worse trials and TPE moves on; the proposal's data keep it, so replay adds it too.
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            repeats.append(trial.params)
        self._proposed.add(key)
        self._trials[trial.number] = trial
        data = {"trial": trial.number, "run": self._run, "params": trial.params, "distributions": distributions}
        return Proposal(genome, origin="optuna", data={**data, "repeats": repeats} if repeats else data)

    def tell(self, result: Result) -> None:
        data = result.proposal_data
        if result.key is not None:  # the runner's: seeds, other runs' proposals, duplicates
            self._proposed.add(result.key)
        values = [result.objectives.get(o.name) for o in self.objectives]
        ok = result.status == Status.DONE and all(v is not None and math.isfinite(v) for v in values)
        trial = self._trials.pop(data.get("trial"), None) if data.get("run") == self._run else None
        if trial is not None:
            self.study.tell(trial, values if ok else None, state=None if ok else optuna.trial.TrialState.FAIL)
            return
        if "params" not in data:
            return  # a seed or a proposal from another algorithm: Optuna has no trial for it
        # Replay on resume, an earlier run's trial, or a late promotion of a told one (its proposal data are its
        # original's): add finished trials with the same parameters, the repeats skipped before it once.
        distributions = {k: optuna.distributions.json_to_distribution(v) for k, v in data["distributions"].items()}
        asked = (data.get("run"), data.get("trial"))
        told = data.get("run") == self._run or asked in self._earlier_asks  # this run told its own when it asked
        for params in [] if told else data.get("repeats", []):
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions={k: distributions[k] for k in params},
                    state=optuna.trial.TrialState.PRUNED,
                )
            )
        self._earlier_asks.add(asked)
        self.study.add_trial(
            optuna.trial.create_trial(
                params=data["params"],
                distributions={k: distributions[k] for k in data["params"]},
                values=values if ok else None,
                state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
            )
        )


class OptunaTPE(OptunaAlgorithm):
    name = "optuna_tpe"

    @classmethod
    def option_names(cls) -> list[str]:
        return ["n_startup_trials", "multivariate", "constant_liar"]

    def make_sampler(self, seed: int, options: dict[str, Any]) -> optuna.samplers.BaseSampler:
        unknown = set(options) - set(self.option_names())
        if unknown:
            raise AlgorithmConfigError(f"unknown options for {self.name!r}: {sorted(unknown)}")
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=options.get("n_startup_trials", 10),
            multivariate=options.get("multivariate", True),
            constant_liar=options.get("constant_liar", True),  # parallel asks must not all propose the same point
        )


class OptunaNSGA2(OptunaAlgorithm):
    name = "optuna_nsga2"

    @classmethod
    def option_names(cls) -> list[str]:
        return ["population_size"]

    def make_sampler(self, seed: int, options: dict[str, Any]) -> optuna.samplers.BaseSampler:
        unknown = set(options) - set(self.option_names())
        if unknown:
            raise AlgorithmConfigError(f"unknown options for {self.name!r}: {sorted(unknown)}")
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=options.get("population_size", 20))


ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls
    for cls in (RandomSearch, RegularizedEvolution, ParetoTournament, NSGA2, OptunaTPE, OptunaNSGA2, Surrogate)
}


def make_algorithm(
    name: str, space: Space, objectives: list[Objective], rng: np.random.Generator, options: dict[str, Any]
) -> Algorithm:
    if name not in ALGORITHMS:
        raise AlgorithmConfigError(f"unknown algorithm {name!r}; known: {', '.join(sorted(ALGORITHMS))}")
    try:
        return ALGORITHMS[name](space, objectives, rng, **options)
    except TypeError as exc:
        raise AlgorithmConfigError(f"bad options for algorithm {name!r}: {exc}") from None
