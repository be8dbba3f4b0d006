"""Transfer: the top candidates and the baselines trained on other network families, stored and compared."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rich.console import Console
from streamlit.testing.v1 import AppTest
from torch import nn

from evaluators.archs import candidate_slots
from evaluators.registry import get_arch, get_dataset
from evaluators.transfer_tasks import TRANSFER_SUITE, NoTransferSuite, transfer_suite
from search.config import ConfigError, parse_config
from search.runner import StudyRunner
from search.store import Store
from search.transfer import transfer
from search.transfer_results import CandidateRuns, best_baseline, compare_cell, print_comparison, transfer_runs
from spaces import get_space
from tests.conftest import study_config

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
ACTIVATIONS = get_space("activation")
NORMACT = get_space("normact")


def _model(space, genome, proxy_name: str) -> tuple[nn.Module, torch.Tensor]:
    proxy = next(p for p in TRANSFER_SUITE if p.name == proxy_name)
    dataset = get_dataset(proxy.dataset)(seed=0)
    model = get_arch(proxy.arch)(space, genome, dataset, **proxy.arch_options)
    return model, dataset.x_val[:8]


@pytest.mark.parametrize("proxy", [p.name for p in TRANSFER_SUITE])
def test_an_activation_sits_after_fixed_norms_and_a_norm_act_layer_replaces_them(proxy: str) -> None:
    act, act_input = _model(ACTIVATIONS, ACTIVATIONS.parse("relu(x)"), proxy)
    normact, normact_input = _model(NORMACT, NORMACT.seeds()["bn_relu"], proxy)
    norms = (nn.BatchNorm2d, nn.LayerNorm)
    assert any(isinstance(m, norms) for m in act.modules())
    assert not any(isinstance(m, norms) for m in normact.modules())  # the candidate is every norm there
    assert len(candidate_slots(normact)) >= len(candidate_slots(act)) > 0
    assert act(act_input).shape == normact(normact_input).shape == (8, 16 if proxy == "lm" else 10)


def test_post_and_pre_activation_resnets_put_the_activation_on_and_off_the_residual_stream() -> None:
    square = ACTIVATIONS.parse("x*x")
    post, x = _model(ACTIVATIONS, square, "resnet_post")
    pre, _ = _model(ACTIVATIONS, square, "resnet_pre")
    with torch.no_grad():
        post_out, pre_out = post.train()(x), pre.train()(x)
    assert (post_out.abs().max() / pre_out.abs().max()) > 100  # x^2 compounds on the post-activation stream


def test_the_sequence_task_is_seeded_held_out_and_needs_the_context() -> None:
    a, b = get_dataset("markov_sequences")(seed=0), get_dataset("markov_sequences")(seed=1)
    again = get_dataset("markov_sequences")(seed=0, train_size=4000)
    assert torch.equal(a.x_test, again.x_test) and not torch.equal(a.x_test, b.x_test)
    assert a.x_train.dtype == torch.int64 and a.input_shape == (32,) and a.num_classes == 16
    train = {tuple(row.tolist()) for row in a.x_train}
    assert not any(tuple(row.tolist()) in train for row in a.x_test)


def test_the_suite_scales_steps_and_refuses_whole_network_spaces() -> None:
    assert [p.steps for p in transfer_suite(ACTIVATIONS, 0.5)] == [p.steps // 2 for p in TRANSFER_SUITE]
    assert [p.name for p in transfer_suite(NORMACT)] == ["resnet_post", "resnet_pre", "lm"]
    with pytest.raises(NoTransferSuite, match="whole networks"):
        transfer_suite(get_space("kan"))


def _runs(label: str, values: list[float | None], baseline: bool = True) -> CandidateRuns:
    runs = CandidateRuns(label, label, baseline)
    for seed, value in enumerate(values):
        runs.record("p", seed, value, "rejected: training loss became nan")
    return runs


def test_candidates_are_compared_with_the_best_baseline_by_a_paired_test() -> None:
    relu = _runs("relu", [0.70, 0.72, 0.71])
    gelu = _runs("gelu", [0.80, 0.83, 0.81])
    found = _runs("c9", [0.85, 0.89, 0.86], baseline=False)
    broken = _runs("c10", [0.5, None, None], baseline=False)
    results = [found, broken, relu, gelu]
    assert best_baseline(results, "p") is gelu  # not relu, the first one
    cell = compare_cell(found, "p", gelu)
    assert cell.delta == pytest.approx(0.0533, abs=1e-3) and cell.pairs == 3 and cell.p < 0.05
    lost = compare_cell(broken, "p", gelu)
    assert (lost.n, lost.without_value, lost.pairs, lost.p) == (1, 2, 1, None)
    console = Console(record=True, width=200)
    print_comparison(console, "t", results, {"p": 10})
    text = console.export_text()
    assert "best baseline gelu" in text and "2 no value" in text and "warning" not in text
    print_comparison(console, "t", [_runs("relu", [0.7, 0.7]), _runs("c1", [0.8, 0.9], False)], {"p": 10})
    assert "below 3 seeds" in console.export_text()


def test_transfer_trains_top_and_baselines_on_every_proxy_and_reuses_stored_runs(
    ray_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = study_config("tr", tmp_path, budget={"evaluations": 5})
    config["space"]["seeds"] = ["relu", "gelu", "tanh"]
    config["evaluator"] = {
        "proxies": [{"name": "digits", "arch": "mlp", "dataset": "digits", "steps": 20, "batch_size": 64}],
        "objectives": [{"name": "val_acc@digits", "direction": "max"}],
        "rejection": {"quality_gate": {"steps": 5, "min_chance_multiple": 0.5}},
    }
    store = Store(parse_config(config).store.url)
    StudyRunner(parse_config(config), store, progress=False).run()
    quiet = Console(quiet=True)
    results, steps = transfer(store, "tr", top=1, seeds=2, steps_scale=0.01, console=quiet)
    assert steps == {"resnet_post": 4, "resnet_pre": 4, "lm": 4}
    assert [r.label for r in results][1:] == ["relu", "gelu"]  # the default baselines the study has, not tanh
    assert not results[0].is_baseline
    assert all(len(r.runs[p]) == 2 for r in results for p in steps)
    assert all(0.0 <= v <= 1.0 for r in results for p in steps for v in r.values(p).values())

    study = store.get_study("tr")
    stored = [e for _, e in store.evaluations(study.id, purpose="transfer")]
    assert len(stored) == 3 * 3 * 2 and {e.seed for e in stored} == {1000, 1001}
    assert all(set(e.objectives) == {f"test_acc@{e.metrics['proxy']}"} for e in stored if e.status == "done")
    read_back = {r.label: r.runs for r in transfer_runs(store, study)[0]}  # as the dashboard reads them
    assert read_back == {r.label: r.runs for r in results}

    again, _ = transfer(store, "tr", top=1, seeds=2, steps_scale=0.01, console=quiet, baseline_names=["relu"])
    assert len(store.evaluations(study.id, purpose="transfer")) == len(stored)  # nothing trained twice
    assert again[1].runs == results[1].runs
    with pytest.raises(ConfigError, match="its seeds are: relu, gelu, tanh"):
        transfer(store, "tr", top=1, seeds=2, console=quiet, baseline_names=["mish"])

    monkeypatch.setenv("LAYERFORGE_DB", store.url)
    page = AppTest.from_file(str(DASHBOARD), default_timeout=60)
    page.run()
    page.switch_page("views/transfer.py")
    page.query_params["study"] = "tr"
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    assert [h.value.split(" (")[0] for h in page.subheader] == ["resnet_post", "resnet_pre", "lm"]
    assert {"relu", "gelu", results[0].label} == set(page.dataframe[0].value["layer"])
