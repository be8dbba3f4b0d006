"""Export: standalone modules equal to the platform's, importing only torch; re-ranking stores seeded runs."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from rich.console import Console

from search.config import parse_config
from search.export import export_study
from search.rerank import compare, rerank
from search.runner import StudyRunner
from search.store import Store, StoreError
from spaces import get_space
from tests.conftest import study_config


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def finished_study(ray_address: str, tmp_path_factory) -> tuple[Store, str]:
    tmp = tmp_path_factory.mktemp("export")
    config = study_config("exp", tmp, budget={"evaluations": 16})
    config["space"]["seeds"] = ["relu", "silu", "mish", "crrelu"]
    config["space"]["options"] = {"schema": "tree", "max_depth": 4, "max_nodes": 10}
    config["evaluator"]["objectives"] = [
        {"name": "val_acc@mlp", "direction": "max"},
        {"name": "val_acc@cnn1d", "direction": "max"},
    ]
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    StudyRunner(cfg, store, progress=False).run()
    return store, "exp"


def test_exported_modules_equal_the_platform_modules(finished_study, tmp_path: Path) -> None:
    store, name = finished_study
    manifest_path = export_study(store, name, tmp_path, top=5)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["study"] == name and len(manifest["candidates"]) == 5
    space = get_space("activation", schema="tree", max_depth=4, max_nodes=10)
    x = torch.linspace(-10, 10, 4001)
    for entry in manifest["candidates"]:
        source = (tmp_path / entry["module"]).read_text()
        imported = {n.names[0].name.split(".")[0] for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import)}
        imported |= {n.module.split(".")[0] for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
        assert imported <= {"torch", "math", "__future__"}, imported
        assert f"candidate {entry['candidate_id']}" in source and "val_acc@mlp" in source
        genome = json.loads((tmp_path / entry["genome"]).read_text())
        space.validate(genome)
        exported = getattr(_load(tmp_path / entry["module"]), entry["class_name"])()
        platform = space.build(genome)
        assert torch.max(torch.abs(exported(x) - platform(x))).item() <= 1e-6
        scripted = torch.jit.script(exported)
        assert torch.allclose(scripted(x), exported(x), atol=1e-6)


def test_exported_module_has_one_concise_docstring_and_the_manifest_holds_the_metrics(
    finished_study, tmp_path: Path
) -> None:
    store, name = finished_study
    manifest = json.loads(export_study(store, name, tmp_path, top=3).read_text())
    stored = {cand.id: ev.metrics for cand, ev in store.evaluations(store.get_study(name).id)}
    for entry in manifest["candidates"]:
        tree = ast.parse((tmp_path / entry["module"]).read_text())
        strings = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)]
        assert strings == tree.body[:1], "one module docstring, no second one"
        doc = ast.get_docstring(tree)
        assert "f(x) = " in doc and f"study {name!r}, candidate {entry['candidate_id']}" in doc.lower()
        assert "val_acc@mlp (validation) = " in doc and "val_acc@cnn1d (validation) = " in doc
        stem, class_name = Path(entry["module"]).stem, entry["class_name"]
        snippet = doc.split("manifest.json:\n", 1)[1]
        assert snippet.split() == ["from", stem, "import", class_name, "layer", "=", f"{class_name}()"]
        metrics = {k: v for k, v in stored[entry["candidate_id"]].items() if k != "warnings"}
        assert entry["metrics"] == metrics and entry["latex"]
        assert not [k for k in metrics if k not in entry["objectives"] and k in doc]  # the numbers live in the manifest
        sys.path.insert(0, str(tmp_path))
        try:
            namespace: dict = {}
            exec(textwrap.dedent(snippet), namespace)  # the docstring's snippet works as written
            assert isinstance(namespace["layer"], torch.nn.Module)
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop(stem, None)


def test_pareto_export_holds_only_non_dominated_candidates(finished_study, tmp_path: Path) -> None:
    store, name = finished_study
    manifest = json.loads(export_study(store, name, tmp_path, pareto=True).read_text())
    points = [tuple(c["objectives"][k] for k in ("val_acc@mlp", "val_acc@cnn1d")) for c in manifest["candidates"]]
    for a in points:
        assert not any(b[0] >= a[0] and b[1] >= a[1] and b != a for b in points)


def test_export_of_an_empty_study_says_why(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    store.create_study(
        "empty",
        space="activation",
        algorithm="random",
        seed=0,
        config={"space": {}},
        objectives=[{"name": "val_acc@mlp", "direction": "max"}],
        budget_evaluations=1,
        budget_minutes=None,
    )
    with pytest.raises(StoreError, match="no finished candidate"):
        export_study(store, "empty", tmp_path / "out", top=3)


def test_rerank_trains_top_and_baselines_with_several_seeds(ray_address: str, tmp_path: Path) -> None:
    config = study_config("rr", tmp_path, budget={"evaluations": 4})
    config["space"]["seeds"] = ["relu", "silu"]
    config["evaluator"] = {
        "proxies": [{"name": "digits", "arch": "mlp", "dataset": "digits", "steps": 30, "batch_size": 64}],
        "objectives": [{"name": "val_acc@digits", "direction": "max"}],
        "rejection": {"quality_gate": {"steps": 5, "min_chance_multiple": 0.5}},
    }
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    StudyRunner(cfg, store, progress=False).run()
    rows = rerank(store, "rr", top=1, seeds=3, steps=40, console=Console(quiet=True))
    labels = {r.label for r in rows}
    assert {"relu", "silu"} <= labels
    assert all(len(r.values["test_acc@digits"]) == 3 for r in rows)  # rerank scores the test split
    assert all(0.1 < v <= 1.0 for r in rows for v in r.values["test_acc@digits"])
    study = store.get_study("rr")
    reranked = [e for _, e in store.evaluations(study.id, purpose="rerank")]
    assert {e.seed for e in reranked} == {1000, 1001, 1002} and all(e.steps == 40 for e in reranked)
    assert len(compare(rows, study)) == 1
    again = rerank(store, "rr", top=1, seeds=3, steps=40, console=Console(quiet=True))  # already done: reused
    assert len(store.evaluations(study.id, purpose="rerank")) == len(reranked)
    assert [r.values for r in again] == [r.values for r in rows]
