"""The surrogate algorithm: learns from what it is told, spreads parallel asks, replays to the same proposals,
runs through the real runner on a table, and takes finished studies as prior data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evaluators.config import EvaluatorConfig, Objective
from evaluators.synthetic import SyntheticEvaluator
from evaluators.table import FORMULA, GENOMES, KEY, run_columns, write_table
from search.algorithms import AlgorithmConfigError, Result, make_algorithm
from search.config import parse_config
from search.runner import StudyRunner
from search.store import Store
from search.study_run import StudyRun
from spaces import get_space
from tests.conftest import study_config

ONE = [Objective(name="val_acc@mlp")]
TWO = [Objective(name="val_acc@mlp"), Objective(name="loss@mlp", direction="min")]
SMALL = {"pool": 200, "mutants": 50, "trees": 20}
UNARY = ["identity", "neg", "abs", "square", "exp", "tanh", "sigmoid", "relu", "elu", "softplus", "sin", "gaussian"]


@pytest.fixture(scope="module")
def space():
    return get_space("activation", schema="unary_unary", max_params=0, unary_ops=UNARY)


_X = torch.linspace(-3, 3, 100)


def closeness_to_gelu(space, genome) -> float | None:
    """A synthetic score that depends on what the function computes: minus its distance to GELU on [-3, 3]."""
    with torch.no_grad():
        y = space.build(genome)(_X)
    if not torch.isfinite(y).all():
        return None
    return -float(((y - torch.nn.functional.gelu(_X)) ** 2).mean().clamp(max=100.0))


def _result(space, number: int, proposal, objectives=None) -> Result:
    value = closeness_to_gelu(space, proposal.genome)
    if objectives is None:
        objectives = {"val_acc@mlp": value, "loss@mlp": -value} if value is not None else {}
    status = "done" if objectives else "rejected"
    return Result(number, proposal.genome, proposal.generation, status, objectives, proposal.data)


def test_replaying_the_same_outcomes_gives_the_same_proposals(space) -> None:
    live = make_algorithm("surrogate", space, ONE, np.random.default_rng(0), {**SMALL, "initial": 3})
    proposals, results = [], []
    for i in range(12):
        proposals.append(live.ask())
        results.append(_result(space, i + 1, proposals[-1]))
        live.tell(results[-1])
    assert {p.origin for p in proposals} == {"surrogate"}
    for killed_after in (4, 9):
        resumed = make_algorithm("surrogate", space, ONE, np.random.default_rng(99), {**SMALL, "initial": 3})
        for result in results[:killed_after]:
            resumed.tell(result)
        for i in range(killed_after, 12):
            proposal = resumed.ask()
            assert space.canonical(proposal.genome) == space.canonical(proposals[i].genome)
            resumed.tell(results[i])


def test_parallel_asks_get_different_functions(space) -> None:
    algo = make_algorithm("surrogate", space, ONE, np.random.default_rng(1), {**SMALL, "initial": 2})
    for i in range(4):
        algo.tell(_result(space, i + 1, algo.ask()))
    in_flight = [algo.ask() for _ in range(8)]  # the model is in use; none told yet
    assert len(set(algo.pending)) == 8
    assert len({space.canonical(p.genome) for p in in_flight}) == 8


def test_several_objectives_and_rejections_are_learned(space) -> None:
    algo = make_algorithm("surrogate", space, TWO, np.random.default_rng(2), {**SMALL, "initial": 2})
    for i in range(15):
        proposal = algo.ask()
        algo.tell(_result(space, i + 1, proposal, {} if i % 4 == 0 else None))
    assert sum(o.values is None for o in algo.observed.values()) >= 4
    assert all(len(o.values) == 2 for o in algo.observed.values() if o.values is not None)


def test_the_model_finds_good_functions_sooner_than_random(space) -> None:
    genomes = space.enumerate()
    scores = {}
    for genome in genomes:
        with torch.no_grad():
            key = tuple(np.round(space.build(genome)(_X).numpy(), 4))
        scores.setdefault(key, closeness_to_gelu(space, genome))
    best = sorted((v for v in scores.values() if v is not None), reverse=True)
    threshold = best[len(scores) // 50]  # the top 2%

    def evaluations_to_threshold(name: str, seed: int) -> int:
        algo = make_algorithm(name, space, ONE, np.random.default_rng(seed), SMALL if name == "surrogate" else {})
        seen = set()
        for i in range(2000):
            proposal = algo.ask()
            algo.tell(_result(space, i + 1, proposal))
            seen.add(space.canonical(proposal.genome))
            value = closeness_to_gelu(space, proposal.genome)
            if value is not None and value >= threshold:
                return len(seen)
        return len(seen)

    surrogate = [evaluations_to_threshold("surrogate", seed) for seed in range(4)]
    random = [evaluations_to_threshold("random", seed) for seed in range(4)]
    assert np.median(surrogate) < np.median(random)


def test_the_baseline_design_starts_from_well_known_layers(space) -> None:
    """Where the space expresses them (``identity`` lets u(u(x)) be relu(x)), the first asks are the baselines;
    the closest functions stand in for the others (no ``gelu`` among UNARY)."""
    algo = make_algorithm("surrogate", space, ONE, np.random.default_rng(3), {**SMALL, "initial_design": "baselines"})
    first = [algo.ask() for _ in range(3)]
    outputs = [space.build(p.genome)(_X) for p in first]
    assert torch.allclose(outputs[0], torch.relu(_X))  # relu, then leaky_relu's nearest: relu is taken
    assert torch.allclose(outputs[2], torch.nn.functional.elu(_X))
    assert len({space.canonical(p.genome) for p in first}) == 3


def test_the_spectrum_feature_tells_apart_what_the_outputs_do_not_show(space) -> None:
    plain = make_algorithm("surrogate", space, ONE, np.random.default_rng(0), SMALL).features
    spectral = make_algorithm("surrogate", space, ONE, np.random.default_rng(0), {**SMALL, "spectrum": True})
    relu, tanh = space.parse("identity(relu(x))"), space.parse("identity(tanh(x))")
    extra = spectral.features(relu).features[len(plain(relu).features) :]
    assert extra.shape == (16,) and np.isfinite(extra).all()
    assert np.all(np.diff(extra) <= 0)  # log eigenvalues, largest first
    assert not np.allclose(extra, spectral.features(tanh).features[len(plain(tanh).features) :])


@pytest.mark.parametrize("model", ["forest", "gp"])
def test_both_models_propose_better_functions_once_trained(space, model) -> None:
    """After the same 24 random outcomes, the model's next 5 proposals are closer to GELU than random draws."""
    options = {**SMALL, "initial": 24, "model": model, "initial_design": "random"}
    algo = make_algorithm("surrogate", space, ONE, np.random.default_rng(5), options)
    for i in range(24):
        algo.tell(_result(space, i + 1, algo.ask()))
    chosen = []
    for i in range(5):
        proposal = algo.ask()
        chosen.append(closeness_to_gelu(space, proposal.genome))
        algo.tell(_result(space, 25 + i, proposal))
    drawn = [closeness_to_gelu(space, space.sample(np.random.default_rng(100 + i))) for i in range(200)]
    assert np.median([c for c in chosen if c is not None]) > np.median([d for d in drawn if d is not None])


