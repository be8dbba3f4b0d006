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
        make_algorithm("optuna_tpe", get_space("normact"), ONE, np.random.default_rng(0), {})


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


def _repeating_results(space, count: int) -> list[Result]:
    """``count`` results over a dozen layers: exact repeats (same key) and functional twins (same fingerprint)."""
    rng = np.random.default_rng(5)
    layers = [space.sample(rng) for _ in range(12)]
    results = []
    for i in range(count):
        index = int(rng.integers(len(layers)))
        twin = i % 3 == 0  # told under another key, as a fingerprint duplicate is
        values = {"val_acc@mlp": 0.1 + 0.07 * index, "loss@mlp": 1.0 - 0.05 * (index % 5)}
        key = f"twin{i}" if twin else space.key(layers[index])
        results.append(Result(i + 1, layers[index], 0, "done", values, key=key, fingerprint=f"fp{index}"))
    return results


@pytest.mark.parametrize("cls", [NSGA2, ParetoTournament, RegularizedEvolution])
def test_populations_never_hold_a_layer_twice_nor_exceed_their_size(space, cls) -> None:
    algo = cls(space, TWO, np.random.default_rng(0), population_size=8, tournament_size=2)
    for result in _repeating_results(space, 300):
        algo.tell(result)
        members = algo.archive if cls is NSGA2 else algo.population
        layers = [space.key(m.genome) for m in members]
        assert len(set(layers)) == len(layers) <= 8
        algo.ask()
    assert len(members) == 8


def test_a_duplicate_told_again_adds_no_member(space) -> None:
    algo = NSGA2(space, TWO, np.random.default_rng(0), population_size=4)
    genome = space.sample(np.random.default_rng(1))
    values = {"val_acc@mlp": 0.9, "loss@mlp": 0.1}
    algo.tell(Result(1, genome, 0, "done", values, key="k", fingerprint="f"))
    algo.tell(Result(2, genome, 0, "done", values, key="k"))  # same canonical form
    algo.tell(Result(3, space.sample(np.random.default_rng(2)), 0, "done", values, key="k2", fingerprint="f"))
    assert [m.candidate_id for m in algo.archive] == [1]


@pytest.mark.parametrize("schema", ["unary_unary", "binary_unary", "tree"])
@pytest.mark.parametrize("name", ["optuna_tpe", "optuna_nsga2"])
def test_optuna_samplers_drive_the_activation_space(schema: str, name: str) -> None:
    space = get_space("activation", schema=schema, max_params=0 if schema != "tree" else 2)
    options = {"n_startup_trials": 5} if name == "optuna_tpe" else {"population_size": 6}
    algo = make_algorithm(name, space, TWO, np.random.default_rng(0), options)
    keys = set()
    for i in range(30):
        proposal = algo.ask()
        space.validate(proposal.genome)
        keys.add(space.key(proposal.genome))
        values = {"val_acc@mlp": float(np.random.default_rng(i).random()), "loss@mlp": 0.5}
        algo.tell(Result(i + 1, proposal.genome, 0, "done", values, proposal.data))
    told = [t for t in algo.study.trials if t.state.name != "PRUNED"]  # PRUNED: a repeat it was asked past
    assert len(told) == 30 and all(t.state.name == "COMPLETE" for t in told)
    assert len(keys) == 30


def test_optuna_tells_a_result_asked_by_an_earlier_run_to_a_trial_of_its_own_parameters() -> None:
    """Trial numbers restart with each run: a result the killed run asked (in flight, then queued again) must not
    land on the resumed run's trial of the same number."""
    space = get_space("activation", schema="unary_unary", max_params=0)
    first = OptunaTPE(space, ONE, np.random.default_rng(0), n_startup_trials=2)
    asked = [first.ask() for _ in range(3)]
    results = [Result(i + 1, p.genome, 0, "done", {"val_acc@mlp": 0.1 * (i + 1)}, p.data) for i, p in enumerate(asked)]
    for result in results[:2]:  # the third was in flight when the run stopped
        first.tell(result)
    resumed = OptunaTPE(space, ONE, np.random.default_rng(1), n_startup_trials=2)
    for result in results[:2]:
        resumed.tell(result)
    fresh = resumed.ask()
    assert fresh.data["trial"] == asked[2].data["trial"] == 2  # the same number, another trial
    resumed.tell(results[2])
    resumed.tell(Result(4, fresh.genome, 0, "done", {"val_acc@mlp": 0.9}, fresh.data))
    told = sorted((t.params == fresh.data["params"], t.value) for t in resumed.study.trials)
    assert [t.state.name for t in resumed.study.trials] == ["COMPLETE"] * 4
    assert told == [(False, 0.1), (False, 0.2), (False, pytest.approx(0.3)), (True, 0.9)]
    assert [t.params for t in resumed.study.trials if t.value == pytest.approx(0.3)] == [asked[2].data["params"]]


@pytest.mark.parametrize("name", ["optuna_tpe", "optuna_nsga2"])
def test_optuna_proposes_each_layer_of_a_small_space_once(name: str) -> None:
    """TPE told a layer's stored result again proposes it again; asked on, it moves to layers not proposed yet."""
    space = get_space("activation", schema="unary_unary", max_params=0, unary_ops=["relu", "tanh", "sin", "abs"])
    options = {"n_startup_trials": 3} if name == "optuna_tpe" else {"population_size": 4}
    algo = make_algorithm(name, space, ONE, np.random.default_rng(0), options)
    keys = []
    for i in range(16):  # the space's 16 genomes
        proposal = algo.ask()
        keys.append(space.key(proposal.genome))
        value = {"val_acc@mlp": 0.9 if "relu" in space.describe(proposal.genome) else 0.1}
        algo.tell(Result(i + 1, proposal.genome, 0, "done", value, proposal.data, key=keys[-1]))
    assert len(set(keys)) == 16
