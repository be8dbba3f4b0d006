"""The Python API (`import layerforge as lf`) end to end on real Ray and a real SQLite file, and its errors."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

import layerforge as lf
from evaluators.vocabulary import FINISHED
from layerforge.frames import CANDIDATE_COLUMNS, DETAIL_COLUMNS, transfer_frame
from search import transfer_results
from search.store import Store
from search.transfer_results import CandidateRuns
from tests.conftest import add_study, study_config

QUIET = Console(quiet=True)


def _finished(frame) -> int:
    return int(frame["status"].isin([str(s) for s in FINISHED]).sum())


def test_create_run_read_export_rerank_and_extend(ray_address: str, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'api.db'}"
    config = study_config("from-config", tmp_path, resources={"workers": 1})  # store: another file
    config["space"]["seeds"] = ["relu", "gelu"]

    study = lf.create_study(config, name="api-demo", storage=storage)
    assert study.status == "created" and study.results().empty
    assert list(study.results().columns) == [*CANDIDATE_COLUMNS, "val_acc@mlp", *DETAIL_COLUMNS]

    assert study.run(evaluations=5, progress=False, console=QUIET) is None  # the config asks for no export
    store = Store(storage, read_only=True)
    row = store.get_study("api-demo")
    assert row.status == "finished" and row.budget_evaluations == 5 and row.config["budget"]["evaluations"] == 5
    assert row.config["store"]["url"] == storage, "the stored config names the store the study is in"

    results = study.results()
    stored = store.evaluations(row.id, purpose="search")
    assert results["candidate_id"].tolist() == [c.id for c, _ in stored]
    assert results["status"].tolist() == [str(e.status) for _, e in stored]
    assert results["formula"].tolist() == [c.formula for c, _ in stored]
    for value, (_, ev) in zip(results["val_acc@mlp"], stored, strict=True):
        assert value == ev.objectives["val_acc@mlp"] if "val_acc@mlp" in ev.objectives else math.isnan(value)
    assert _finished(results) == 5
    assert results["seed_name"].head(2).tolist() == ["relu", "gelu"]

    loaded = lf.load_study("api-d", storage=storage)  # a unique prefix
    assert loaded.name == "api-demo" and loaded.status == "finished"
    best = loaded.best(k=2)
    done = results[results["status"] == "done"].sort_values(["val_acc@mlp", "candidate_id"], ascending=[False, True])
    assert best["candidate_id"].tolist() == done["candidate_id"].head(2).tolist()
    top_value = done["val_acc@mlp"].max()  # one objective: the front is the best (and any tie)
    assert loaded.pareto()["candidate_id"].tolist() == done[done["val_acc@mlp"] == top_value]["candidate_id"].tolist()

    listing = lf.list_studies(storage=storage)
    assert listing[["name", "status", "finished", "budget_evaluations"]].values.tolist() == [
        ["api-demo", "finished", 5, 5]
    ]

    manifest = json.loads(loaded.export(tmp_path / "out", top=2).read_text())
    assert [c["candidate_id"] for c in manifest["candidates"]] == best["candidate_id"].tolist()
    for entry in manifest["candidates"]:
        spec = importlib.util.spec_from_file_location(entry["module"][:-3], tmp_path / "out" / entry["module"])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        assert getattr(module, entry["class_name"])()(torch.linspace(-3, 3, 7)).shape == (7,)

    final = loaded.rerank(top=1, seeds=2, console=QUIET)
    assert final["candidate_id"].tolist()[0] == best["candidate_id"].iloc[0]  # the best first, then the baselines
    assert set(final["label"]) >= {"relu", "gelu"}
    assert (final["test_acc@mlp_n"] == 2).all() and final["test_acc@mlp"].notna().all()
    assert len(loaded.test_results()) == len(final)

    loaded.run(evaluations=3, progress=False, console=QUIET)  # a finished study runs on: 3 more
    more = loaded.results()
    assert _finished(more) == 8 and loaded.status == "finished"
    assert more.head(len(results))["candidate_id"].tolist() == results["candidate_id"].tolist()
    assert store.get_study("api-demo").budget_evaluations == 8


def test_errors_name_the_problem(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'errors.db'}"
    with pytest.raises(lf.ConfigError, match="budget.evaluations"):
        lf.create_study({**study_config("bad", tmp_path), "budget": {"evaluations": "many"}}, storage=storage)
    with pytest.raises(lf.ConfigError, match="unknown algorithm 'annealing'"):
        lf.create_study(study_config("bad", tmp_path, algorithm={"name": "annealing"}), storage=storage)
    with pytest.raises(lf.ConfigError, match="does not exist"):
        lf.create_study(tmp_path / "missing.yaml", storage=storage)
    unusable_seed = study_config("bad", tmp_path, space={"kind": "activation", "seeds": ["wibble(x)"]})
    with pytest.raises(lf.ConfigError, match="space.seeds: 'wibble\\(x\\)' is not usable"):
        lf.create_study(unusable_seed, storage=storage)  # checked after the store opened
    assert lf.list_studies(storage=storage).empty, "a bad config writes no study"

    store = Store(storage)
    add_study(store, "exp-a1")
    add_study(store, "exp-a2")
    with pytest.raises(lf.StoreError, match="ambiguous.*exp-a1, exp-a2"):
        lf.load_study("exp-a", storage=storage)
    with pytest.raises(lf.StoreError, match="no study named 'nope'.*exp-a1, exp-a2"):
        lf.load_study("nope", storage=storage)
    with pytest.raises(lf.StoreError, match="already exists"):
        lf.create_study(study_config("exp-a1", tmp_path), storage=storage)
    assert lf.create_study(study_config("exp-a1", tmp_path), storage=storage, load_if_exists=True).status == "created"
    with pytest.raises(lf.StoreError, match="does not exist"):
        lf.load_study("exp-a1", storage=f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists(), "loading never creates a store"
    with pytest.raises(lf.ConfigError, match="evaluations must be at least 1"):
        lf.load_study("exp-a1", storage=storage).run(evaluations=0)


def test_transfer_frame_compares_each_layer_with_the_best_baseline_per_network() -> None:
    relu = CandidateRuns("relu", "relu(x)", is_baseline=True, candidate_id=1, runs={"lm": {1: 0.50, 2: 0.54}})
    gelu = CandidateRuns("gelu", "gelu(x)", is_baseline=True, candidate_id=2, runs={"lm": {1: 0.60, 2: 0.62}})
    found = CandidateRuns("c9", "x*sigmoid(x)", is_baseline=False, candidate_id=9, runs={"lm": {1: 0.70, 2: None}})
    frame = transfer_frame([relu, gelu, found], {"lm": 400})
    assert frame["label"].tolist() == ["relu", "gelu", "c9"]
    assert (frame["best_baseline"] == "gelu").all() and (frame["steps"] == 400).all()
    assert frame["metric"].iloc[0] == transfer_results.test_name("lm")
    row = frame.set_index("label").loc["c9"]
    assert (row["mean"], row["n"], row["without_value"]) == (0.70, 1, 1)
    assert row["delta"] == pytest.approx(0.10) and math.isnan(row["p"])  # one pair: no test
    assert math.isnan(frame.set_index("label").loc["gelu", "delta"])  # the best baseline is not compared with itself
