"""KanSpace: the genome contract (sample, mutate, crossover, validate, canonical), Optuna, seeds, tasks."""

from __future__ import annotations

import re

import numpy as np
import optuna
import pytest
import torch

from evaluators.registry import get_arch, get_dataset
from spaces import GenomeError, SpaceConfigError, get_space
from spaces.kan import KanSpace, SelectableKANLayer

MUTATION_OPS = {"family", "norm", "base", "width", "add_layer", "remove_layer", "grid", "order", "degree", "candidates"}


def _genome(**layer0) -> dict:
    spec = {"family": "bspline", "grid": 5, "order": 3, "base": True, "norm": "none"} | layer0
    return {"space": "kan", "v": 1, "hidden": [4], "layers": [spec, {"family": "mlp", "norm": "none"}]}


def test_registered_by_kind_name() -> None:
    assert isinstance(get_space("kan"), KanSpace)
    assert isinstance(get_space("kan", families=["bspline", "fourier"], max_hidden=3), KanSpace)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"families": ["bspline", "spline9"]}, "unknown values ['spline9']"),
        ({"widths": []}, "must not be empty"),
        ({"grids": [1]}, "integers in [2, 64]"),
        ({"min_hidden": 3, "max_hidden": 1}, "min_hidden <= max_hidden"),
        ({"candidates": ["rbf"]}, "at least 2 families"),
        ({"colour": "red"}, "bad options"),
    ],
)
def test_bad_options_are_rejected(options: dict, message: str) -> None:
    with pytest.raises(SpaceConfigError, match=re.escape(message)):
        get_space("kan", **options)


def test_sample_is_deterministic_and_valid() -> None:
    space = KanSpace()
    a = [space.sample(np.random.default_rng(s)) for s in range(50)]
    b = [space.sample(np.random.default_rng(s)) for s in range(50)]
    assert a == b
    for g in a:
        space.validate(g)
        assert 1 <= len(g["hidden"]) <= 2 and len(g["layers"]) == len(g["hidden"]) + 1
    families = {s["family"] for g in a for s in g["layers"]}
    assert "selectable" in families and len(families) >= 10


def test_mutate_changes_the_genome_and_names_its_operator() -> None:
    space = KanSpace(max_hidden=3)
    rng = np.random.default_rng(0)
    seen = set()
    genome = space.sample(rng)
    for _ in range(300):
        before = space.canonical(genome)
        child, op = space.mutate(genome, rng)
        assert space.canonical(genome) == before, "mutate must not modify its argument"
        assert space.canonical(child) != before
        space.validate(child)
        seen.add(op)
        genome = child
    assert seen == MUTATION_OPS


def test_crossover_takes_each_layer_from_a_parent() -> None:
    space = KanSpace(max_hidden=3)
    rng = np.random.default_rng(2)
    for _ in range(50):
        a, b = space.sample(rng), space.sample(rng)
        child = space.crossover(a, b, rng)
        space.validate(child)
        assert len(child["hidden"]) in (len(a["hidden"]), len(b["hidden"]))
        for i, spec in enumerate(child["layers"][:-1]):
            owners = [p for p in (a, b) if i < len(p["hidden"]) and p["layers"][i] == spec]
            assert any(p["hidden"][i] == child["hidden"][i] for p in owners)
        assert child["layers"][-1] in (a["layers"][-1], b["layers"][-1])


def test_canonical_ignores_key_and_candidate_order() -> None:
    space = KanSpace()
    g1 = _genome(family="selectable", candidates=["rbf", "bspline"], degree=3)
    g2 = {"layers": list(reversed(g1["layers"])), "hidden": [4], "v": 1, "space": "kan"}
    g2["layers"].reverse()
    g2["layers"][0] = dict(reversed(list(g1["layers"][0].items())), candidates=["bspline", "rbf"])
    assert space.canonical(g1) == space.canonical(g2)
    assert space.key(g1) == space.key(g2)
    assert space.canonical(g1) != space.canonical(_genome(family="selectable", candidates=["rbf", "fourier"], degree=3))


