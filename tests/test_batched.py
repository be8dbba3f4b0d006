"""Batched proxy training: K candidates as one stacked model give each the metrics it gets alone."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from evaluators.batched import train_together
from evaluators.config import EvaluatorConfig, ProxyConfig
from evaluators.proxy import ProxyEvaluator, _load_dataset
from evaluators.registry import Dataset
from evaluators.training import train_proxy
from spaces import Space, get_space

CPU = torch.device("cpu")
SEEDS = ["relu", "gelu", "silu", "leaky_relu", "elu", "selu", "mish", "tanh"]
DIGITS = {"name": "digits", "arch": "mlp", "dataset": "digits", "steps": 60, "arch_options": {"hidden": [64, 64]}}
CNN = {"name": "cnn1d", "arch": "cnn1d", "dataset": "mnist1d", "steps": 20, "arch_options": {"channels": [32, 32, 32]}}


@pytest.fixture(scope="module")
def space() -> Space:
    return get_space("activation", schema="tree", max_depth=4, max_nodes=10, max_params=2)


def _float64(dataset: Dataset) -> Dataset:
    floats = {
        f.name: value.double()
        for f in dataclasses.fields(dataset)
        if isinstance(value := getattr(dataset, f.name), torch.Tensor) and value.is_floating_point()
    }
    return dataclasses.replace(dataset, **floats)


def _alone(space: Space, genome: dict, dataset: Dataset, proxy: ProxyConfig, seed: int) -> dict[str, float]:
    return train_proxy(space, genome, dataset, proxy, seed=seed, steps=proxy.steps, device=CPU)


def test_stacked_mlp_matches_one_at_a_time_for_the_same_seeds(space: Space) -> None:
    proxy = ProxyConfig(**DIGITS)
    dataset = _load_dataset(proxy, CPU)
    genomes = [space.seeds()[name] for name in SEEDS]
    seeds = [11 + i for i in range(len(genomes))]
    alone = [_alone(space, g, dataset, proxy, s) for g, s in zip(genomes, seeds, strict=True)]
    together = train_together(space, genomes, dataset, proxy, seeds=seeds, steps=proxy.steps, device=CPU, stack=8)
    for one, stacked in zip(alone, together, strict=True):
        assert stacked["stacked"] == 8, "the members were not trained as one stack"
        # Each member's products are computed as its own nn.Linear computes them: the numbers are the same.
        assert stacked["val_acc"] == one["val_acc"]
        assert stacked["train_loss"] == pytest.approx(one["train_loss"], rel=1e-6)
        assert stacked["val_loss"] == pytest.approx(one["val_loss"], rel=1e-6)
        assert stacked["act_params"] == one["act_params"] and stacked["params"] == one["params"]


def test_stacked_cnn_computes_what_each_member_computes_alone(space: Space) -> None:
    """In float64 rounding cannot hide a wrong gradient: the grouped convolution equals K separate ones."""
    torch.set_default_dtype(torch.float64)
    try:
        proxy = ProxyConfig(**CNN)
        dataset = _float64(_load_dataset(proxy, CPU))
        genomes = [space.seeds()[name] for name in SEEDS[:3]]
        seeds = [5, 6, 7]
        alone = [_alone(space, g, dataset, proxy, s) for g, s in zip(genomes, seeds, strict=True)]
        together = train_together(space, genomes, dataset, proxy, seeds=seeds, steps=proxy.steps, device=CPU, stack=3)
    finally:
        torch.set_default_dtype(torch.float32)
    for one, stacked in zip(alone, together, strict=True):
        assert stacked["stacked"] == 3
        assert stacked["val_acc"] == one["val_acc"]
        assert stacked["val_loss"] == pytest.approx(one["val_loss"], rel=1e-9)


def _evaluator(space: Space, candidates_per_batch: int | str, **rejection) -> ProxyEvaluator:
    config = EvaluatorConfig(
        proxies=[ProxyConfig(**DIGITS), ProxyConfig(**{**DIGITS, "name": "digits2", "steps": 40, "seed": 3})],
        objectives=[{"name": "val_acc@digits"}],
        rejection={"static": {"enabled": False}, "numeric_probe": {"enabled": False}, **rejection},
        candidates_per_batch=candidates_per_batch,
    )
    return ProxyEvaluator(space, config, device="cpu")


def test_a_batch_gives_every_member_the_outcome_it_gets_alone(space: Space) -> None:
    """A NaN member and a gate failure drop out of the batch; the others finish with their own numbers."""
    texts = ["relu(x)", "exp(exp({5.0}*x))", "tanh(x)", "one(x)", "silu(x)"]
    genomes = [space.parse(text) for text in texts]
    gate = {"quality_gate": {"enabled": True, "steps": 30}}
    alone = [_evaluator(space, 1, **gate).evaluate(genome, seed=2) for genome in genomes]
    batched = _evaluator(space, 8, **gate).evaluate_many(genomes, seeds=[2] * len(genomes))
    by_text = dict(zip(texts, batched, strict=True))
    assert by_text["exp(exp({5.0}*x))"].status == "rejected"
    assert by_text["exp(exp({5.0}*x))"].stage == "quality_gate"
    assert "training loss became" in by_text["exp(exp({5.0}*x))"].reason
    assert (by_text["one(x)"].status, by_text["one(x)"].stage) == ("rejected", "quality_gate")
    for one, many in zip(alone, batched, strict=True):
        assert (many.status, many.stage) == (one.status, one.stage)
        assert many.objectives.keys() == one.objectives.keys()
        for name, value in one.objectives.items():
            assert abs(many.objectives[name] - value) <= 1e-3
    done = [outcome for outcome in batched if outcome.status == "done"]
    assert len(done) == 3
    assert all(o.metrics["batch_members"] == 3 and o.metrics["stacked@digits"] == 3 for o in done)


def test_a_non_finite_member_in_full_training_is_masked_and_the_others_are_unchanged(space: Space) -> None:
    genomes = [space.parse(text) for text in ["relu(x)", "exp(exp({5.0}*x))", "tanh(x)"]]
    evaluator = _evaluator(space, 8, quality_gate={"enabled": False})
    with_nan = evaluator.evaluate_many(genomes, seeds=[4, 4, 4])
    without = evaluator.evaluate_many([genomes[0], genomes[2]], seeds=[4, 4])
    assert (with_nan[1].status, with_nan[1].stage) == ("rejected", "full")
    assert with_nan[1].reason.startswith("training loss became")
    assert [o.objectives for o in (with_nan[0], with_nan[2])] == [o.objectives for o in without]


def test_auto_stacks_the_overhead_bound_proxies_on_a_cpu(space: Space) -> None:
    config = EvaluatorConfig(
        proxies=[ProxyConfig(**DIGITS), ProxyConfig(**CNN)],
        objectives=[{"name": "val_acc@digits"}],
        candidates_per_batch="auto",
    )
    evaluator = ProxyEvaluator(space, config, device="cpu")
    assert evaluator.stack_sizes["digits"] >= 8  # a 64-wide MLP: overhead-bound, stacks well
    assert evaluator.stack_sizes["cnn1d"] == 1  # compute-bound already: trains one at a time
    assert evaluator.candidates_per_batch == 8
    assert evaluator.info()["candidates_per_batch"] == 8


def test_an_architecture_without_a_stacked_form_trains_one_at_a_time(space: Space) -> None:
    proxy = ProxyConfig(name="kan", arch="kan", dataset="digits", steps=5)
    dataset = _load_dataset(proxy, CPU)
    kan = get_space("kan")
    genomes = [kan.seeds()[name] for name in list(kan.seeds())[:2]]
    results = train_together(kan, genomes, dataset, proxy, seeds=[0, 1], steps=5, device=CPU, stack=2)
    assert [r["stacked"] for r in results] == [1.0, 1.0]


@pytest.mark.parametrize("bad", [0, -3, "many", True])
def test_candidates_per_batch_is_auto_or_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="candidates_per_batch"):
        EvaluatorConfig(proxies=[ProxyConfig(**DIGITS)], candidates_per_batch=bad)
