"""Ask/tell algorithms on the real activation and KAN spaces: selection rules, aging, Optuna replay."""

from __future__ import annotations

import numpy as np
import pytest

from evaluators.config import Objective
from search.algorithms import (
    NSGA2,
    AlgorithmConfigError,
    OptunaTPE,
    ParetoTournament,
    RandomSearch,
    RegularizedEvolution,
    Result,
    make_algorithm,
)
from spaces import get_space

ONE = [Objective(name="val_acc@mlp", direction="max")]
TWO = [Objective(name="val_acc@mlp", direction="max"), Objective(name="loss@mlp", direction="min")]


@pytest.fixture(scope="module")
def space():
    return get_space("activation", schema="tree", max_depth=3)


def _fill(algo, space, values: list[tuple[float, ...]], names: list[str]) -> list[Result]:
    results = []
    for i, vals in enumerate(values):
        genome = space.sample(np.random.default_rng(i))
        result = Result(i + 1, genome, 0, "done", dict(zip(names, vals, strict=True)))
        algo.tell(result)
        results.append(result)
    return results


def test_random_search_is_deterministic_under_a_seed(space) -> None:
    a = RandomSearch(space, ONE, np.random.default_rng(3))
    b = RandomSearch(space, ONE, np.random.default_rng(3))
    assert [a.ask().genome for _ in range(5)] == [b.ask().genome for _ in range(5)]


def test_evolution_samples_until_the_population_is_full_then_mutates_the_tournament_best(space) -> None:
    algo = RegularizedEvolution(space, ONE, np.random.default_rng(0), population_size=4, tournament_size=4)
    assert algo.ask().origin == "sample"
    _fill(algo, space, [(0.1,), (0.9,), (0.3,), (0.2,)], ["val_acc@mlp"])
    proposals = [algo.ask() for _ in range(10)]
    assert all(p.origin == "mutate" and p.parents == [2] and p.mutation_op for p in proposals)
    assert all(p.generation == 1 for p in proposals)


def test_evolution_ages_out_the_oldest_member(space) -> None:
    algo = RegularizedEvolution(space, ONE, np.random.default_rng(0), population_size=3, tournament_size=3)
    _fill(algo, space, [(0.9,), (0.1,), (0.2,), (0.3,)], ["val_acc@mlp"])
    assert [m.candidate_id for m in algo.population] == [2, 3, 4]  # the best, but oldest, is gone
    assert {p.parents[0] for p in (algo.ask() for _ in range(5))} == {4}


def test_rejected_and_failed_candidates_never_become_parents(space) -> None:
    algo = RegularizedEvolution(space, ONE, np.random.default_rng(0), population_size=2, tournament_size=2)
    algo.tell(Result(1, space.sample(np.random.default_rng(1)), 0, "rejected", {}))
    algo.tell(Result(2, space.sample(np.random.default_rng(2)), 0, "failed", {}))
    algo.tell(Result(3, space.sample(np.random.default_rng(3)), 0, "done", {"val_acc@mlp": float("nan")}))
    assert len(algo.population) == 0


def test_pareto_tournament_draws_winners_from_the_front_of_the_sample(space) -> None:
    algo = ParetoTournament(space, TWO, np.random.default_rng(0), population_size=5, tournament_size=5)
    # (acc, loss): 1 and 2 are non-dominated; 3, 4, 5 are each dominated by one of them.
    _fill(algo, space, [(0.9, 0.5), (0.6, 0.1), (0.5, 0.6), (0.8, 0.7), (0.55, 0.2)], ["val_acc@mlp", "loss@mlp"])
    parents = {algo.ask().parents[0] for _ in range(40)}
    assert parents == {1, 2}


def test_nsga2_keeps_the_best_fronts_and_prefers_lower_rank(space) -> None:
    algo = NSGA2(space, TWO, np.random.default_rng(0), population_size=3)
    values = [(0.9, 0.5), (0.6, 0.1), (0.1, 0.9), (0.2, 0.95), (0.15, 0.99), (0.7, 0.3)]
    _fill(algo, space, values, ["val_acc@mlp", "loss@mlp"])
    parents = [algo.ask().parents[0] for _ in range(60)]
    assert set(parents) <= {1, 2, 6}  # the three non-dominated members survive; the dominated never parent


def test_unknown_algorithm_and_options_are_refused(space) -> None:
    with pytest.raises(AlgorithmConfigError, match="unknown algorithm 'annealing'"):
        make_algorithm("annealing", space, ONE, np.random.default_rng(0), {})
    with pytest.raises(AlgorithmConfigError, match="temperature"):
        make_algorithm("evolution", space, ONE, np.random.default_rng(0), {"temperature": 1})
    with pytest.raises(AlgorithmConfigError, match="tournament_size"):
        make_algorithm("evolution", space, ONE, np.random.default_rng(0), {"population_size": 4, "tournament_size": 9})
    with pytest.raises(AlgorithmConfigError, match="suggest"):
        make_algorithm("optuna_tpe", space, ONE, np.random.default_rng(0), {})


def test_optuna_replay_rebuilds_the_study_from_stored_proposals() -> None:
    kan = get_space("kan")
    objectives = [Objective(name="val_rmse@fit", direction="min")]
    live = OptunaTPE(kan, objectives, np.random.default_rng(0), n_startup_trials=3)
    stored = []
    for i in range(6):
        proposal = live.ask()
        assert proposal.origin == "optuna" and proposal.data["params"]
        status = "failed" if i == 2 else "done"
        result = Result(
            i + 1,
            proposal.genome,
            0,
            status,
            {} if status == "failed" else {"val_rmse@fit": 1.0 / (i + 1)},
            proposal.data,
        )
        live.tell(result)
        stored.append(result)
    replayed = OptunaTPE(kan, objectives, np.random.default_rng(1), n_startup_trials=3)
    for result in stored:
        replayed.tell(result)
    states = [t.state.name for t in replayed.study.trials]
    assert states == [t.state.name for t in live.study.trials]
    assert replayed.study.best_value == pytest.approx(live.study.best_value)
    assert [t.params for t in replayed.study.trials] == [t.params for t in live.study.trials]
