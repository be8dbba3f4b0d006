"""Choosing what to export (`--by`, `--pareto --top K`), comparing with the best baseline, and rerank runs kept
apart from the search's statistics."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from dashboard import queries
from evaluators.vocabulary import Stage, Status
from search.cli import app
from search.export import export_study
from search.rerank import RerankRow, compare
from search.results import (
    PairedDifference,
    Scored,
    crowding_distances,
    paired_difference,
    pareto_front,
    pareto_top,
    rejection_funnel,
    scored_candidates,
    top_k,
    versus_best_baseline,
)
from search.store import Store, utcnow
from search.study_admin import finished_evaluations
from spaces import get_space

OBJECTIVES = [{"name": "val_acc@mlp", "direction": "max"}, {"name": "val_acc@cnn1d", "direction": "max"}]


def _scored(*values: tuple[float, ...]) -> list[Scored]:
    return [Scored(SimpleNamespace(id=i + 1), None, v) for i, v in enumerate(values)]


def _ids(chosen: list[Scored]) -> list[int]:
    return [s.candidate.id for s in chosen]


# -- ranking -----------------------------------------------------------------------------------------------------


def test_top_k_ranks_by_the_chosen_objective_then_the_others() -> None:
    scored = _scored((0.9, 0.1), (0.5, 0.8), (0.7, 0.8), (0.8, 0.3))
    assert _ids(top_k(scored, 2)) == [1, 4]
    assert _ids(top_k(scored, 3, by=1)) == [3, 2, 4], "ties on the chosen objective go to the first one"


def test_crowding_distance_favours_the_extremes_and_the_sparse() -> None:
    points = np.array([[0.0, 1.0], [0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    distance = crowding_distances(points)
    assert np.isinf(distance[[0, 3]]).all()
    assert distance[2] > distance[1] > 0


def test_pareto_top_keeps_up_to_k_of_the_front() -> None:
    front = [(0.0, 1.0), (0.1, 0.9), (0.5, 0.5), (1.0, 0.0)]
    scored = _scored(*front, (0.05, 0.05))  # the last is dominated
    assert _ids(pareto_front(scored)) == [4, 3, 2, 1]
    assert sorted(_ids(pareto_top(scored, 3))) == [1, 3, 4], "the extremes, then the least crowded"
    assert _ids(pareto_top(scored, 2, by=1)) == [1, 2]
    assert _ids(pareto_top(scored, 10)) == [4, 3, 2, 1]


# -- the best baseline -------------------------------------------------------------------------------------------


def runs(*values: float) -> dict[int, float]:
    """One run per seed 0, 1, ..."""
    return dict(enumerate(values))


def test_a_candidate_is_compared_with_the_best_baseline_on_each_metric() -> None:
    baselines = {"relu": runs(0.80, 0.81, 0.79), "gelu": runs(0.85, 0.86, 0.84), "tanh": {}}
    better = versus_best_baseline(runs(0.90, 0.91, 0.92), baselines)
    assert better.baseline == "gelu" and better.verdict == "beats"
    sentence = better.sentence("c7", "test_acc@mlp")
    assert sentence.startswith("test_acc@mlp: c7 0.9100 ± 0.0100 beats the best baseline, gelu 0.8500")
    assert "warning" not in sentence
    assert "paired t-test p = " in sentence and "3 paired seeds" in sentence
    assert versus_best_baseline(runs(0.80, 0.79, 0.81), baselines).verdict == "is worse than"
    assert versus_best_baseline(runs(0.5, 0.5), {"a": runs(0.3, 0.3), "b": runs(0.6, 0.6)}, "min").baseline == "a"
    assert versus_best_baseline(runs(0.9), {"a": {}}) is None


def test_the_test_pairs_runs_by_seed() -> None:
    """Seed-to-seed variation shared by both sides cancels in a paired test; only shared seeds are paired."""
    candidate, baseline = {0: 0.70, 1: 0.80, 2: 0.90, 7: 0.1}, {0: 0.69, 1: 0.79, 2: 0.885, 5: 0.99}
    paired = paired_difference(candidate, baseline)
    assert paired.pairs == 3 and paired.delta == pytest.approx(0.0117, abs=1e-4) and paired.p_value < 0.05
    assert paired_difference({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5}).p_value is None  # a constant shift: no spread
    assert paired_difference({0: 0.5}, {1: 0.5}) == PairedDifference(None, None, 0)


def test_fewer_than_three_seeds_warn_and_one_seed_is_not_tested() -> None:
    two = versus_best_baseline(runs(0.90, 0.92), {"relu": runs(0.80, 0.81)})
    assert two.p_value is not None and "warning: fewer than 3 seeds" in two.sentence("c1", "test_acc@mlp")
    one = versus_best_baseline(runs(0.9), {"relu": runs(0.8, 0.81, 0.79)})
    assert one.p_value is None and one.verdict == "cannot be tested against"
    same = versus_best_baseline(runs(0.5, 0.5, 0.5), {"relu": runs(0.5, 0.5, 0.5)})
    assert same.verdict == "is not distinguishable from"


def test_rerank_compares_each_searched_candidate_per_objective() -> None:
    def row(ident: int, seed_name: str | None, mlp: list[float], cnn: list[float]) -> RerankRow:
        candidate = SimpleNamespace(id=ident, origin="seed" if seed_name else "mutate", seed_name=seed_name)
        return RerankRow(candidate, seed_name or f"c{ident}", {"test_acc@mlp": mlp, "test_acc@cnn1d": cnn}, [0, 1, 2])

    rows = [
        row(1, "relu", [0.80, 0.81, 0.82], [0.70, 0.72, 0.71]),
        row(2, "gelu", [0.84, 0.85, 0.86], [0.60, 0.61, 0.62]),
        row(9, None, [0.90, 0.92, 0.91], [0.50, 0.51, 0.52]),
        row(12, None, [0.70, 0.72, 0.71], [0.80, 0.81, 0.82]),
    ]
    lines = compare(rows, SimpleNamespace(objectives=OBJECTIVES))
    assert len(lines) == 4
    assert lines[0].startswith("test_acc@mlp: c9") and "beats the best baseline, gelu" in lines[0]
    assert lines[1].startswith("test_acc@mlp: c12") and "is worse than the best baseline, gelu" in lines[1]
    assert lines[2].startswith("test_acc@cnn1d: c9") and "the best baseline, relu" in lines[2]
    assert compare(rows[:2], SimpleNamespace(objectives=OBJECTIVES)) == [
        "no baseline or no searched candidate among the re-ranked ones to compare"
    ]


# -- a store: export choices, and rerank runs apart from the search -------------------------------------------


@pytest.fixture
def seeded_store(tmp_path: Path) -> Store:
    """Five baselines of the activation space as one study's finished candidates, with made-up objectives; the
    first also has a re-ranking run, on the same worker."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    space = get_space("activation")
    study = store.create_study(
        "seeded",
        space="activation",
        algorithm="random",
        seed=0,
        config={"name": "seeded", "space": {"kind": "activation", "options": {}}, "evaluator": {}},
        objectives=OBJECTIVES,
        budget_evaluations=10,
        budget_minutes=None,
    )
    values = {"relu": (0.9, 0.1), "gelu": (0.5, 0.8), "silu": (0.7, 0.8), "tanh": (0.8, 0.3), "elu": (0.2, 0.2)}
    for name, (mlp, cnn) in values.items():
        genome = space.seeds()[name]
        candidate = {
            "key": name,
            "canonical": space.canonical(genome),
            "genome": genome,
            "formula": space.describe(genome),
            "origin": "sample",
        }
        evaluation = {
            "status": Status.DONE,
            "stage": Stage.FULL,
            "objectives": {"val_acc@mlp": mlp, "val_acc@cnn1d": cnn},
            "worker": "worker-1",
            "seconds": 2.0,
            "stage_seconds": {Stage.FULL: 2.0},
            "started_at": utcnow(),
            "finished_at": utcnow(),
        }
        cand_id, _ = store.add_candidate_with_evaluation(study.id, candidate, evaluation)
        if name == "relu":
            rerank = {
                **evaluation,
                "objectives": {"test_acc@mlp": 0.5, "test_acc@cnn1d": 0.5},
                "seconds": 50.0,
                "stage_seconds": {Stage.FULL: 50.0},
            }
            store.add_evaluation(study.id, cand_id, purpose="rerank", seed=1000, **rerank)
    return store


