"""Dashboard pages under Streamlit's AppTest on real stores: a study run for real on Ray, an empty store,
a study whose every candidate failed, a study still running, and norm-act and KAN studies (every page, the Explore
page's history, parallel coordinates, slices and parts of the best included)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from dashboard import analysis, queries
from dashboard.charts import STATUS_COLORS, pareto_scatter
from evaluators.vocabulary import CASCADE, OUTSIDE_CASCADE
from search.config import parse_config
from search.export import export_candidates
from search.objectives import objectives_of
from search.results import pareto_front, scored_candidates
from search.runner import StudyRunner
from search.store import Store, StudyRow, utcnow
from spaces import GenomeError, Space, get_space
from tests.conftest import study_config

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
OBJECTIVES = [{"name": "val_acc@mlp", "direction": "max"}, {"name": "latency_ms@mlp", "direction": "min"}]


# -- fixture stores ---------------------------------------------------------------------------------------


def run_normal_study(folder: Path, name: str = "normal", evaluations: int = 40) -> Store:
    """A real two-objective study on Ray with the synthetic evaluator: baselines, failures, rejections, rerank."""
    config = study_config(name, folder, budget={"evaluations": evaluations})
    config["evaluator"]["objectives"] = OBJECTIVES
    config["evaluator"]["synthetic"] = {"seconds": 0.02, "fail_on": ["sinh"], "nan_on": ["cosh"]}
    config["space"]["seeds"] = ["relu", "gelu", "sinh(x)", "cosh(x)"]
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    StudyRunner(cfg, store, progress=False).run()
    add_rerank_rows(store, store.get_study(name))
    return store


def add_rerank_rows(store: Store, study: StudyRow) -> None:
    """Three re-ranking seeds for the best candidate and for the relu baseline, as `layerforge rerank` stores them."""
    best = scored_candidates(store, study)
    top = max(best, key=lambda s: s.values[0]).candidate
    relu = queries.seed_candidate(store, study.id, "relu")
    assert relu is not None
    for cand in (top, relu):
        for i, seed in enumerate((1000, 1001, 1002)):
            now = utcnow()
            store.add_evaluation(
                study.id,
                cand.id,
                purpose="rerank",
                status="done",
                stage="full",
                seed=seed,
                worker="worker-1",
                started_at=now,
                finished_at=now,
                seconds=0.1,
                objectives={"val_acc@mlp": 0.5 + 0.01 * i, "latency_ms@mlp": 1.0 + 0.1 * i},
            )


def new_study(store: Store, name: str, space: str = "activation", status: str = "finished") -> StudyRow:
    study = store.create_study(
        name,
        space=space,
        algorithm="random",
        seed=0,
        config={"space": {"kind": space, "options": {}}, "evaluator": {"kind": "synthetic", "objectives": OBJECTIVES}},
        objectives=OBJECTIVES,
        budget_evaluations=20,
        budget_minutes=None,
    )
    store.update_study(study.id, status=status, started_at=utcnow() - timedelta(minutes=5), active_seconds=300.0)
    store.log_event(study.id, "start", "started")
    store.log_event(study.id, "workers", "2 workers ready", workers=[{"name": "worker-1"}, {"name": "worker-2"}])
    return store.get_study(name)


def add_candidate(store: Store, study: StudyRow, genome: dict[str, Any], status: str, **evaluation: Any) -> int:
    space = get_space(study.space)
    canonical = space.canonical(genome)
    start = utcnow() - timedelta(seconds=30)
    final = status not in ("running", "pending")
    cand_id, _ = store.add_candidate_with_evaluation(
        study.id,
        {
            "genome": genome,
            "key": space.key(genome),
            "canonical": canonical,
            "formula": space.describe(genome),
            "origin": evaluation.pop("origin", "sample"),
            "parents": evaluation.pop("parents", []),
            "mutation_op": evaluation.pop("mutation_op", None),
        },
        {
            "status": status,
            "worker": "worker-1",
            "queued_at": start,
            "started_at": start,
            "finished_at": start + timedelta(seconds=2) if final else None,
            "seconds": 2.0 if final else None,
            **evaluation,
        },
    )
    return cand_id


def sampled(space_kind: str, count: int, seed: int = 0) -> list[dict[str, Any]]:
    space = get_space(space_kind)
    rng = np.random.default_rng(seed)
    genomes: dict[str, dict[str, Any]] = {}
    while len(genomes) < count:
        genome = space.sample(rng)
        genomes.setdefault(space.key(genome), genome)
    return list(genomes.values())


def build_failed_store(url: str) -> Store:
    store = Store(url)
    study = new_study(store, "all-failed")
    for i, genome in enumerate(sampled("activation", 8)):
        add_candidate(store, study, genome, "failed", stage="worker", reason=f"RuntimeError: boom {i}")
    return store


def build_running_store(url: str) -> Store:
    store = Store(url)
    study = new_study(store, "live", status="running")
    for i, genome in enumerate(sampled("activation", 10, seed=1)):
        if i < 6:
            add_candidate(
                store,
                study,
                genome,
                "done",
                stage="full",
                objectives={"val_acc@mlp": 0.1 * i, "latency_ms@mlp": 5.0 - i},
            )
        elif i < 8:
            add_candidate(
                store, study, genome, "rejected", stage="numeric_probe", reason="output is flat on 97% of points"
            )
        else:
            add_candidate(store, study, genome, "running")
    return store


def build_layer_store(url: str) -> Store:
    """Finished norm-act and KAN studies: a seed genome first (for their candidate views), then sampled ones,
    finished and rejected (for the Explore page)."""
    store = Store(url)
    for kind, seed_name in (("normact", "evonorm_b0"), ("kan", "kan_bspline")):
        study = new_study(store, f"{kind}-study", space=kind)
        genome = get_space(kind).seeds()[seed_name]
        add_candidate(
            store,
            study,
            genome,
            "done",
            stage="full",
            origin="seed",
            objectives={"val_acc@mlp": 0.9, "latency_ms@mlp": 2.0},
            metrics={"val_acc@mlp": 0.9, "latency_ms@mlp": 2.0, "total_train_seconds": 3.25},
        )
        for i, sampled_genome in enumerate(sampled(kind, 9, seed=2)):
            if i < 6:
                values = {"val_acc@mlp": 0.1 * i, "latency_ms@mlp": 1.0 + i}
                add_candidate(store, study, sampled_genome, "done", stage="full", objectives=values, metrics=values)
            else:
                add_candidate(store, study, sampled_genome, "rejected", stage="quality_gate", reason="val_acc 0.1")
    return store


@pytest.fixture(scope="module")
def stores(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Store]]:
    folder = tmp_path_factory.mktemp("dashboard_stores")
    built = {
        "normal": run_normal_study(folder / "normal"),
        "empty": Store(f"sqlite:///{folder / 'empty.db'}"),
        "failed": build_failed_store(f"sqlite:///{folder / 'failed.db'}"),
        "running": build_running_store(f"sqlite:///{folder / 'running.db'}"),
        "layers": build_layer_store(f"sqlite:///{folder / 'layers.db'}"),
    }
    yield built
    for store in built.values():
        store.close()


def app_on(store: Store, monkeypatch: pytest.MonkeyPatch, page: str | None = None, **params: str) -> AppTest:
    """The dashboard app on ``store``, switched to ``page`` with query parameters, after one run."""
    monkeypatch.setenv("LAYERFORGE_DB", store.url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if page is not None:
        at.switch_page(f"views/{page}.py")
        at.query_params.update(params)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [
        m.value
        for kind in ("markdown", "caption", "info", "error", "warning", "title", "subheader", "code")
        for m in at.get(kind)
    ]
    parts += [f"{m.label} {m.value}" for m in at.get("metric")]
    return "\n".join(str(p) for p in parts)


# -- pages ------------------------------------------------------------------------------------------------

SCENARIOS = ["normal", "empty", "failed", "running"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_studies_page(stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch, scenario: str) -> None:
    at = app_on(stores[scenario], monkeypatch)
    if scenario == "empty":
        assert "No studies in this store yet" in texts(at)
        return
    table = at.dataframe[0].value
    row = table.iloc[0]
    expected = {"normal": ("normal", "finished"), "failed": ("all-failed", "finished"), "running": ("live", "running")}
    assert (row["study"], row["status"]) == expected[scenario]
    if scenario == "normal":
        assert row["finished"] == row["budget"] == 40
        assert "val_acc@mlp" in row["best"] and row["workers"] == 2 and row["evaluations/hour"] > 0
    if scenario == "failed":
        assert row["failed"] == 8 and row["rejection rate"] == 0 and row["best"].count("-") == 2
    if scenario == "running":
        assert row["finished"] == 8 and row["rejection rate"] == pytest.approx(2 / 8)


def chart_keys(at: AppTest) -> set[str]:
    return {c.key for c in at.get("plotly_chart")}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_study_page(stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch, scenario: str) -> None:
    name = {"normal": "normal", "failed": "all-failed", "running": "live", "empty": ""}[scenario]
    at = app_on(stores[scenario], monkeypatch, "study", study=name)
    text = texts(at)
    if scenario == "empty":
        assert "No studies in this store yet" in text
        return
    metrics = {m.label: m.value for m in at.metric}
    table = at.dataframe[0].value  # the candidates table, first page
    if scenario == "normal":
        assert metrics["status"] == "finished" and metrics["finished"] == "40 / 40"
        assert chart_keys(at) == {"best_curve", "pareto", "distributions", "funnel", "timeline"}
        assert len(table) == 50 and "candidates match; showing 1-50" in text
        assert "done" in set(table["status"])
        assert {"done", "failed", "rejected"} <= set(at.dataframe[1].value["status"])  # the stage funnel
        assert {"worker-1", "worker-2"} == set(at.dataframe[-1].value["worker"])
    if scenario == "failed":
        assert "every one so far failed or was rejected" in text
        assert set(table["status"]) == {"failed"} and len(table) == 8
        assert chart_keys(at) == {"funnel", "timeline"}
        assert "RuntimeError: boom #" in set(at.dataframe[2].value["reason"])  # numbers folded: one reason
    if scenario == "running":
        assert metrics["status"] == "running" and metrics["in flight"] == "2" and metrics["finished"] == "8 / 20"
        assert set(table["status"]) == {"done", "rejected", "running"}
        assert "pareto" in chart_keys(at)


def test_candidates_table_filters_sorts_and_pages_in_sql(stores: dict[str, Store]) -> None:
    store = stores["normal"]
    study = store.get_study("normal")
    names = ["val_acc@mlp", "latency_ms@mlp"]
    everything, total = queries.candidate_table(store, study.id, names, queries.TableQuery(page_size=1000))
    assert total == len(everything) == len(store.evaluations(study.id))
    tq = queries.TableQuery(statuses=("done",), objective="val_acc@mlp", min_value=0.3, sort="val_acc@mlp", page_size=5)
    first, matching = queries.candidate_table(store, study.id, names, tq)
    expected = everything[(everything["status"] == "done") & (everything["val_acc@mlp"] >= 0.3)]
    assert matching == len(expected)
    assert list(first["candidate"]) == list(expected.sort_values("val_acc@mlp", ascending=False)["candidate"][:5])
    second, _ = queries.candidate_table(store, study.id, names, queries.TableQuery(**{**tq.__dict__, "page": 1}))
    assert not set(first["candidate"]) & set(second["candidate"])


def test_pareto_front_matches_the_search_results_module(stores: dict[str, Store]) -> None:
    store = stores["normal"]
    study = store.get_study("normal")
    log = queries.EvaluationLog(study.id, [o["name"] for o in study.objectives]).refresh(store)
    objectives = objectives_of(study)
    ours = analysis.pareto_front(analysis.scored(log, objectives), objectives)
    theirs = pareto_front(scored_candidates(store, study))
    assert list(ours["candidate"]) == [s.candidate.id for s in theirs]


def test_evaluation_log_reads_only_new_and_finished_rows(stores: dict[str, Store], tmp_path: Path) -> None:
    store = build_running_store(f"sqlite:///{tmp_path / 'log.db'}")
    study = store.get_study("live")
    log = queries.EvaluationLog(study.id, ["val_acc@mlp"])
    assert len(log.refresh(store)) == 8 and log.cursor == 8  # stops before the first row still running
    running = [e for _, e in store.evaluations(study.id) if e.status == "running"]
    store.update_evaluation(running[0].id, status="done", objectives={"val_acc@mlp": 0.99}, finished_at=utcnow())
    frame = log.refresh(store)
    assert len(frame) == 9 and frame["val_acc@mlp"].iloc[-1] == 0.99 and log.cursor == running[1].id - 1
    reader = Store(store.url, read_only=True)
    assert len(log.refresh(reader)) == 9  # nothing new: the in-flight row is read again, nothing else


@pytest.mark.parametrize("scenario", ["normal", "failed", "running"])
def test_candidate_page(stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch, scenario: str) -> None:
    store = stores[scenario]
    study = store.list_studies()[0]
    rows = store.evaluations(study.id)
    cand = next(c for c, e in reversed(rows) if c.parents) if scenario == "normal" else rows[0][0]
    at = app_on(store, monkeypatch, "candidate", id=str(cand.id))
    text = texts(at)
    assert f"Candidate {cand.id}" in text and cand.formula in text
    assert at.get("latex") and "activation_plot" in chart_keys(at)
    plot = at.get("plotly_chart")[0].proto.spec
    assert "ReLU" in plot
    download = at.get("download_button")[0]
    assert f"{study.name}_c{cand.id}.py".replace("-", "_") in download.proto.label
    if scenario == "normal":
        assert f"parent c{cand.parents[0]}" in plot
        lineage = next(d.value for d in at.dataframe if "mutation" in d.value.columns)
        assert lineage["candidate"].iloc[0] == cand.parents[0]
        assert "Produced by" in text
    if scenario == "failed":
        assert "RuntimeError: boom 0" in text


def test_candidate_download_matches_layerforge_export(
    stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = stores["normal"]
    study = store.get_study("normal")
    best = max(scored_candidates(store, study), key=lambda s: s.values[0])
    at = app_on(store, monkeypatch, "candidate", id=str(best.candidate.id))
    manifest = export_candidates(store, "normal", [best], tmp_path)
    exported = (tmp_path / f"normal_c{best.candidate.id}.py").read_text()
    shown = next(c.value for c in at.code if c.language == "python")
    assert shown == exported.rstrip("\n") and manifest.exists()  # st.code drops the final newline
    assert "rerank_chart" in chart_keys(at)
    rerank = next(d.value for d in at.dataframe if "std" in d.value.columns)
    assert set(rerank["label"]) == {f"c{best.candidate.id}", "relu"} and set(rerank["n"]) == {3}
    mine = rerank[(rerank["label"] == f"c{best.candidate.id}") & (rerank["objective"] == "val_acc@mlp")]
    assert mine["mean"].iloc[0] == pytest.approx(0.51) and mine["std"].iloc[0] == pytest.approx(0.01)
    namespace: dict[str, Any] = {}
    exec(compile(shown, "exported.py", "exec"), namespace)  # the download is a working module
    module = namespace[f"ActivationC{best.candidate.id}"]()
    assert module(torch.linspace(-5, 5, 11)).shape == (11,)


def test_candidate_page_draws_the_stored_training_curves(
    stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    copy = tmp_path / "normal.db"  # a copy, so the shared store keeps its rows
    with sqlite3.connect(stores["normal"].url.removeprefix("sqlite:///")) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    store = Store(f"sqlite:///{copy}")
    study = store.get_study("normal")
    top = max(scored_candidates(store, study), key=lambda s: s.values[0]).candidate
    assert "training_curves" not in chart_keys(app_on(store, monkeypatch, "candidate", id=str(top.id)))  # none stored
    store.add_evaluation(
        study.id, top.id, purpose="search", status="done", stage="full", seed=0,
        metrics={"train_loss_curve@mlp": [2.0, 1.0, 0.5, 0.4], "steps@mlp": 40.0, "train_loss@mlp": 0.4},
    )  # fmt: skip
    at = app_on(store, monkeypatch, "candidate", id=str(top.id))
    spec = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if c.key == "training_curves"))
    (trace,) = spec["data"]
    assert trace["name"] == "mlp" and trace["x"] == [5.0, 15.0, 25.0, 35.0] and trace["y"] == [2.0, 1.0, 0.5, 0.4]
    store.close()


def test_candidate_page_compares_reranking_with_the_best_baseline(
    stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    copy = tmp_path / "normal.db"  # a copy, so the shared store keeps its rows (the backup API includes the WAL)
    with sqlite3.connect(stores["normal"].url.removeprefix("sqlite:///")) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    store = Store(f"sqlite:///{copy}")
    study = store.get_study("normal")
    top = max(scored_candidates(store, study), key=lambda s: s.values[0]).candidate
    runs = {top.id: (0.80, 0.82, 0.81), queries.seed_candidate(store, study.id, "relu").id: (0.70, 0.71, 0.72)}
    runs[queries.seed_candidate(store, study.id, "gelu").id] = (0.85, 0.86, 0.87)
    for cand_id, values in runs.items():
        for seed, value in enumerate(values):
            store.add_evaluation(
                study.id, cand_id, purpose="rerank", status="done", stage="full", seed=2000 + seed, steps=99,
                objectives={"test_acc@mlp": value},
            )  # fmt: skip
    at = app_on(store, monkeypatch, "candidate", id=str(top.id))
    lines = [m.value for m in at.markdown if "best baseline" in m.value]
    assert len(lines) == 1 and f"c{top.id} 0.8100 ± 0.0100 is worse than the best baseline, gelu 0.8600" in lines[0]
    store.close()


@pytest.mark.parametrize("kind", ["normact", "kan"])
def test_candidate_page_draws_normact_graphs_and_kan_families(
    stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    store = stores["layers"]
    study = store.get_study(f"{kind}-study")
    cand, _ = store.evaluations(study.id)[0]
    at = app_on(store, monkeypatch, "candidate", id=str(cand.id))
    assert at.get("latex") and at.get("download_button")
    if kind == "normact":
        dot = at.get("graphviz_chart")[0].proto.spec
        assert "digraph" in dot and "gamma * . + beta" in dot and "->" in dot
    else:
        families = next(d.value for d in at.dataframe if "family" in d.value.columns)
        assert list(families["family"]) == [spec["family"] for spec in cand.genome["layers"]]


def test_candidate_page_without_an_id_or_with_an_unknown_one(
    stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "Enter a candidate id" in texts(app_on(stores["empty"], monkeypatch, "candidate"))
    assert "no candidate with id 999" in texts(app_on(stores["normal"], monkeypatch, "candidate", id="999"))


def test_compare_page(stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    store = stores["normal"]
    study = store.get_study("normal")
    ids = [c.id for c, e in store.evaluations(study.id) if e.status == "done"][:3]
    at = app_on(store, monkeypatch, "compare", ids=",".join(map(str, ids)))
    assert chart_keys(at) == {"compare_plot"}
    spec = at.get("plotly_chart")[0].proto.spec
    assert all(f"c{i}" in spec for i in ids) and "ReLU" in spec
    table = at.dataframe[-1].value
    assert list(table.columns) == [f"c{i}" for i in ids] and "objective val_acc@mlp" in table.index
    assert len(at.get("latex")) == 3
    assert "Enter 2 to 4 candidate ids" in texts(app_on(store, monkeypatch, "compare", ids=str(ids[0])))
    assert "No candidate with id 99999" in texts(app_on(store, monkeypatch, "compare", ids=f"{ids[0]},99999"))


@pytest.mark.parametrize("scenario", ["empty", "failed", "running"])
def test_compare_page_on_other_stores(stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch, scenario: str) -> None:
    ids = "" if scenario == "empty" else "1,2"
    at = app_on(stores[scenario], monkeypatch, "compare", ids=ids)
    if scenario == "empty":
        assert "Enter 2 to 4 candidate ids" in texts(at)
    else:
        assert at.dataframe[-1].value.loc["status"].tolist() == (
            ["failed"] * 2 if scenario == "failed" else ["done"] * 2
        )


# -- the Explore page and the details of issue 14 --------------------------------------------------------------

EXPLORE = {
    "normal": ("normal", "normal"),
    "empty": ("empty", ""),
    "failed": ("failed", "all-failed"),
    "running": ("running", "live"),
    "normact": ("layers", "normact-study"),
    "kan": ("layers", "kan-study"),
}


@pytest.mark.parametrize("scenario", list(EXPLORE))
def test_explore_page(stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch, scenario: str) -> None:
    store_name, study_name = EXPLORE[scenario]
    store = stores[store_name]
    at = app_on(store, monkeypatch, "explore", study=study_name)
    text = texts(at)
    if scenario == "empty":
        assert "No studies in this store yet" in text
        return
    study = store.get_study(study_name)
    final = [e for _, e in store.evaluations(study.id) if e.status in ("done", "rejected", "failed", "duplicate")]
    charts = {c.key: c.proto.spec for c in at.get("plotly_chart")}
    history = charts["history"]
    assert "best so far" in history or scenario == "failed"
    counted = sum(int(n.replace(",", "")) for n in re.findall(r"\((\d[\d,]*)\)", history))
    assert counted == len(final)  # every finished evaluation is in the history, by status, with or without a value
    if scenario == "failed":
        assert set(charts) == {"history"} and "failed, no value (8)" in history
        assert "every one so far failed or was rejected" in text
        return
    assert set(charts) == {"history", "parallel", "slices", "importance"}
    assert "val_acc@mlp" in charts["parallel"] and "latency_ms@mlp" in charts["slices"]
    shares = next(d.value for d in at.dataframe if "top share" in d.value.columns)
    assert (shares["top share"] > shares["all share"]).all() and shares["top count"].min() >= 1
    kinds = {"normal": {"op", "subtree"}, "running": {"op", "subtree"}, "normact": {"op", "node"}}
    expected = kinds.get(scenario, {"family", "norm", "hidden layers"})
    assert set(shares["kind"]) <= expected | {"layer 0 family", "layer 1 family", "output layer family", "base branch"}
    assert set(shares["kind"]) & expected


def test_importance_names_the_op_the_best_candidates_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(f"sqlite:///{tmp_path / 'tanh.db'}")
    study = new_study(store, "tanh-wins")
    space = get_space("activation")
    good = ["tanh(x)", "x*tanh(x)", "tanh(sin(x))", "tanh(x) + x", "tanh(relu(x))"] * 2
    bad = ["relu(x)", "sin(x)", "x*sigmoid(x)", "elu(x) + x", "softplus(x)"] * 4
    for i, text in enumerate(good + bad):
        score = 0.9 + 0.001 * i if text in good else 0.1 + 0.001 * i
        values = {"val_acc@mlp": score, "latency_ms@mlp": 1.0}
        add_candidate(store, study, space.parse(text), "done", stage="full", objectives=values)
    at = app_on(store, monkeypatch, "explore", study="tanh-wins")  # by default the best 10 by the first objective
    shares = next(d.value for d in at.dataframe if "top share" in d.value.columns)
    first = shares.iloc[0]
    assert (first["kind"], first["part"], first["top share"], first["top count"]) == ("op", "tanh", 1.0, 10)
    assert first["all share"] == pytest.approx(10 / 30) and first["lift"] == pytest.approx(3.0)
    assert "sigmoid" not in set(shares["part"])  # only parts the best hold more often than the rest


def test_parts_of_the_best_work_for_a_plug_in_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A space that names no parts of its own gets the default (its scalar fields), with no dashboard change."""
    import tests.toy_space  # noqa: F401 - registers the toy_leaky space

    store = Store(f"sqlite:///{tmp_path / 'toy.db'}")
    study = new_study(store, "toy", space="toy_leaky")
    for i, slope in enumerate([0.1] * 10 + [0.0, 0.2, 0.3, 0.5] * 5):
        values = {"val_acc@mlp": (0.9 if slope == 0.1 else 0.1) + 0.001 * i, "latency_ms@mlp": 1.0}
        genome = {"space": "toy_leaky", "v": 1, "slope": slope}
        add_candidate(store, study, genome, "done", stage="full", objectives=values)
    at = app_on(store, monkeypatch, "explore", study="toy")
    shares = next(d.value for d in at.dataframe if "top share" in d.value.columns)
    assert shares[["kind", "part", "top share"]].values.tolist() == [["slope", "0.1", 1.0]]