def test_a_space_no_larger_than_the_pool_is_scored_whole(space) -> None:
    whole = make_algorithm("surrogate", space, ONE, np.random.default_rng(0), SMALL)  # 144 genomes, pool 200
    functions = {whole.features(g).identity for g in space.enumerate() if whole.features(g).passes_static}
    assert {c.identity for c in whole._pool(np.random.default_rng(1), [])} == functions
    sampled = make_algorithm("surrogate", space, ONE, np.random.default_rng(0), {**SMALL, "pool": 20})
    assert sampled.universe is None and len(sampled._pool(np.random.default_rng(1), [])) <= 20


def test_a_told_layer_keeps_its_other_initial_values_out_of_the_pool() -> None:
    """With learnable scalars, elu({0.5}*x) and elu({2.0}*x) are one layer from two starting points: once one is
    told, mutants that only move a learnable value are no candidates. With ``distinct_structures: false`` they are."""
    tree = get_space("activation", schema="tree", max_depth=3, max_nodes=6, max_params=2)
    told = Result(1, tree.parse("elu({0.5}*x)"), 0, "done", {"val_acc@mlp": 0.5}, {})
    same = tree.structure(told.genome)
    counts = {}
    for distinct in (True, False):
        options = {**SMALL, "distinct_shapes": False, "distinct_structures": distinct}
        algo = make_algorithm("surrogate", tree, ONE, np.random.default_rng(0), options)
        algo.tell(told)
        pool = algo._pool(np.random.default_rng(1), list(algo.observed.values()))
        counts[distinct] = sum(tree.structure(c.genome) == same for c in pool)
    assert counts == {True: 0, False: counts[False]} and counts[False] >= 3


