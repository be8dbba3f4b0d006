"""The study driver on real Ray and real SQLite: budgets, dedupe, failures, hangs, worker loss, resume."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import ray
from rich.console import Console

from search.config import parse_config
from search.runner import StudyRunner
from search.store import Store
from search.summary import NO_NEW_LAYERS, print_summary, stopped_by
from search.workers import make_pool
from tests.conftest import start_study_in_thread, study_config


def _run(config: dict, **kwargs) -> tuple[StudyRunner, Store]:
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    runner = StudyRunner(cfg, store, progress=False, **kwargs)
    runner.run()
    return runner, store


def _search_rows(store: Store, name: str):
    study = store.get_study(name)
    return study, store.evaluations(study.id, purpose="search")


def test_study_finishes_exactly_its_budget_without_duplicate_work(ray_address: str, tmp_path: Path) -> None:
    _, store = _run(study_config("budget", tmp_path))
    study, rows = _search_rows(store, "budget")
    finished = [(c, e) for c, e in rows if e.status in ("done", "rejected", "failed")]
    assert study.status == "finished"
    assert len(finished) == 30
    keys = [c.key for c, _ in finished]
    assert len(keys) == len(set(keys)), "a candidate was evaluated twice"
    assert all(e.worker and e.finished_at >= e.started_at for _, e in finished)
    origins = {c.origin for c, _ in finished}
    assert {"sample", "mutate"} <= origins  # population of 8 filled, then evolution took over
    children = [c for c, _ in finished if c.origin == "mutate"]
    assert all(c.parents and c.mutation_op and c.generation >= 1 for c in children)
    for dup, ev in ((c, e) for c, e in rows if e.status == "duplicate"):
        assert dup.duplicate_of is not None and ev.seconds == 0.0


def test_seed_baselines_are_evaluated_first(ray_address: str, tmp_path: Path) -> None:
    config = study_config("seeds", tmp_path, budget={"evaluations": 6})
    config["space"]["seeds"] = ["relu", "gelu", "silu"]
    _, store = _run(config)
    _, rows = _search_rows(store, "seeds")
    seeds = [c.seed_name for c, _ in sorted(rows, key=lambda ce: ce[0].id)[:3]]
    assert seeds == ["relu", "gelu", "silu"]


def test_studies_can_share_a_pool_the_caller_owns(ray_address: str, tmp_path: Path) -> None:
    first = parse_config(study_config("shared-a", tmp_path, budget={"evaluations": 8}))
    pool = make_pool(first, StudyRunner(first, Store(first.store.url)).space, 2)
    pool.start()
    actors = [slot.actor for slot in pool.slots]
    try:
        store = Store(first.store.url)
        for name in ("shared-a", "shared-b"):
            config = parse_config(study_config(name, tmp_path, budget={"evaluations": 8}))
            assert StudyRunner(config, store, progress=False, pool=pool).run().status == "finished"
            _, rows = _search_rows(store, name)
            assert len([e for _, e in rows if e.status in ("done", "rejected", "failed")]) == 8
        assert [slot.actor for slot in pool.slots] == actors  # neither run shut the pool down or replaced actors
        assert ray.get(actors[0].info.remote())["name"] == "worker-1"
    finally:
        pool.shutdown()


def test_bad_candidates_are_recorded_and_the_study_goes_on(ray_address: str, tmp_path: Path) -> None:
    config = study_config("faults", tmp_path, budget={"evaluations": 12})
    config["space"]["seeds"] = ["sinh(x)", "cosh(x)", "atan(x)", "relu(x)"]
    config["evaluator"]["synthetic"] = {"seconds": 0.02, "fail_on": ["sinh"], "nan_on": ["cosh"], "hang_on": ["atan"]}
    config["evaluator"]["timeout_seconds"] = 3
    _, store = _run(config)
    study, rows = _search_rows(store, "faults")
    by_seed = {c.seed_name: e for c, e in rows if c.seed_name}
    assert by_seed["sinh(x)"].status == "failed" and "fail_on" in by_seed["sinh(x)"].reason
    assert by_seed["cosh(x)"].status == "rejected" and by_seed["cosh(x)"].stage == "full"
    assert by_seed["atan(x)"].status == "failed" and by_seed["atan(x)"].stage == "timeout"
    assert by_seed["relu(x)"].status == "done"
    assert study.status == "finished"
    assert sum(e.status in ("done", "rejected", "failed") for _, e in rows) == 12


def test_killed_worker_requeues_its_candidate(ray_address: str, tmp_path: Path) -> None:
    config = study_config("workerkill", tmp_path, budget={"evaluations": 10})
    config["evaluator"]["synthetic"] = {"seconds": 1.0}
    runner, store, thread = start_study_in_thread(config)
    time.sleep(1.5)  # the first evaluations are running now
    os.kill(runner.worker_infos[0]["pid"], signal.SIGKILL)
    thread.join(timeout=120)
    assert not thread.is_alive()
    study, rows = _search_rows(store, "workerkill")
    finished = [e for _, e in rows if e.status in ("done", "rejected", "failed")]
    assert len(finished) == 10 and all(e.status == "done" for e in finished)
    assert max(e.attempt for e in finished) == 2, "the killed worker's candidate was not re-run"
    assert any(ev.kind == "finished" and ev.data.get("replaced_workers") == 1 for ev in store.events(study.id))


def test_a_study_that_runs_out_of_new_layers_stops_early_and_says_why(ray_address: str, tmp_path: Path) -> None:
    space = {"kind": "activation", "options": {"schema": "unary_unary", "max_params": 0, "unary_ops": ["relu", "tanh"]}}
    config = study_config("small", tmp_path, space=space, algorithm={"name": "random"}, budget={"evaluations": 20})
    _, store = _run(config)
    study, rows = _search_rows(store, "small")
    finished = [c for c, e in rows if e.status in ("done", "rejected", "failed")]
    assert study.status == "finished"
    assert len(finished) == len({c.fingerprint for c in finished}) == 3  # relu(relu(x)) computes relu(x)
    (event,) = [e for e in store.events(study.id) if e.kind == "exhausted"]
    assert "500 proposals in a row" in event.message and "among the 3 layers" in event.message
    assert "random keeps proposing" in event.message
    # the summary says what stopped it: not its budget
    assert stopped_by(store, study, study.status, 3) == NO_NEW_LAYERS
    console = Console(record=True, width=200)
    print_summary(console, store, study)
    assert f"stopped by: {NO_NEW_LAYERS} {event.message}" in " ".join(console.export_text().split())