def _manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def test_export_by_an_objective_and_up_to_k_of_the_front(seeded_store: Store, tmp_path: Path) -> None:
    manifest = _manifest(export_study(seeded_store, "seed", tmp_path / "a", top=2, by="val_acc@cnn1d"))
    assert [c["key"] for c in manifest["candidates"]] == ["silu", "gelu"], "tied on cnn1d: mlp decides"
    assert manifest["selection"] == "the top 2 by val_acc@cnn1d"

    manifest = _manifest(export_study(seeded_store, "seeded", tmp_path / "b", top=2, pareto=True))
    assert [c["key"] for c in manifest["candidates"]] == ["relu", "silu"], "the front's two extremes"
    assert manifest["selection"].startswith("up to 2 of the Pareto front")

    runner = CliRunner()
    db = ["--db", seeded_store.url]
    result = runner.invoke(app, ["export", "seeded", "--out", str(tmp_path / "c"), "--top", "1", "--by", "nope", *db])
    assert result.exit_code == 2 and "its objectives: val_acc@mlp, val_acc@cnn1d" in result.output
    result = runner.invoke(app, ["export", "seeded", "--out", str(tmp_path / "c"), "--by", "val_acc@mlp", *db])
    assert result.exit_code == 2 and "--by ranks the best K: give --top K" in result.output
    result = runner.invoke(app, ["export", "seeded", "--out", str(tmp_path / "c"), "--pareto", "--top", "1", *db])
    assert result.exit_code == 0 and len(_manifest(tmp_path / "c" / "manifest.json")["candidates"]) == 1


def test_rerank_runs_stay_out_of_the_search_statistics(seeded_store: Store) -> None:
    study = seeded_store.get_study("seeded")
    assert finished_evaluations(seeded_store, study) == 5
    assert len(scored_candidates(seeded_store, study)) == 5
    stages, _ = rejection_funnel(seeded_store, study)
    assert [(s.stage, s.reached, s.seconds) for s in stages] == [("full", 5, 10.0)]
    usage = queries.worker_usage(seeded_store, study.id)
    assert usage["evaluations"].tolist() == [5] and usage["busy_seconds"].tolist() == [10.0]
    assert queries.status_counts_by_study(seeded_store) == {study.id: {Status.DONE: 5}}
