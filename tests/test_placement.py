"""The placement stage: deep residual stacks at initialization catch layers that diverge on a residual stream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluators import EvaluatorConfig, ProxyEvaluator
from evaluators.config import PlacementCheck
from evaluators.placement import check_placement
from search.export import export_candidates
from search.results import Scored
from search.store import Store
from spaces import get_space

ACTIVATIONS = get_space("activation")
X_SQUARED_LIKE = ["x + x^2", "max(0.92*x*bessel_i0e(x), x + x^2)", "relu(x)^2"]
BASELINES = ["relu", "gelu", "silu", "mish", "tanh"]


def evaluator(**placement) -> ProxyEvaluator:
    """Digits MLP with every cheap stage on; the placement stage as given."""
    rejection = {
        "stability": {"enabled": True, "ascent_steps": 2},
        "placement": {"enabled": True, **placement},
        "quality_gate": {"steps": 20, "min_chance_multiple": 1.5},
    }
    proxies = [{"name": "digits", "arch": "mlp", "dataset": "digits", "steps": 30, "arch_options": {"hidden": [32]}}]
    config = EvaluatorConfig(proxies=proxies, objectives=[{"name": "val_acc@digits"}], rejection=rejection)
    return ProxyEvaluator(ACTIVATIONS, config, "cpu")


@pytest.mark.parametrize("formula", X_SQUARED_LIKE)
def test_x_squared_like_layers_are_rejected_before_any_training(formula: str) -> None:
    outcome = evaluator().evaluate(ACTIVATIONS.parse(formula))
    assert (outcome.status, outcome.stage) == ("rejected", "placement")
    assert outcome.reason.startswith("placement: post-activation block act(x + bn(conv(act(bn(conv(x))))))")
    assert "activations non-finite from block" in outcome.reason
    assert "quality_gate" not in outcome.stage_seconds and "full" not in outcome.stage_seconds


@pytest.mark.parametrize("name", BASELINES)
def test_standard_activations_pass_in_both_blocks(name: str) -> None:
    metrics = check_placement(
        ACTIVATIONS, ACTIVATIONS.seeds()[name], PlacementCheck(), seed=0, device=torch.device("cpu")
    )
    assert "warnings" not in metrics
    growths = [metrics[f"placement_{form}_{what}_growth"] for form in ("post", "pre") for what in ("act", "grad")]
    assert all(0 < g < 40 for g in growths), metrics


def test_norm_act_baselines_pass_with_the_candidate_in_place_of_each_norm() -> None:
    space = get_space("normact")
    for name in ("bn_relu", "gn_relu", "ln_gelu", "evonorm_b0", "evonorm_s0"):
        metrics = check_placement(space, space.seeds()[name], PlacementCheck(), seed=0, device=torch.device("cpu"))
        assert "warnings" not in metrics, (name, metrics)


def test_an_activation_without_batchnorm_in_front_is_not_bounded_by_it() -> None:
    """norm: candidate (the norm-act placement) drops the BatchNorms: x * 2 compounds through both blocks."""
    doubling = ACTIVATIONS.parse("x * 2")
    cpu = torch.device("cpu")
    with_norm = check_placement(ACTIVATIONS, doubling, PlacementCheck(on_fail="warn"), seed=0, device=cpu)
    candidate_is_norm = PlacementCheck(on_fail="warn", norm="candidate")
    without = check_placement(ACTIVATIONS, doubling, candidate_is_norm, seed=0, device=cpu)
    assert with_norm["placement_pre_act_growth"] < 100 < without["placement_pre_act_growth"]


def test_warn_mode_keeps_the_layer_and_the_export_manifest_carries_the_warning(tmp_path: Path) -> None:
    genome = ACTIVATIONS.parse("x + x^2")
    outcome = evaluator(on_fail="warn").evaluate(genome, full=False)
    assert outcome.status == "done" and outcome.stage == "quality_gate"
    [warning] = outcome.metrics["warnings"]
    assert warning.startswith("placement: post-activation block") and "non-finite" in warning

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    study = store.create_study(
        "warned",
        space="activation",
        algorithm="random",
        seed=0,
        config={"space": {"kind": "activation", "options": {}}, "evaluator": {"kind": "synthetic"}},
        objectives=[{"name": "val_acc@digits", "direction": "max"}],
        budget_evaluations=1,
        budget_minutes=None,
    )
    canonical = ACTIVATIONS.canonical(genome)
    store.add_candidate_with_evaluation(
        study.id,
        {"genome": genome, "canonical": canonical, "key": ACTIVATIONS.key(genome), "origin": "sample"},
        {"status": "done", "objectives": {"val_acc@digits": 0.9}, "metrics": outcome.metrics},
    )
    [(cand, ev)] = store.history(study.id)
    manifest = json.loads(export_candidates(store, "warned", [Scored(cand, ev, (0.9,))], tmp_path).read_text())
    assert manifest["candidates"][0]["warnings"] == [warning]
    assert manifest["objectives_split"] == "validation"
    assert warning in (tmp_path / manifest["candidates"][0]["module"]).read_text()


def test_the_stage_is_skipped_where_the_genome_is_a_whole_network() -> None:
    space = get_space("kan")
    proxies = [{"name": "fit", "arch": "kan", "dataset": "fit_xy", "steps": 2}]
    config = EvaluatorConfig(
        proxies=proxies,
        objectives=[{"name": "val_rmse@fit", "direction": "min"}],
        rejection={"placement": {"enabled": True}, "quality_gate": {"enabled": False}},
    )
    outcome = ProxyEvaluator(space, config, "cpu").evaluate(space.sample(np.random.default_rng(0)))
    assert "placement" not in outcome.stage_seconds and outcome.stage != "placement"