@pytest.mark.parametrize(
    "genome, message",
    [
        ([1, 2], "must be a JSON object"),
        ({"space": "activation", "v": 1}, "expected 'kan'"),
        (_genome() | {"v": 2}, "version 2"),
        (_genome() | {"extra": 1}, "unknown fields ['extra']"),
        (_genome() | {"hidden": [0]}, "hidden[0] must be an integer in [1, 4096]"),
        (_genome() | {"hidden": []}, "len(hidden) + 1 = 1"),
        (_genome(family="spline9"), "layers[0].family 'spline9' is unknown"),
        (_genome(family="fourier"), "unknown fields ['order']"),
        (_genome(family="chebyshev", degree=4), "unknown fields ['grid', 'order']"),
        (_genome(grid=1), "layers[0].grid must be an integer in [2, 64]"),
        (_genome(grid=True), "grid must be an integer"),
        (_genome(base="yes"), "base must be true or false"),
        (_genome(norm="batchnorm"), "norm 'batchnorm' is unknown"),
        (_genome(family="selectable", candidates=["rbf"], degree=3), "at least 2 family names"),
        (_genome(family="selectable", candidates=["rbf", "rbf"], degree=3), "repeats a family"),
        (_genome(family="selectable", candidates=["rbf", "magic"], degree=3), "unknown family 'magic'"),
        (_genome(family="mixed", nodes=["rbf"] * 3, degree=3), "names 3 families but hidden[0] is 4"),
    ],
)
def test_validate_says_what_is_wrong(genome, message: str) -> None:
    with pytest.raises(GenomeError, match=re.escape(message)):
        KanSpace().validate(genome)


def test_missing_field_is_named() -> None:
    g = _genome()
    del g["layers"][0]["grid"]
    with pytest.raises(GenomeError, match=r"missing fields \['grid'\]"):
        KanSpace().validate(g)


def test_build_uses_task_sizes_and_checks_them() -> None:
    space = KanSpace()
    model = space.build(_genome(), in_features=6, out_features=3)
    assert model(torch.randn(2, 4, 6)).shape == (2, 4, 3)
    with pytest.raises(GenomeError, match="layernorm over a single input"):
        space.build(_genome(norm="layernorm"), in_features=1, out_features=1)
    mixed_out = _genome()
    mixed_out["layers"][1] = {"family": "mixed", "nodes": ["rbf", "fourier"], "grid": 5, "order": 3, "degree": 3,
                              "base": True, "norm": "none"}  # fmt: skip
    with pytest.raises(GenomeError, match="2 node families for 3 outputs"):
        space.build(mixed_out, in_features=2, out_features=3)
    assert space.build(mixed_out, in_features=2, out_features=2)(torch.randn(5, 2)).shape == (5, 2)


def test_selectable_genome_builds_a_mixture() -> None:
    g = _genome(family="selectable", candidates=["rbf", "bspline", "chebyshev"], degree=4)
    model = KanSpace().build(g, in_features=2, out_features=1)
    layer = model.layers[0]
    assert isinstance(layer, SelectableKANLayer) and layer.families == ["bspline", "chebyshev", "rbf"]
    assert layer.branches["chebyshev"].basis.num_basis == 5


def test_optuna_trial_drives_the_space() -> None:
    space = KanSpace(max_hidden=3)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    keys = set()
    for _ in range(15):
        trial = study.ask()
        genome = space.suggest(trial)
        space.validate(genome)
        keys.add(space.key(genome))
        study.tell(trial, float(len(genome["hidden"])) + sum(s.get("grid", 0) for s in genome["layers"]) / 10)
    assert len(keys) > 5
    assert trial.params["layer0_family"] == genome["layers"][0]["family"]


