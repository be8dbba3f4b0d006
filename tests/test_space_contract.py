"""The Space contract, checked on every registered space (in the manner of Optuna's sampler test suite):
sampling, variation, validation and canonical forms, build against export, and what the dashboard draws.

A new space gets these checks by registering itself; elementwise spaces need nothing here, task-sized spaces get
``TASK_SIZES`` and other hosted layers name their shapes in ``HOSTED``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import optuna
import pytest
import torch

import tests.toy_space  # noqa: F401 - registers the test-only space, so the contract covers it too
from spaces import Curve, Genome, Graph, Space, SpaceConfigError, Table, get_space, space_kinds

KINDS = space_kinds()
SEEDS = range(8)
TASK_SIZES = {"in_features": 3, "out_features": 2}
# Layers hosted inside a network: build keywords, the exported class's constructor arguments, an input shape.
HOSTED: dict[str, tuple[dict[str, Any], tuple[Any, ...], tuple[int, ...]]] = {
    "normact": ({"channels": 8}, (8,), (4, 8, 3, 3)),
}


@pytest.fixture(params=KINDS)
def space(request: pytest.FixtureRequest) -> Space:
    return get_space(request.param)


def genomes(space: Space, count: int = 6, seed: int = 0) -> list[Genome]:
    """Sampled genomes and their mutants."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count // 2):
        genome = space.sample(rng)
        out += [genome, space.mutate(genome, rng)[0]]
    return out


def test_every_builtin_kind_and_the_toy_are_registered() -> None:
    assert {"activation", "normact", "kan", "toy_leaky"} <= set(KINDS)


def test_names_for_people_and_exports(space: Space) -> None:
    assert isinstance(space.display_name, str) and space.display_name.strip()
    assert space.class_prefix.isidentifier() and f"{space.class_prefix}C12".isidentifier()


def test_sampling_is_valid_and_deterministic_per_seed(space: Space) -> None:
    first = [space.sample(np.random.default_rng(seed)) for seed in SEEDS]
    assert first == [space.sample(np.random.default_rng(seed)) for seed in SEEDS]
    for genome in first:
        space.validate(genome)
        assert genome["space"] == space.kind and genome["v"] == space.version
    assert len({space.key(g) for g in first}) > 1, "every seed sampled the same genome"


def test_seeds_validate(space: Space) -> None:
    for genome in space.seeds().values():
        space.validate(genome)


def test_mutation_never_changes_its_input_and_returns_a_valid_genome(space: Space) -> None:
    rng = np.random.default_rng(1)
    genome = space.sample(rng)
    for _ in range(20):
        before = copy.deepcopy(genome)
        child, op = space.mutate(genome, rng)
        assert genome == before, "mutate changed its argument"
        space.validate(child)
        assert isinstance(op, str) and op
        genome = child
    assert space.mutate(genome, np.random.default_rng(7)) == space.mutate(genome, np.random.default_rng(7))


def test_crossover_leaves_its_parents_alone_and_returns_a_valid_child(space: Space) -> None:
    rng = np.random.default_rng(2)
    for _ in range(10):
        a, b = space.sample(rng), space.sample(rng)
        before = copy.deepcopy((a, b))
        child = space.crossover(a, b, rng)
        assert (a, b) == before, "crossover changed a parent"
        if child is not None:
            space.validate(child)


def test_validate_and_canonical_round_trip_through_json(space: Space) -> None:
    for genome in genomes(space):
        stored = json.loads(json.dumps(genome))
        space.validate(stored)
        assert space.canonical(stored) == space.canonical(genome) and space.key(stored) == space.key(genome)


def test_structure_survives_storage_and_features_are_what_the_built_layer_computes(space: Space) -> None:
    """The surrogate keys pools by ``structure`` and describes candidates by ``features``, never by a built module:
    both must hold for genomes read back from the store."""
    probe = torch.linspace(-3, 3, 16)
    for genome in genomes(space):
        stored = json.loads(json.dumps(genome))
        assert isinstance(space.structure(genome), str) and space.structure(stored) == space.structure(genome)
        module, inputs = space.probe(genome, probe)
        with torch.no_grad():
            built = module.eval()(inputs).double().flatten().numpy()
        np.testing.assert_allclose(space.features(genome, probe), built, rtol=0, atol=0)


def test_text_form_parses_back_to_the_same_genome(space: Space) -> None:
    if type(space).parse is Space.parse:
        pytest.skip(f"space {space.kind!r} has no text form")
    for genome in genomes(space):
        assert space.canonical(space.parse(space.describe(genome))) == space.canonical(genome)


def test_every_format_describes_every_genome(space: Space) -> None:
    for genome in genomes(space):
        texts = {fmt: space.describe(genome, fmt) for fmt in ("text", "display", "latex")}
        assert all(isinstance(text, str) and text for text in texts.values())
        assert len(texts["display"]) <= len(texts["text"])


def exec_export(space: Space, genome: Genome, class_name: str, sizes: dict[str, int]) -> type[torch.nn.Module]:
    namespace: dict[str, Any] = {}
    exec(compile(space.to_source(genome, class_name, **sizes), f"<{class_name}>", "exec"), namespace)
    return namespace[class_name]


def test_build_equals_export(space: Space) -> None:
    build_shape, export_args, input_shape = HOSTED.get(space.kind, ({}, (), (257,)))
    sizes = TASK_SIZES if space.task_sized else {}
    if space.task_sized:
        build_shape, input_shape = sizes, (5, sizes["in_features"])
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0)) * 3
    for i, genome in enumerate(genomes(space)):
        platform = space.build(genome, **build_shape)
        exported = exec_export(space, genome, f"{space.class_prefix}C{i}", sizes)(*export_args)
        if exported.state_dict().keys() == platform.state_dict().keys():
            exported.load_state_dict(platform.state_dict())  # randomly initialised layers share their weights
        with torch.no_grad():
            torch.testing.assert_close(exported(x), platform(x), atol=1e-5, rtol=1e-5, equal_nan=True)


def test_presentation_is_a_curve_graph_table_or_nothing(space: Space) -> None:
    for genome in genomes(space, count=4):
        drawn = space.present(genome)
        assert drawn is None or isinstance(drawn, Curve | Graph | Table)
        if isinstance(drawn, Curve):
            assert drawn.x.shape == drawn.y.shape == drawn.dy.shape and np.isfinite(drawn.x).all()
        if isinstance(drawn, Graph):
            assert drawn.dot.startswith("digraph") and drawn.dot.rstrip().endswith("}")
        if isinstance(drawn, Table):
            assert drawn.rows and all(row.keys() == drawn.rows[0].keys() for row in drawn.rows)


def test_reference_draws_like_a_candidate(space: Space) -> None:
    reference = space.reference()
    if reference is None:
        return
    name, drawn = reference
    assert isinstance(name, str) and name
    assert type(drawn) is type(space.present(space.sample(np.random.default_rng(0))))


def test_suggest_drives_the_space_where_supported(space: Space) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    if not space.supports_suggest():
        with pytest.raises(SpaceConfigError, match="Optuna samplers cannot drive it"):
            space.suggest(trial)
        return
    genome = space.suggest(trial)
    space.validate(genome)
    assert trial.params, "suggest drew nothing through the trial"
