"""Train / validation / test splits: search and every cascade stage read validation only; final reports read test.

The proof is by poisoning: the same search on data whose test split is garbage gives the same outcomes, while the
test-split numbers (rerank, the summary's final table) change.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from rich.console import Console

from evaluators import EvaluatorConfig, ProxyEvaluator
from evaluators.config import Objective
from evaluators.data import _mnist1d_arrays
from evaluators.registry import Dataset, get_dataset, register_dataset
from evaluators.splits import labelled, on_split, split_of
from search.config import parse_config
from search.rerank import rerank
from search.results import final_results
from search.runner import StudyRunner
from search.store import Store
from search.summary import print_summary
from spaces import get_space
from tests.conftest import study_config

ACTIVATIONS = get_space("activation")


def rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


@register_dataset("test_digits_poisoned_test")
def _digits_with_a_poisoned_test_split(seed: int = 0) -> Dataset:
    """digits whose test split is noise with wrong labels; train and validation untouched."""
    clean = get_dataset("digits")(seed=seed)
    noise = 100 * torch.randn(clean.x_test.shape, generator=torch.Generator().manual_seed(0))
    return dataclasses.replace(clean, x_test=noise, y_test=(clean.y_test + 1) % 10)


@register_dataset("test_no_test_split")
def _no_test_split(seed: int = 0) -> Dataset:
    clean = get_dataset("digits")(seed=seed)
    return Dataset(clean.x_train, clean.y_train, clean.x_val, clean.y_val, task="classification", num_classes=10)


def test_metric_names_carry_their_split() -> None:
    assert on_split("val_acc@mlp", "test") == "test_acc@mlp"
    assert on_split("mean_val_acc", "test") == "mean_test_acc"
    assert on_split("latency_ms@mlp", "test") == "latency_ms@mlp"
    assert [split_of(n) for n in ("val_acc@mlp", "gate_val_acc@mlp", "mean_test_acc", "test_rmse@fit")] == [
        "val",
        "val",
        "test",
        "test",
    ]
    assert split_of("train_seconds@mlp") is None and split_of("params@mlp") is None
    assert labelled("val_acc@mlp") == "val_acc@mlp (validation)" and labelled("params") == "params"


def test_a_test_split_objective_is_refused() -> None:
    with pytest.raises(ValidationError, match="reads the test split, which nothing may select on"):
        Objective(name="test_acc@mlp")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("mnist1d", {}),
        ("digits", {}),
        ("digits_images", {"size": 8}),
        ("synthetic_images", {"train_size": 64, "val_size": 32, "test_size": 16, "size": 8}),
        ("fit_exp_sin", {}),
        ("feynman", {}),
    ],
)
def test_every_built_in_dataset_has_three_disjoint_splits(name: str, options: dict) -> None:
    data = get_dataset(name)(seed=0, **options)
    train, val, test = rows(data.x_train), rows(data.x_val), rows(data.x_test)
    assert train and val and test and len(data.x_test) == len(data.y_test)
    assert not (train & val) and not (train & test) and not (val & test)
    fitted = data.fitting("test")  # the final model learns from train + validation, never from test
    assert rows(fitted.x_train) == train | val and data.fitting("val") is data


def test_mnist1d_validation_is_carved_from_the_official_training_set_and_test_is_the_official_test() -> None:
    data = get_dataset("mnist1d")()
    official = _mnist1d_arrays(42, None)
    assert torch.equal(data.y_test, torch.from_numpy(official["y_test"]))
    assert sorted(data.y_train.tolist() + data.y_val.tolist()) == sorted(official["y"].tolist())
    assert set(np.bincount(data.y_val.numpy())) <= {79, 80, 81, 82}  # stratified: 800 = 10 x 80
    assert torch.equal(get_dataset("mnist1d")(seed=0).y_val, data.y_val)  # deterministic


def test_digits_test_split_stays_put_while_the_seed_moves_validation() -> None:
    a, b = get_dataset("digits")(seed=0), get_dataset("digits")(seed=1)  # standardized by each seed's train split
    same_pixel = torch.stack([a.x_test[:, 20], b.x_test[:, 20]])
    assert torch.equal(a.y_test, b.y_test) and torch.corrcoef(same_pixel)[0, 1] > 0.999
    assert not torch.equal(a.y_val, b.y_val)


def _evaluator(dataset: str) -> ProxyEvaluator:
    """Every stage on (stability, placement, quality gate), then training; validation objectives."""
    proxies = [{"name": "digits", "arch": "mlp", "dataset": dataset, "steps": 40, "arch_options": {"hidden": [32]}}]
    rejection = {
        "stability": {"enabled": True, "ascent_steps": 2},
        "placement": {"enabled": True},
        "quality_gate": {"steps": 20, "min_chance_multiple": 1.5},
    }
    objectives = [{"name": "val_acc@digits"}, {"name": "val_loss@digits", "direction": "min"}]
    return ProxyEvaluator(ACTIVATIONS, EvaluatorConfig(proxies=proxies, objectives=objectives, rejection=rejection))


def _comparable(metrics: dict) -> dict:
    """Metrics without wall-clock times."""
    return {k: v for k, v in metrics.items() if "seconds" not in k and "latency" not in k}


def test_no_stage_of_a_search_evaluation_reads_the_test_split() -> None:
    clean, poisoned = _evaluator("digits"), _evaluator("test_digits_poisoned_test")
    for formula in ("relu(x)", "tanh(x)", "x + x^2", "x*sigmoid(x)"):
        genome = ACTIVATIONS.parse(formula)
        a, b = clean.evaluate(genome, seed=3), poisoned.evaluate(genome, seed=3)
        assert (a.status, a.stage, a.reason, a.objectives) == (b.status, b.stage, b.reason, b.objectives), formula
        assert _comparable(a.metrics) == _comparable(b.metrics), formula
        assert not any(split_of(name) == "test" for name in a.metrics), formula

    relu = ACTIVATIONS.parse("relu(x)")
    a = clean.evaluate(relu, seed=3, cascade=False, split="test")
    b = poisoned.evaluate(relu, seed=3, cascade=False, split="test")
    assert set(a.objectives) == set(b.objectives) == {"test_acc@digits", "test_loss@digits"}
    assert a.objectives["test_acc@digits"] > 0.8 and b.objectives["test_acc@digits"] < 0.3
    assert a.objectives["test_loss@digits"] < b.objectives["test_loss@digits"]


def test_a_final_report_on_a_dataset_without_a_test_split_says_what_is_missing() -> None:
    evaluator = _evaluator("test_no_test_split")
    assert evaluator.evaluate(ACTIVATIONS.parse("relu(x)")).status == "done"  # search still works
    outcome = evaluator.evaluate(ACTIVATIONS.parse("relu(x)"), cascade=False, split="test")
    assert outcome.status == "failed" and "has no test split" in outcome.reason


def _write_cifar(folder: Path, test_seed: int) -> None:
    """A tiny CIFAR-10 binary set: 40 training records (4 per class) and 20 test records drawn by ``test_seed``."""
    folder.mkdir(parents=True)
    for name, labels, seed in (
        ("data_batch_1.bin", np.tile(np.arange(10), 4), 0),
        ("test_batch.bin", np.random.default_rng(test_seed).integers(0, 10, 20), test_seed),
    ):
        pixels = np.random.default_rng(seed + 100).integers(0, 256, size=(len(labels), 3 * 32 * 32))
        pixels[:, :64] = labels[:, None] * 25  # a learnable cue
        records = np.concatenate([labels[:, None], pixels], axis=1).astype(np.uint8)
        (folder / name).write_bytes(records.tobytes())


def _search(name: str, folder: Path, tmp_path: Path) -> tuple[Store, dict]:
    config = study_config(name, tmp_path, budget={"evaluations": 6}, seed=5)
    config["space"]["seeds"] = ["relu", "tanh"]
    config["algorithm"] = {"name": "random", "options": {}}
    config["resources"] = {"workers": 1}
    config["evaluator"] = {
        "proxies": [
            {
                "name": "img",
                "arch": "mlp",
                "dataset": "cifar10",
                "dataset_options": {"root": str(folder), "val_fraction": 0.25},
                "steps": 20,
                "arch_options": {"hidden": [16]},
            }
        ],
        "objectives": [{"name": "val_acc@img"}, {"name": "val_loss@img", "direction": "min"}],
        "rejection": {"placement": {"enabled": True}, "quality_gate": {"enabled": False}},
        "timeout_seconds": 60,
    }
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    study = StudyRunner(cfg, store, progress=False).run()
    history = {c.canonical: (e.status, e.stage, e.objectives) for c, e in store.history(study.id)}
    return store, history


@pytest.mark.slow
def test_search_outcomes_ignore_a_poisoned_test_split_while_rerank_reads_it(ray_address: str, tmp_path: Path) -> None:
    _write_cifar(tmp_path / "clean", test_seed=1)
    _write_cifar(tmp_path / "poisoned", test_seed=2)  # same training batches, another test batch
    clean, clean_history = _search("clean", tmp_path / "clean", tmp_path / "a")
    poisoned, poisoned_history = _search("poisoned", tmp_path / "poisoned", tmp_path / "b")
    assert len(clean_history) == 6 and clean_history == poisoned_history
    assert sum(status == "done" for status, _, _ in clean_history.values()) >= 3

    finals = []
    for store, name in ((clean, "clean"), (poisoned, "poisoned")):
        reranked = rerank(store, name, top=2, seeds=2, steps=None, console=Console(quiet=True))
        finals.append({r.candidate.canonical: r.values for r in reranked})
        study = store.get_study(name)
        assert {tuple(sorted(r.values)) for r in final_results(store, study)} == {("test_acc@img", "test_loss@img")}
        console = Console(record=True, width=200)
        print_summary(console, store, study)
        text = console.export_text()
        assert "Final results: test split (never selected on)" in text and "validation split: what selection" in text
    assert finals[0].keys() == finals[1].keys()
    assert all(finals[0][k]["test_loss@img"] != finals[1][k]["test_loss@img"] for k in finals[0])