def test_recipes_option_lets_the_search_pick_a_training_recipe() -> None:
    """With ``recipes`` every sampled, mutated, crossed or suggested genome names one; without, none does."""
    space = KanSpace(recipes=["adam", "lbfgs_grid"])
    rng = np.random.default_rng(0)
    genomes = [space.sample(rng) for _ in range(20)]
    assert {g["recipe"] for g in genomes} == {"adam", "lbfgs_grid"}
    assert "recipe" not in KanSpace().sample(np.random.default_rng(0))
    genome, ops = genomes[0], set()
    for _ in range(60):
        child, op = space.mutate(genome, rng)
        ops.add(op)
        assert "recipe" in child and (child["recipe"] != genome["recipe"]) == (op == "recipe")
        genome = child
    assert "recipe" in ops
    assert space.crossover(genomes[0], genomes[1], rng)["recipe"] in (genomes[0]["recipe"], genomes[1]["recipe"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    assert space.suggest(trial)["recipe"] == trial.params["recipe"]
    lbfgs = {**_genome(), "recipe": "lbfgs_grid"}
    assert space.canonical(lbfgs) != space.canonical(_genome())
    assert space.describe(lbfgs).endswith("| recipe lbfgs_grid")
    assert r"\texttt{lbfgs\_grid}" in space.describe(lbfgs, "latex")
    assert space.harden(lbfgs, space.build(lbfgs, in_features=2))[0]["recipe"] == "lbfgs_grid"
    with pytest.raises(GenomeError, match="recipe must be a recipe name"):
        space.validate({**_genome(), "recipe": "two words"})
    with pytest.raises(SpaceConfigError, match="'recipes' must hold names"):
        KanSpace(recipes=["adam", 3])


def test_layer_table_shows_the_training_recipe() -> None:
    """The dashboard's layer table names the genome's recipe on every row; a genome without one has no column."""
    space = KanSpace()
    rows = space.present({**_genome(), "recipe": "lbfgs_grid"}).rows
    assert len(rows) == 2 and [row["recipe"] for row in rows] == ["lbfgs_grid", "lbfgs_grid"]
    assert all("recipe" not in row for row in space.present(_genome()).rows)


def test_seeds_cover_every_family_and_build() -> None:
    space = KanSpace()
    seeds = space.seeds()
    assert {"mlp", "selectable", "kan_bspline", "kan_fourier", "kan_afkan_quad1"} <= set(seeds)
    assert len(seeds) == len(space.families) + 2
    for genome in seeds.values():
        assert space.build(genome, in_features=3, out_features=2)(torch.randn(4, 3)).shape == (4, 2)


def test_describe_text_and_latex() -> None:
    space = KanSpace()
    g = _genome(family="selectable", candidates=["rbf", "fourier"], degree=3)
    assert space.describe(g) == (
        "KAN in-4-out: L0 selectable{fourier, rbf}(grid=5, order=3, degree=3, base) | L1 mlp()"
    )
    latex = space.describe(g, "latex")
    assert latex.startswith(r"\mathrm{KAN}[d_{in}, 4, d_{out}]") and r"\mathrm{Fourier}" in latex


def test_probe_gives_a_small_network_and_rows() -> None:
    space = KanSpace()
    model, inputs = space.probe(space.sample(np.random.default_rng(3)), torch.linspace(-5, 5, 1001))
    assert inputs.shape == (250, 4) and model(inputs).shape == (250, 1)
    again, _ = space.probe(space.sample(np.random.default_rng(3)), torch.linspace(-5, 5, 1001))
    torch.testing.assert_close(again(inputs), model(inputs))


@pytest.mark.parametrize("name, dim", [("fit_exp_sin", 2), ("fit_xy", 2), ("fit_j0", 1), ("fit_4d", 4)])
def test_fitting_datasets(name: str, dim: int) -> None:
    data = get_dataset(name)(seed=0)
    assert data.x_train.shape == (1000, dim) and data.x_val.shape == (1000, dim) and data.y_train.shape == (1000, 1)
    assert data.task == "regression" and data.output_size == 1
    assert data.x_train.min() >= -1 and data.x_train.max() <= 1
    torch.testing.assert_close(get_dataset(name)(seed=0).y_val, data.y_val)
    assert not torch.equal(get_dataset(name)(seed=1).x_train, data.x_train)


def test_fitting_targets() -> None:
    x = get_dataset("fit_exp_sin")(seed=0).x_train
    y = get_dataset("fit_exp_sin")(seed=0).y_train[:, 0]
    torch.testing.assert_close(y, torch.exp(torch.sin(torch.pi * x[:, 0]) + x[:, 1] ** 2))
    j0 = get_dataset("fit_j0")(seed=0)
    assert abs(float(torch.special.bessel_j0(torch.tensor(0.0))) - 1) < 1e-6
    torch.testing.assert_close(j0.y_train[:, 0], torch.special.bessel_j0(20 * j0.x_train[:, 0]))


def test_kan_architecture_is_the_genome_sized_by_the_task() -> None:
    space = KanSpace()
    data = get_dataset("fit_4d")(seed=0)
    model = get_arch("kan")(space, space.seeds()["kan_rbf"], data)
    assert model(data.x_val[:8]).shape == (8, 1)
    with pytest.raises(TypeError, match="takes no options"):
        get_arch("kan")(space, space.seeds()["kan_rbf"], data, hidden=[3])
