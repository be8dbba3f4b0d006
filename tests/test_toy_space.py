"""A space registered from outside ``spaces/`` (tests/toy_space.py) goes through export, the dashboard's candidate
and compare pages and a real Ray study with no edit elsewhere: the platform knows a space only by its contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from search.config import parse_config
from search.export import export_candidates
from search.results import scored_candidates
from search.runner import StudyRunner
from search.store import Store
from spaces import get_space
from tests.conftest import study_config
from tests.test_dashboard import add_candidate, app_on, chart_keys, new_study, texts
from tests.toy_space import SLOPES

DONE = {"stage": "full", "objectives": {"val_acc@mlp": 0.7, "latency_ms@mlp": 1.5}}


def toy_store(url: str) -> tuple[Store, list[int]]:
    """A finished toy study: a sampled candidate and its mutant (so the mutant has a parent to draw)."""
    store = Store(url)
    study = new_study(store, "toy-study", space="toy_leaky")
    space = get_space("toy_leaky")
    first = add_candidate(store, study, space.parse("leaky(x, 0.2)"), "done", **DONE)
    second = add_candidate(
        store,
        study,
        space.parse("leaky(x, 0.05)"),
        "done",
        origin="mutate",
        parents=[first],
        mutation_op="slope",
        **DONE,
    )
    return store, [first, second]


def test_export_names_the_class_from_the_space_and_matches_build(tmp_path: Path) -> None:
    store, ids = toy_store(f"sqlite:///{tmp_path / 'toy.db'}")
    study = store.get_study("toy-study")
    chosen = [s for s in scored_candidates(store, study) if s.candidate.id == ids[1]]
    manifest = json.loads(export_candidates(store, study.name, chosen, tmp_path / "out").read_text())
    entry = manifest["candidates"][0]
    assert entry["class_name"] == f"LeakyC{ids[1]}" and manifest["space"] == "toy_leaky"
    namespace: dict[str, Any] = {}
    exec(compile((tmp_path / "out" / entry["module"]).read_text(), entry["module"], "exec"), namespace)
    x = torch.linspace(-4, 4, 81)
    genome = json.loads((tmp_path / "out" / entry["genome"]).read_text())
    torch.testing.assert_close(namespace[entry["class_name"]]()(x), get_space("toy_leaky").build(genome)(x))


def test_candidate_page_draws_its_curve_reference_and_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, (parent, child) = toy_store(f"sqlite:///{tmp_path / 'toy.db'}")
    at = app_on(store, monkeypatch, "candidate", id=str(child))
    assert f"Candidate {child}" in texts(at) and "leaky(x, 0.05)" in texts(at)
    assert at.get("latex") and chart_keys(at) == {"activation_plot"}
    plot = at.get("plotly_chart")[0].proto.spec
    assert f"c{child}" in plot and "ReLU" in plot and f"parent c{parent}" in plot
    assert f"toy_study_c{child}.py" in at.get("download_button")[0].proto.label
    assert any(f"class LeakyC{child}(torch.nn.Module)" in c.value for c in at.code if c.language == "python")


def test_compare_page_overlays_the_curves_of_every_space_with_one_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, ids = toy_store(f"sqlite:///{tmp_path / 'toy.db'}")
    activation = new_study(store, "activation-study")
    other = add_candidate(store, activation, get_space("activation").parse("tanh(x)"), "done", **DONE)
    at = app_on(store, monkeypatch, "compare", ids=",".join(map(str, [*ids, other])))
    assert chart_keys(at) == {"compare_plot"}
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    names = [t["name"] for t in traces if t.get("showlegend", True)]
    assert names == [f"c{ids[0]}", f"c{ids[1]}", f"c{other}", "ReLU"]  # both spaces' references are ReLU: drawn once
    assert list(at.dataframe[-1].value.columns) == [f"c{i}" for i in [*ids, other]]


def test_a_study_on_the_toy_space_runs_on_ray(ray_address: str, tmp_path: Path) -> None:
    config = study_config("toy-run", tmp_path, budget={"evaluations": 5})
    config["space"] = {"kind": "toy_leaky", "options": {}, "seeds": ["relu"]}
    config["algorithm"] = {"name": "random", "options": {}}
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    StudyRunner(cfg, store, progress=False).run()
    study = store.get_study("toy-run")
    finished = [(c, e) for c, e in store.evaluations(study.id, purpose="search") if e.status == "done"]
    assert study.status == "finished" and len(finished) == 5
    assert len({c.key for c, _ in finished}) == 5
    assert {c.genome["slope"] for c, _ in finished} <= set(SLOPES)
    assert next(c for c, _ in finished if c.seed_name == "relu").formula == "leaky(x, 0.0)"
