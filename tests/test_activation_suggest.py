"""The activation space under the search algorithms: Optuna's suggest, mutation operators that fit the limits,
and seeds a configuration cannot express."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from spaces import GenomeError, get_space
from spaces.activation.tree import param_slots

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _suggested(space, trials: int = 40, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    genomes = []
    for _ in range(trials):
        trial = study.ask()
        genomes.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return genomes


def test_fixed_schemas_suggest_one_categorical_op_per_slot() -> None:
    space = get_space("activation", schema="binary_unary", max_params=0)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    genome = space.suggest(trial)
    # max_params: 0 leaves no room for a parametric binary op's beta: the root draws from the plain ones
    assert sorted(trial.params) == ["n.0:unary", "n.1:unary", "n:binary_plain"]
    assert genome["expr"]["op"] == trial.params["n:binary_plain"]
    assert genome["expr"]["args"][1]["op"] == trial.params["n.1:unary"]


@pytest.mark.parametrize(
    "options",
    [
        {"schema": "unary_unary", "max_params": 0},
        {"schema": "binary_unary", "max_params": 2},
        {"schema": "core_unit", "units": 2},
        {"schema": "tree", "max_depth": 3, "max_nodes": 7, "max_params": 1},
        {"schema": "tree", "max_nodes": 5, "binary_ops": ["blend", "gauss_diff"], "max_params": 2},
    ],
)
def test_suggested_genomes_are_valid_and_varied(options: dict) -> None:
    space = get_space("activation", **options)
    genomes = _suggested(space)
    for genome in genomes:
        space.validate(genome)
    assert len({space.key(g) for g in genomes}) > 20
    if space.max_params:
        assert any(param_slots(g["expr"]) for g in genomes)


def test_the_free_tree_encoding_reaches_deep_trees_and_constants() -> None:
    space = get_space("activation", schema="tree", max_depth=3, const_probability=0.5)
    genomes = _suggested(space, trials=80)
    depths = {_depth(g["expr"]) for g in genomes}
    assert depths == {1, 2, 3}
    assert any('"const"' in space.canonical(g) for g in genomes)


def _depth(node: dict) -> int:
    return 1 + max(_depth(a) for a in node["args"]) if "args" in node else 0


def test_parameter_mutations_are_not_offered_without_room_for_scalars() -> None:
    space = get_space("activation", schema="binary_unary", max_params=0)
    assert space.operators == ["change_op", "regenerate_subtree"]
    rng = np.random.default_rng(0)
    genome = space.sample(rng)
    for _ in range(200):
        genome, op = space.mutate(genome, rng)
        assert op in space.operators


def test_operators_that_cannot_change_this_genome_are_not_drawn() -> None:
    space = get_space("activation", schema="tree", max_params=2, param_probability=0.0)
    rng = np.random.default_rng(1)
    genome = space.sample(rng)
    assert not param_slots(genome["expr"])
    drawn = {space.mutate(genome, np.random.default_rng(seed))[1] for seed in range(200)}
    assert "remove_param" not in drawn and "perturb_param" not in drawn
    assert "add_param" in drawn


def test_regeneration_keeps_the_root_of_a_fixed_schema() -> None:
    space = get_space("activation", schema="binary_unary", max_params=0)
    rng = np.random.default_rng(2)
    genome = space.sample(rng)
    for _ in range(100):
        child, op = space.mutate(genome, rng)
        if op == "regenerate_subtree":
            assert child["expr"]["op"] == genome["expr"]["op"]
        genome = child


def test_a_named_seed_the_schema_cannot_express_is_explained_in_one_line() -> None:
    space = get_space("activation", schema="binary_unary", max_params=0)
    assert "swish" not in space.seeds()
    with pytest.raises(GenomeError) as info:
        space.parse("swish")
    message = str(info.value)
    assert "\n" not in message
    assert "seed 'swish'" in message and "max_params=0" in message and "learnable scalars" in message
    assert space.describe(space.parse("relu")) == "relu(x) + zero(x)"


def test_the_runner_reports_such_a_seed_in_one_line(tmp_path) -> None:
    from search.config import ConfigError, parse_config
    from search.runner import StudyRunner
    from search.store import Store
    from tests.conftest import study_config

    space = {"kind": "activation", "options": {"schema": "binary_unary", "max_params": 0}, "seeds": ["relu", "swish"]}
    config = parse_config(study_config("seeds", tmp_path, space=space))
    with pytest.raises(ConfigError) as info:
        StudyRunner(config, Store(config.store.url), progress=False)
    assert "\n" not in str(info.value) and "seed 'swish'" in str(info.value) and "max_params=0" in str(info.value)
