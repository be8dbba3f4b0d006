"""A small norm-act study end to end: the real runner and real image proxies on Ray, the rejection funnel,
the Pareto front over K=2 proxies, the summary, the Pareto export and re-ranking; then the cascade pieces it
relies on (probe flatness through a normalization, stability, fingerprint, token-layout diagnostics)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

from evaluators import EvaluatorConfig, ProxyEvaluator, fingerprint
from evaluators.archs import CandidateSlot
from evaluators.config import Fingerprint
from evaluators.splits import TEST, on_split
from evaluators.training import activation_diagnostics
from search.config import parse_config
from search.export import export_study
from search.objectives import objectives_of
from search.rerank import compare, rerank
from search.results import mean_std, pareto_front, rejection_funnel, scored_candidates
from search.runner import StudyRunner
from search.store import Store, StudyRow
from search.summary import print_summary
from spaces import get_space

NAME = "normact_e2e"
SEEDS = ["bn_relu", "gn_relu", "evonorm_b0", "evonorm_s0"]
CASCADE = ["fingerprint", "static", "numeric_probe", "stability", "quality_gate", "full"]
IMAGES = {"num_classes": 4, "train_size": 256, "val_size": 128, "size": 8, "channels": 3}


def _proxy(name: str, arch: str, **arch_options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "arch": arch,
        "dataset": "synthetic_images",
        "dataset_options": IMAGES,
        "arch_options": arch_options,
        "steps": 15,
        "batch_size": 32,
        "lr": 0.01,
    }


def normact_config(tmp_path: Path) -> dict[str, Any]:
    """K=2 tiny proxies, every cascade stage on, a gate every layer passes (the funnel is what is checked)."""
    return {
        "name": NAME,
        "seed": 3,
        "space": {"kind": "normact", "options": {"mode": "B", "nodes": 4, "groups": 4}, "seeds": SEEDS},
        "algorithm": {"name": "pareto", "options": {"population_size": 4, "tournament_size": 2}},
        "evaluator": {
            "proxies": [
                _proxy("resnet", "resnet", width=4, stages=2, blocks_per_stage=1),
                _proxy("mobilenetv2", "mobilenetv2", width=4, stages=2, blocks_per_stage=1, expansion=2),
            ],
            "rejection": {
                "stability": {"enabled": True, "ascent_steps": 2},
                "quality_gate": {"steps": 5, "min_val_acc": 0.0},
            },
            "objectives": [{"name": "val_acc@resnet"}, {"name": "val_acc@mobilenetv2"}],
            "timeout_seconds": 120,
        },
        "budget": {"evaluations": 8},
        "resources": {"workers": 2},
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
    }


@pytest.fixture(scope="module")
def study(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, StudyRow]:
    cfg = parse_config(normact_config(tmp_path_factory.mktemp("normact_study")))
    store = Store(cfg.store.url)
    return store, StudyRunner(cfg, store, progress=False).run()


def test_baselines_are_evaluated_on_every_proxy(study):
    store, row = study
    assert row.status == "finished"
    rows = store.evaluations(row.id)
    assert sum(e.status in ("done", "rejected", "failed") for _, e in rows) == 8
    by_seed = {c.seed_name: e for c, e in rows if c.seed_name}
    assert sorted(by_seed) == sorted(SEEDS)
    for name, ev in by_seed.items():
        assert ev.status == "done", (name, ev.reason)
        assert set(ev.objectives) == {"val_acc@resnet", "val_acc@mobilenetv2"}


def test_every_stage_is_recorded_with_seconds(study):
    store, row = study
    for cand, ev in store.evaluations(row.id):
        if ev.status == "done":
            assert sorted(ev.stage_seconds) == sorted(CASCADE), cand.formula
            assert all(seconds > 0 for seconds in ev.stage_seconds.values())
    stages, outside = rejection_funnel(store, row)
    assert [s.stage for s in stages if s.stage != "dedupe"] == CASCADE and outside == {}
    assert stages[0].reached == len(store.evaluations(row.id))
    assert all(s.seconds > 0 and 0 <= s.stopped <= s.reached for s in stages if s.stage != "dedupe")
    assert [s.reached for s in stages] == sorted((s.reached for s in stages), reverse=True)


def test_summary_shows_funnel_pareto_front_and_baselines(study):
    store, row = study
    console = Console(record=True, width=220)
    print_summary(console, store, row)
    text = console.export_text()
    assert "Rejection funnel" in text and "quality_gate" in text and "x full" in text
    assert "Pareto front over val_acc@resnet, val_acc@mobilenetv2" in text
    assert all(name in text for name in SEEDS)


def _load(path: Path, class_name: str) -> type[torch.nn.Module]:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)


@pytest.mark.parametrize("layout", ["nchw", "nlc"])
def test_pareto_export_matches_the_platform_layers(study, tmp_path, layout):
    store, row = study
    manifest = json.loads(export_study(store, NAME, tmp_path, pareto=True).read_text())
    front = pareto_front(scored_candidates(store, row))
    assert [e["candidate_id"] for e in manifest["candidates"]] == [s.candidate.id for s in front]
    space = get_space("normact", mode="B", nodes=4, groups=4)
    shape = (6, 8, 3, 3) if layout == "nchw" else (6, 5, 8)
    inputs = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    for entry in manifest["candidates"]:
        assert entry["constructor"] == f"{entry['class_name']}(num_channels: int, layout: str='nchw')"
        genome = json.loads((tmp_path / entry["genome"]).read_text())
        platform = space.build(genome, channels=8, layout=layout)
        exported = _load(tmp_path / entry["module"], entry["class_name"])(8, layout)
        with torch.no_grad():
            for p in platform.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        exported.load_state_dict(platform.state_dict())
        for train in (True, False):
            platform.train(train)
            exported.train(train)
            torch.testing.assert_close(exported(inputs), platform(inputs), atol=1e-5, rtol=1e-5)


def test_rerank_compares_against_the_best_baseline(study):
    store, row = study
    rows = rerank(store, NAME, top=8, seeds=2, steps=5, console=Console(quiet=True))  # top 8: searched ones too
    searched = [r for r in rows if r.candidate.origin != "seed"]
    assert searched and {"bn_relu", "gn_relu"} <= {r.label for r in rows}
    assert all(len(r.values["test_acc@resnet"]) == 2 for r in rows)  # rerank scores the test split
    verdicts = compare(rows, store.get_study(NAME))
    names = [on_split(o.name, TEST) for o in objectives_of(store.get_study(NAME))]
    assert len(verdicts) == len(searched) * len(names)
    for name in names:  # each line names the baseline whose mean is best on its objective, not the first one
        best = max((r for r in rows if r.candidate.origin == "seed"), key=lambda r: mean_std(r.values[name])[0])
        lines = [line for line in verdicts if line.startswith(f"{name}:")]
        assert len(lines) == len(searched) and all(f"best baseline, {best.label}" in line for line in lines)


def test_probe_flatness_sees_through_normalization():
    """sum(y) of a pure normalization has a zero input gradient; the projected probe must still pass it."""
    space = get_space("normact", mode="B")
    genome = {**space.seeds()["bn_relu"], "output": 8}  # node 8 is (x - mean) / std: BN without the ReLU
    assert space.describe(genome) == "y = gamma * ((x + -batch_mean(x)) / batch_std(x)) + beta"
    proxies = [_proxy("resnet", "resnet", width=4, stages=1)]
    config = EvaluatorConfig(proxies=proxies, objectives=[{"name": "val_acc@resnet"}])
    outcome = ProxyEvaluator(space, config, "cpu").evaluate(genome, steps=2)
    assert outcome.metrics["probe_flat_fraction"] < 0.05, outcome.reason
    assert outcome.stage != "numeric_probe"


def test_stability_runs_for_sampled_normact_genomes():
    space = get_space("normact", mode="B", nodes=4, groups=4)
    proxies = [_proxy("resnet", "resnet", width=4, stages=1)]
    rejection = {"stability": {"enabled": True, "ascent_steps": 2}, "quality_gate": {"enabled": False}}
    config = EvaluatorConfig(proxies=proxies, objectives=[{"name": "val_acc@resnet"}], rejection=rejection)
    evaluator = ProxyEvaluator(space, config, "cpu")
    rng = np.random.default_rng(5)
    outcomes = [evaluator.evaluate(space.sample(rng), steps=1) for _ in range(6)]
    assert all(o.status != "failed" for o in outcomes), [o.reason for o in outcomes]
    measured = [o.metrics["stability_grad_norm"] for o in outcomes if "stability_grad_norm" in o.metrics]
    assert len(measured) >= 3 and all(np.isfinite(measured))


def test_fingerprint_sees_parameters_and_train_and_eval_mode():
    """At init v1 = 1, so ``x * v1`` equals ``x``; the probe's random parameters keep them apart."""
    space = get_space("normact", mode="B")
    b0 = space.seeds()["evonorm_b0"]  # node 5 is x * v1

    def variant(node: dict) -> dict:
        return {**b0, "nodes": [node if i == 1 else n for i, n in enumerate(b0["nodes"])]}

    plain_x, also_x = variant({"op": "add", "in": [0, 1]}), variant({"op": "max", "in": [0, 0]})  # x + 0, max(x, x)
    fp = {name: fingerprint(space, g, Fingerprint()) for name, g in [("b0", b0), ("x", plain_x), ("x2", also_x)]}
    assert fp["x"] == fp["x2"] != fp["b0"]
    # Batch statistics in train mode, running averages in eval mode: the hash covers both.
    bn = space.seeds()["bn_relu"]
    layer, inputs = space.probe(bn, torch.linspace(-5, 5, 1000))
    assert not torch.equal(layer.train()(inputs), layer.eval()(inputs))


class ZeroFirstChannel(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (torch.arange(x.shape[-1]) > 0)


def test_diagnostics_count_channels_of_token_outputs():
    """In layout "nlc" a unit is a channel (last dim) of the (N, L, C) tokens, not a token position."""
    model = torch.nn.Sequential(CandidateSlot(ZeroFirstChannel(), "nlc"))
    metrics = activation_diagnostics(model, torch.randn(4, 5, 8, generator=torch.Generator().manual_seed(0)))
    assert metrics["act_dead_fraction"] == 1 / 8 and metrics["act_zero_fraction"] == 1 / 8
