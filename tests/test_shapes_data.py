"""The procedural shapes task and the small-batch norm-act regime (issue 16)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from evaluators import ProxyEvaluator
from evaluators.config import EvaluatorConfig, ProxyConfig
from evaluators.fitting import fit
from evaluators.registry import get_dataset
from evaluators.training import build_model, seeded, task_loss, train_proxy
from search.results import FinalResult
from search.summary import final_verdict
from spaces.normact import NormActSpace

SMALL = {"train_size": 200, "val_size": 60, "test_size": 100}
SPACE = NormActSpace(mode="B")


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def test_shapes_are_deterministic_per_seed_with_a_fixed_test_split():
    a = get_dataset("shapes_images")(seed=0, **SMALL)
    b = get_dataset("shapes_images")(seed=0, **SMALL)
    other = get_dataset("shapes_images")(seed=1, **SMALL)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_train, other.x_train)
    # The test images do not move with the seed (standardization by each seed's train split aside).
    assert torch.equal(a.y_test, other.y_test)
    assert torch.corrcoef(torch.stack([a.x_test.flatten(), other.x_test.flatten()]))[0, 1] > 0.999


def test_shapes_splits_are_disjoint_balanced_images():
    data = get_dataset("shapes_images")(seed=3, size=12, **SMALL)
    assert data.x_train.shape == (200, 3, 12, 12) and data.x_test.shape == (100, 3, 12, 12)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64 and data.num_classes == 10
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)):
        assert torch.bincount(y, minlength=10).tolist() == [len(y) // 10] * 10
        assert len(_rows(x)) == len(x)
    assert not _rows(data.x_train) & _rows(data.x_val)
    assert not (_rows(data.x_train) | _rows(data.x_val)) & _rows(data.x_test)
    # Standardized with training statistics, per channel.
    assert torch.allclose(data.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)


def test_shape_is_the_class_not_the_colour():
    """A least-squares linear classifier on mean colours stays near chance: only the structure tells classes apart."""
    data = get_dataset("shapes_images")(seed=0, train_size=2000, val_size=500, test_size=100)
    colour = torch.cat([data.x_train.mean(dim=(2, 3)), torch.ones(len(data.x_train), 1)], dim=1)
    w = torch.linalg.lstsq(colour, torch.nn.functional.one_hot(data.y_train, 10).float()).solution
    val = torch.cat([data.x_val.mean(dim=(2, 3)), torch.ones(len(data.x_val), 1)], dim=1)
    assert ((val @ w).argmax(1) == data.y_val).float().mean() < 0.2


def test_shapes_options_are_checked():
    with pytest.raises(ValueError, match="num_classes"):
        get_dataset("shapes_images")(num_classes=11)
    with pytest.raises(ValueError, match="size >= 12"):
        get_dataset("shapes_images")(size=8)


def test_batch_statistics_train_at_batch_four_and_eval_uses_running_statistics():
    data = get_dataset("shapes_images")(seed=0, **SMALL)
    proxy = ProxyConfig(name="tiny", arch="resnet", dataset="shapes_images", arch_options={"width": 4, "stages": 2})
    genome = SPACE.seeds()["evonorm_b0"]  # a batch variance with a running average
    with seeded(0, torch.device("cpu")):
        model = build_model(SPACE, genome, data, proxy, torch.device("cpu"))
        buffers = {name: b.clone() for name, b in model.named_buffers() if "running" in name}
        fit(
            model,
            data,
            lambda o, t: task_loss(data, o, t),
            proxy.recipe,
            steps=5,
            lr=3e-3,
            batch_size=4,
            weight_decay=0.0,
            seed=0,
        )
    assert buffers and all(not torch.equal(b, dict(model.named_buffers())[n]) for n, b in buffers.items())
    model.eval()
    with torch.no_grad():  # eval mode reads the running statistics: one image scores the same alone or in a batch
        assert torch.allclose(model(data.x_val[:1]), model(data.x_val[:16])[:1], atol=1e-5)


def test_two_proxies_of_one_arch_at_two_batch_sizes_give_two_objectives():
    tiny = {"arch": "resnet", "dataset": "shapes_images", "dataset_options": SMALL, "steps": 4}
    tiny["arch_options"] = {"width": 4, "stages": 2}
    config = EvaluatorConfig(
        proxies=[{**tiny, "name": "resnet", "batch_size": 32}, {**tiny, "name": "resnet_b4", "batch_size": 4}],
        objectives=[{"name": "val_acc@resnet"}, {"name": "val_acc@resnet_b4"}],
    )
    outcome = ProxyEvaluator(SPACE, config, "cpu").evaluate(SPACE.seeds()["bn_relu"], cascade=False, split="test")
    assert outcome.status == "done", outcome.reason
    assert set(outcome.objectives) == {"test_acc@resnet", "test_acc@resnet_b4"}
    direct = train_proxy(
        SPACE,
        SPACE.seeds()["bn_relu"],
        get_dataset("shapes_images")(seed=0, **SMALL),
        ProxyConfig(**{**tiny, "name": "resnet_b4", "batch_size": 4}),
        seed=0,
        steps=4,
        device=torch.device("cpu"),
        split="test",
    )
    assert outcome.objectives["test_acc@resnet_b4"] == pytest.approx(direct["test_acc"])
    assert np.isfinite(outcome.metrics["test_loss@resnet"])


def test_the_summary_says_whether_a_searched_layer_beats_the_best_baseline_on_test():
    def result(ident: int, seed_name: str | None, normal: list[float], tiny: list[float]) -> FinalResult:
        candidate = SimpleNamespace(id=ident, origin="seed" if seed_name else "mutate", seed_name=seed_name)
        values = {"test_acc@resnet": normal, "test_acc@resnet_b4": tiny}
        return FinalResult(candidate=candidate, steps=None, values=values, seeds=[1000, 1001, 1002])

    study = SimpleNamespace(objectives=[{"name": "val_acc@resnet"}, {"name": "val_acc@resnet_b4"}])
    bn = result(1, "bn_relu", [0.60, 0.61, 0.62], [0.30, 0.31, 0.29])
    s0 = result(2, "evonorm_s0", [0.55, 0.56, 0.57], [0.40, 0.41, 0.39])
    tie = result(7, None, [0.60, 0.62, 0.61], [0.30, 0.35, 0.40])
    assert final_verdict(study, [bn, s0, tie]) == [
        "Verdict (test split): no searched layer beats the best baseline on any objective beyond the seed noise "
        "(paired p < 0.05 needed; 2 comparisons made)."
    ]
    winner = result(9, None, [0.50, 0.51, 0.52], [0.50, 0.52, 0.49])
    lines = final_verdict(study, [bn, s0, tie, winner])
    assert lines[0].endswith("beats the best baseline beyond the seed noise:") and len(lines) == 2
    assert lines[1].startswith("test_acc@resnet_b4: c9 0.5033 ± 0.0153 beats the best baseline, evonorm_s0 0.4000")
    assert final_verdict(study, [bn, s0]) == [
        "Verdict: no searched layer and baseline have test-split runs (2+ seeds) at one budget to compare yet."
    ]