def test_a_told_function_keeps_its_rescaled_and_negated_copies_out_of_the_pool(space) -> None:
    """After relu(x) is told, -relu(x) (the same layer once the next Linear absorbs the sign) is no candidate;
    relu(-x), its mirror image, still is. With ``distinct_shapes: false`` both are."""
    by_formula = {space.describe(g): g for g in space.enumerate()}
    told = Result(1, by_formula["identity(relu(x))"], 0, "done", {"val_acc@mlp": 0.5}, {})
    pools = {}
    for distinct in (True, False):
        algo = make_algorithm("surrogate", space, ONE, np.random.default_rng(0), {**SMALL, "distinct_shapes": distinct})
        algo.tell(told)
        pools[distinct] = {space.describe(c.genome) for c in algo._pool(np.random.default_rng(1), [])}
    assert pools[False] - pools[True] == {"-relu(x)"}  # the space's one other copy of relu
    assert {"relu(-x)", "-elu(x)"} <= pools[True]


@pytest.mark.parametrize("stopped", ["failure", "ranked"])
def test_a_late_promotion_replaces_what_the_model_knew_of_its_layer(space, stopped) -> None:
    """A layer stopped at a halving rung and later promoted (a new candidate of the same genome) is told twice:
    the model keeps what trained furthest, whichever order the tells come in (a duplicate hears the stop late)."""
    relu = space.parse("identity(relu(x))")
    stop = Result(1, relu, 0, "rejected", {}, {}, rungs=[{"val_acc@mlp": 0.2}])
    full = Result(2, relu, 0, "done", {"val_acc@mlp": 0.6}, {"promotion": {"from_rung": 1}})
    for order in ([stop, full], [full, stop]):
        algo = make_algorithm("surrogate", space, ONE, np.random.default_rng(0), {**SMALL, "stopped": stopped})
        for result in order:
            algo.tell(result)
        (observation,) = algo.observed.values()
        assert (observation.candidate_id, observation.values, observation.rung) == (2, (0.6,), None)


def test_bad_options_are_refused(space) -> None:
    for options, message in [
        ({"acquisition": "pi"}, "acquisition"),
        ({"initial": 0}, "initial"),
        ({"warm_start": [3]}, "must list study names"),
        ({"temperature": 1}, "unknown options"),
        ({"model": "svm"}, "model must be one of"),
        ({"initial_design": "grid"}, "initial_design must be one of"),
        ({"spectrum": "yes"}, "spectrum must be true or false"),
        ({"distinct_shapes": 1}, "distinct_shapes must be true or false"),
        ({"distinct_structures": "no"}, "distinct_structures must be true or false"),
        ({"stopped": "rejected"}, "stopped must be one of"),
    ]:
        with pytest.raises(AlgorithmConfigError, match=message):
            make_algorithm("surrogate", space, ONE, np.random.default_rng(0), options)


# -- through the real runner, on a table ------------------------------------------------------------

