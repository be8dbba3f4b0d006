"""KAN search end to end: Optuna samplers through the real runner, store and workers; replay; export."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import optuna
import torch

from evaluators.config import EvaluatorConfig, Objective
from evaluators.proxy import ProxyEvaluator
from search.algorithms import OptunaNSGA2, OptunaTPE, Result
from search.config import parse_config
from search.export import export_study
from search.runner import StudyRunner
from search.store import Store
from spaces import get_space

SPACE_OPTIONS = {
    "families": ["bspline", "rbf", "chebyshev"],
    "selectable": True,
    "candidates": ["bspline", "rbf"],
    "widths": [2, 3],
    "min_hidden": 1,
    "max_hidden": 1,
    "grids": [3, 5],
    "orders": [3],
    "degrees": [3, 4],
    "norms": ["none", "tanh"],
}


def _kan_study(name: str, tmp_path: Path, algorithm: dict, objectives: list[dict], evaluations: int) -> dict:
    return {
        "name": name,
        "seed": 3,
        "space": {"kind": "kan", "options": SPACE_OPTIONS, "seeds": ["mlp", "selectable"]},
        "algorithm": algorithm,
        "evaluator": {
            "kind": "proxy",
            "proxies": [
                {
                    "name": "fit",
                    "arch": "kan",
                    "dataset": "fit_exp_sin",
                    "dataset_options": {"n_train": 200, "n_test": 200},
                    "steps": 40,
                    "batch_size": 100,
                    "lr": 0.01,
                }
            ],
            "rejection": {"numeric_probe": {"low": -1.0, "high": 1.0, "points": 200}, "quality_gate": {"steps": 5}},
            "objectives": objectives,
            "timeout_seconds": 60,
        },
        "budget": {"evaluations": evaluations},
        "resources": {"workers": 2},
        "store": {"url": f"sqlite:///{tmp_path / 'kan.db'}"},
    }


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def test_tpe_kan_study_runs_through_runner_store_and_export(ray_address: str, tmp_path: Path) -> None:
    objectives = [{"name": "val_rmse@fit", "direction": "min"}]
    config = _kan_study("kan_tpe", tmp_path, {"name": "optuna_tpe", "options": {"n_startup_trials": 3}}, objectives, 8)
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    StudyRunner(cfg, store, progress=False).run()

    study = store.get_study("kan_tpe")
    rows = store.evaluations(study.id)
    assert study.status == "finished"
    assert sum(e.status in ("done", "rejected", "failed") for _, e in rows) == 8
    assert [c.seed_name for c, _ in sorted(rows, key=lambda r: r[0].id)[:2]] == ["mlp", "selectable"]
    proposed = [c for c, _ in rows if c.origin == "optuna"]
    assert proposed, "no trial came from the Optuna sampler"
    for cand in proposed:
        assert {"trial", "params", "distributions"} <= set(cand.proposal)
        assert "n_hidden" in cand.proposal["params"]
    done = [e for _, e in rows if e.status == "done"]
    assert done and all(math.isfinite(e.objectives["val_rmse@fit"]) for e in done)
    assert all(e.metrics["latency_ms@fit"] > 0 and e.metrics["params@fit"] > 0 for e in done)

    manifest_path = export_study(store, "kan_tpe", tmp_path / "export", top=3)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["constructor_defaults"] == {"in_features": 2, "out_features": 1}
    space = get_space("kan", **SPACE_OPTIONS)
    genomes = {c.id: c.genome for c, _ in rows}
    x = torch.rand(64, 2) * 2 - 1
    for entry in manifest["candidates"]:
        path = tmp_path / "export" / entry["module"]
        assert _imported_modules(path) <= {"__future__", "math", "torch"}
        exported = getattr(_import(path), entry["class_name"])()  # task sizes are the defaults
        platform = space.build(genomes[entry["candidate_id"]], in_features=2, out_features=1)
        exported.load_state_dict(platform.state_dict())
        torch.testing.assert_close(exported(x), platform(x))


def test_search_picks_training_recipes(ray_address: str, tmp_path: Path) -> None:
    """Genomes name a recipe of the proxy (Adam, or LBFGS with grid updates); both run through the real runner."""
    objectives = [{"name": "val_rmse@fit", "direction": "min"}]
    config = _kan_study("kan_recipes", tmp_path, {"name": "random"}, objectives, 8)
    config["space"]["options"] = SPACE_OPTIONS | {"recipes": ["adam", "lbfgs_grid"]}
    config["evaluator"]["proxies"][0]["recipes"] = {
        "adam": {},
        "lbfgs_grid": {"optimizer": "lbfgs", "grid_updates": [0, 10, 20]},
    }
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    StudyRunner(cfg, store, progress=False).run()
    rows = store.evaluations(store.get_study("kan_recipes").id)
    done = {c.genome.get("recipe") for c, e in rows if e.status == "done"}
    assert {"adam", "lbfgs_grid"} <= done, [(c.genome.get("recipe"), e.status, e.reason) for c, e in rows]
    assert all(math.isfinite(e.objectives["val_rmse@fit"]) for _, e in rows if e.status == "done")


def _replay_into(algorithm, results: list[Result]) -> None:
    for result in results:
        algorithm.tell(result)


def test_optuna_tpe_replay_rebuilds_the_study() -> None:
    space = get_space("kan", **SPACE_OPTIONS)
    objectives = [Objective(name="val_rmse@fit", direction="min")]
    live = OptunaTPE(space, objectives, np.random.default_rng(0), n_startup_trials=2)
    results = []
    for i in range(6):
        proposal = live.ask()
        assert proposal.origin == "optuna"
        failed = i == 2
        objective = {} if failed else {"val_rmse@fit": float(len(space.canonical(proposal.genome)) % 7) + i}
        result = Result(i + 1, proposal.genome, 0, "failed" if failed else "done", objective, proposal.data)
        live.tell(result)
        results.append(result)
    seed_result = Result(99, space.seeds()["mlp"], 0, "done", {"val_rmse@fit": 0.5}, {})

    replayed = OptunaTPE(space, objectives, np.random.default_rng(1), n_startup_trials=2)
    _replay_into(replayed, [seed_result, *results])  # a seed has no Optuna trial and is skipped

    old, new = live.study.trials, replayed.study.trials
    assert [t.params for t in new] == [t.params for t in old]
    assert [t.state for t in new] == [t.state for t in old]
    pruned = optuna.trial.TrialState.PRUNED  # a layer TPE proposed again, asked past (kept in the proposal's data)
    assert any(t.state == pruned for t in old)
    assert [t.state for t in new if t.state != pruned][2] == optuna.trial.TrialState.FAIL
    assert [t.values for t in new] == [t.values for t in old]
    assert replayed.study.best_value == live.study.best_value
    following = replayed.ask()
    assert following.data["trial"] >= len(old)
    space.validate(following.genome)


def test_optuna_nsga2_drives_a_multi_objective_kan_search() -> None:
    space = get_space("kan", **SPACE_OPTIONS)
    objectives = [Objective(name="val_rmse@fit", direction="min"), Objective(name="params@fit", direction="min")]
    algorithm = OptunaNSGA2(space, objectives, np.random.default_rng(0), population_size=4)
    assert algorithm.study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    assert isinstance(algorithm.study.sampler, optuna.samplers.NSGAIISampler)
    for i in range(12):
        proposal = algorithm.ask()
        net = space.build(proposal.genome, in_features=2, out_features=1)
        params = float(sum(p.numel() for p in net.parameters()))
        rmse = 1.0 / params + 0.01 * len(proposal.genome["layers"][0]["family"])
        algorithm.tell(
            Result(i, proposal.genome, 0, "done", {"val_rmse@fit": rmse, "params@fit": params}, proposal.data)
        )
    front = algorithm.study.best_trials
    assert len(algorithm.study.trials) == 12 and front
    assert all(len(t.values) == 2 for t in front)


def test_layernorm_on_a_single_input_is_rejected_with_its_reason() -> None:
    space = get_space("kan")
    config = EvaluatorConfig.model_validate(
        {
            "proxies": [{"name": "j0", "arch": "kan", "dataset": "fit_j0", "steps": 5, "batch_size": 50}],
            "rejection": {"numeric_probe": {"low": -1.0, "high": 1.0}, "quality_gate": {"steps": 2}},
            "objectives": [{"name": "val_rmse@j0", "direction": "min"}],
        }
    )
    evaluator = ProxyEvaluator(space, config, "cpu")
    layer = {"family": "rbf", "grid": 5, "base": True, "norm": "layernorm"}
    genome = {"space": "kan", "v": 1, "hidden": [3], "layers": [layer, {**layer, "norm": "none"}]}
    outcome = evaluator.evaluate(genome)
    assert outcome.status == "rejected"
    assert "does not build for this task" in outcome.reason and "layernorm" in outcome.reason
    fine = evaluator.evaluate({**genome, "layers": [{**layer, "norm": "tanh"}, layer]})
    assert fine.status == "done", fine.reason


def test_exported_selectable_network_matches_and_hardens_like_the_platform(tmp_path: Path) -> None:
    space = get_space("kan", **SPACE_OPTIONS)
    genome = space.seeds()["selectable"]
    torch.manual_seed(0)
    platform = space.build(genome, in_features=2, out_features=1)
    with torch.no_grad():
        for layer in platform.layers:
            layer.logits.normal_()  # as after training: nodes prefer different families
    path = tmp_path / "selectable_net.py"
    path.write_text(space.to_source(genome, "SelectableNet", in_features=2, out_features=1))
    assert _imported_modules(path) <= {"__future__", "math", "torch"}
    exported = _import(path).SelectableNet()
    exported.load_state_dict(platform.state_dict())
    x = torch.rand(32, 2) * 2 - 1
    torch.testing.assert_close(exported(x), platform(x))

    _, compact = space.harden(genome, platform)
    exported.harden()
    torch.testing.assert_close(exported(x), compact(x))
    assert sum(p.numel() for p in exported.parameters()) < sum(p.numel() for p in platform.parameters())