def test_every_space_takes_its_genomes_apart() -> None:
    """The parts hook: recognisable pieces per space, and the base class's default (scalar fields by path)."""
    activation = get_space("activation")
    assert activation.parts(activation.parse("x*sigmoid({1.5}*x)")) == {
        ("op", "mul"),
        ("op", "sigmoid"),
        ("subtree", "sigmoid({·}*x)"),
        ("subtree", "sigmoid({·}*x)*x"),
    }
    normact = get_space("normact")
    assert {("op", "batch_std"), ("node", "batch_std(x)")} <= normact.parts(normact.seeds()["bn_relu"])
    kan = get_space("kan")
    genome = kan.seeds()["kan_bspline"]
    assert {("family", "bspline"), ("output layer family", "bspline"), ("hidden layers", "1")} <= kan.parts(genome)
    default = Space.parts(kan, genome)
    assert ("layers.0.family", "bspline") in default and not any(k in ("space", "v") for k, _ in default)
    with pytest.raises(GenomeError):
        activation.parts({"space": "activation", "v": 1, "expr": {"op": "eval"}})


def test_study_page_details(stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    """Objective columns first, best first; funnel in cascade order with calm colours; real values for #."""
    at = app_on(stores["normal"], monkeypatch, "study", study="normal")
    table = at.dataframe[0].value
    assert list(table.columns[:3]) == ["candidate", "val_acc@mlp", "latency_ms@mlp"]
    scores = table["val_acc@mlp"].dropna()
    assert len(scores) > 1 and list(scores) == sorted(scores, reverse=True)
    funnel = next(c.proto.spec for c in at.get("plotly_chart") if c.key == "funnel")
    spec = json.loads(funnel)
    order = spec["layout"]["yaxis"]["categoryarray"]
    cascade = [str(s) for s in (*CASCADE, *OUTSIDE_CASCADE)]
    assert order == sorted(order, key=cascade.index)
    assert {t["name"]: t["marker"]["color"] for t in spec["data"]}["done"] == STATUS_COLORS["done"] != "#EF553B"
    failed = app_on(stores["failed"], monkeypatch, "study", study="all-failed")
    reasons = failed.dataframe[2].value
    row = reasons[reasons["reason"] == "RuntimeError: boom #"].iloc[0]
    assert row["values"] == "0 - 7" and row["example"].startswith("RuntimeError: boom ")
    running = app_on(stores["running"], monkeypatch, "study", study="live")
    assert running.dataframe[2].value["values"].tolist() == ["97"]
    assert all(m.label != "stage" for m in running.metric)


def test_pareto_chart_zooms_past_an_outlier_and_joins_the_front() -> None:
    rng = np.random.default_rng(0)
    cloud = pd.DataFrame({"candidate": range(1, 201), "a": rng.random(200), "b": rng.random(200)})
    cloud.loc[0, ["a", "b"]] = [1e6, 0.5]  # one far outlier
    front = cloud.nlargest(5, "b")
    seeds = cloud.iloc[[1, 2]]
    labels = pd.DataFrame({"formula": "f", "seed_name": None}, index=cloud["candidate"])
    labels.loc[seeds["candidate"], "seed_name"] = ["relu", "gelu"]
    fig = pareto_scatter(cloud, front, seeds, labels, "a", "b", 200)
    assert fig.layout.xaxis.range[1] < 2 and "1 far points outside the view" in fig.layout.title.text
    line = next(t for t in fig.data if t.name == "Pareto front (5)")
    assert line.mode == "lines+markers" and list(line.x) == sorted(front["a"])
    assert {"relu", "gelu"} <= {t.name for t in fig.data}  # one legend entry per baseline, no text on the points


def test_candidate_and_compare_pages_write_numbers_compactly(
    stores: dict[str, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores["layers"]
    study = store.get_study("kan-study")
    seed, _ = store.evaluations(study.id)[0]
    at = app_on(store, monkeypatch, "candidate", id=str(seed.id))
    assert "stage **full**" in texts(at)  # a fact line, not a tile that cuts words off
    per_proxy = next(d.value for d in at.dataframe if "mlp" in d.value.columns)
    assert list(per_proxy.columns) == ["mlp"]  # no mostly empty "all" column
    overall = next(d.value for d in at.dataframe if "value" in d.value.columns)
    assert overall.loc["total_train_seconds", "value"] == 3.25
    normal = stores["normal"]
    relu = queries.seed_candidate(normal, normal.get_study("normal").id, "relu")
    gelu = queries.seed_candidate(normal, normal.get_study("normal").id, "gelu")
    assert relu is not None and gelu is not None
    compare = app_on(normal, monkeypatch, "compare", ids=f"{relu.id},{gelu.id}")
    table = compare.dataframe[-1].value
    assert all(len(value) <= 9 for value in table.to_numpy().ravel())  # "0.5123", never 17 digits
    assert f"c{relu.id} and ReLU draw the same curve" in texts(compare)
    spec = json.loads(compare.get("plotly_chart")[0].proto.spec)
    dashes = {t["name"]: t["line"]["dash"] for t in spec["data"] if t.get("showlegend", True) is not False}
    assert dashes[f"c{relu.id}"] != dashes[f"c{gelu.id}"]


def test_tags_and_note_show_on_the_study_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search.study_admin import note_study, tag_study

    store = build_failed_store(f"sqlite:///{tmp_path / 'labelled.db'}")
    tag_study(store, "all-failed", "add", ["baseline", "gpu:a100"])
    note_study(store, "all-failed", "every worker ran out of memory")
    studies = app_on(store, monkeypatch)
    row = studies.dataframe[0].value.iloc[0]
    assert list(row["tags"]) == ["baseline", "gpu:a100"] and row["note"] == "every worker ran out of memory"
    for page in ("study", "explore"):
        text = texts(app_on(store, monkeypatch, page, study="all-failed"))
        assert ":blue-badge[baseline] :blue-badge[gpu:a100]" in text and "every worker ran out of memory" in text


def test_dashboard_command_refuses_a_missing_store(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from search.cli import app

    result = CliRunner().invoke(app, ["dashboard", "--db", f"sqlite:///{tmp_path / 'missing.db'}"])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not (tmp_path / "missing.db").exists()