SPACE = {"kind": "activation", "options": {"schema": "unary_unary", "max_params": 0, "unary_ops": UNARY}}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """A table of synthetic outcomes for every function of SPACE (made in-process: no training)."""
    space = get_space(SPACE["kind"], **SPACE["options"])
    config = EvaluatorConfig(kind="synthetic", objectives=[{"name": "val_acc@mlp"}])
    evaluator = SyntheticEvaluator(space, config)
    from evaluators.fingerprint import fingerprint

    rows = {}
    for genome in space.enumerate():
        key = fingerprint(space, genome, config.fingerprint)
        if key not in rows:
            rows[key] = {KEY: key, FORMULA: space.describe(genome), GENOMES: 1, "genome": "{}"}
            rows[key].update(run_columns(evaluator.evaluate(genome), 0))
    out = tmp_path_factory.mktemp("surrogate") / "table.csv"
    write_table(out, list(rows.values()), {"fingerprint": config.fingerprint.model_dump(exclude={"enabled"})})
    return out


def _config(tmp_path: Path, table: Path, name: str, evaluations: int, **options) -> dict:
    config = study_config(name, tmp_path, space=SPACE)
    config["algorithm"] = {"name": "surrogate", "options": {**SMALL, "initial": 3, **options}}
    config["evaluator"] = {"kind": "table", "objectives": [{"name": "val_acc@mlp"}], "table": {"path": str(table)}}
    config["budget"] = {"evaluations": evaluations}
    config["resources"] = {"workers": 1, "max_in_flight": 1}  # one at a time: the proposals are comparable
    return config


class _StopAfterSix(StudyRun):
    def on_result(self, job, result) -> None:
        super().on_result(job, result)
        if self.progress.finished >= 6:
            self.runner.request_stop()


def _proposals(store: Store, name: str) -> list[str]:
    study = store.get_study(name)
    return [c.canonical for c, _ in store.evaluations(study.id, purpose="search")]


def test_a_killed_and_resumed_study_makes_the_same_proposals(ray_address, tmp_path, table) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    straight = parse_config(_config(tmp_path, table, "straight", 12))
    StudyRunner(straight, store, progress=False).run()

    interrupted = parse_config(_config(tmp_path, table, "interrupted", 12))
    first = StudyRunner(interrupted, store, progress=False)
    first.run_class = _StopAfterSix
    assert first.run().status == "stopped"
    assert len(_proposals(store, "interrupted")) < 12
    StudyRunner.for_existing(store, "interrupted", progress=False).run(resume=True)

    assert store.get_study("interrupted").status == "finished"
    assert _proposals(store, "interrupted") == _proposals(store, "straight")


def test_warm_start_reads_finished_studies_evaluated_the_same_way(ray_address, tmp_path, table) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    prior = _config(tmp_path, table, "prior", 10)
    prior["algorithm"] = {"name": "random"}
    StudyRunner(parse_config(prior), store, progress=False).run()

    warm = parse_config(_config(tmp_path, table, "warm", 5, warm_start="prior"))
    runner = StudyRunner(warm, store, progress=False)
    assert len(runner._unused_algorithm.prior) >= 8
    assert runner.run().status == "finished"

    with pytest.raises(AlgorithmConfigError, match="no study named 'nope'"):
        StudyRunner(parse_config(_config(tmp_path, table, "bad", 5, warm_start="prior, nope")), store, progress=False)
    other = _config(tmp_path, table, "other", 5, warm_start="prior")
    other["evaluator"]["table"]["seed"] = 0
    with pytest.raises(AlgorithmConfigError, match="not comparable"):
        StudyRunner(parse_config(other), store, progress=False)


def test_the_norm_act_space_is_described_by_its_probe_outputs() -> None:
    normact = get_space("normact")
    algo = make_algorithm("surrogate", normact, ONE, np.random.default_rng(0), {**SMALL, "pool": 60, "initial": 2})
    for i in range(4):
        proposal = algo.ask()
        normact.validate(proposal.genome)
        algo.tell(Result(i + 1, proposal.genome, 0, "done", {"val_acc@mlp": 0.1 * i}, proposal.data))
    assert len(algo.observed) == 4
    # the (4, 8, 4, 4) probe's outputs, flattened, then the same up to scale, shift and sign
    assert {o.features.shape for o in algo.observed.values()} == {(1024,)}
