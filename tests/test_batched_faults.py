"""Batched workers on real Ray and SQLite: budgets, worker loss mid-batch, hangs, NaN members, driver SIGKILL."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

from search.config import parse_config
from search.runner import StudyRunner
from search.store import Store
from tests.conftest import start_study_in_thread, study_config
from tests.test_cli import _launch_until, _resume

FINISHED = ("done", "rejected", "failed")


def _batched(name: str, tmp_path: Path, per_batch: int = 4, **overrides) -> dict:
    config = study_config(name, tmp_path, **overrides)
    config["evaluator"]["candidates_per_batch"] = per_batch
    return config


def _rows(store: Store, name: str):
    study = store.get_study(name)
    return study, store.evaluations(study.id, purpose="search")


def _batches(rows) -> Counter:
    """How many evaluations each worker call held: a batch's members share a worker and a start time."""
    return Counter((e.worker, e.started_at) for _, e in rows if e.status in FINISHED and e.worker)


def test_batched_study_spends_exactly_its_budget_in_batches(ray_address: str, tmp_path: Path) -> None:
    cfg = parse_config(_batched("batched", tmp_path, budget={"evaluations": 30}))
    store = Store(cfg.store.url)
    runner = StudyRunner(cfg, store, progress=False)
    runner.run()
    study, rows = _rows(store, "batched")
    finished = [(c, e) for c, e in rows if e.status in FINISHED]
    assert study.status == "finished" and len(finished) == 30
    assert len({c.key for c, _ in finished}) == 30, "a candidate was evaluated twice"
    assert all(info["candidates_per_batch"] == 4 for info in runner.worker_infos)
    sizes = _batches(rows)
    assert max(sizes.values()) == 4 and sum(sizes.values()) == 30


def test_a_worker_killed_mid_batch_reruns_the_whole_batch_once(ray_address: str, tmp_path: Path) -> None:
    config = _batched("batchkill", tmp_path, per_batch=3, budget={"evaluations": 12})
    config["evaluator"]["synthetic"] = {"seconds": 1.0}  # a batch of 3 takes 3 s
    runner, store, thread = start_study_in_thread(config)
    time.sleep(1.5)  # the first batches are running now
    os.kill(runner.worker_infos[0]["pid"], signal.SIGKILL)
    thread.join(timeout=180)
    assert not thread.is_alive()
    study, rows = _rows(store, "batchkill")
    finished = [e for _, e in rows if e.status in FINISHED]
    assert len(finished) == 12 and all(e.status == "done" for e in finished)
    assert Counter(e.attempt for e in finished)[2] == 3, "every job of the killed batch runs again, once"
    assert any(ev.kind == "finished" and ev.data.get("replaced_workers") == 1 for ev in store.events(study.id))


def test_a_hang_in_a_batch_fails_only_the_job_that_hangs(ray_address: str, tmp_path: Path) -> None:
    config = _batched("batchhang", tmp_path, per_batch=3, budget={"evaluations": 9})
    config["space"]["seeds"] = ["relu(x)", "atan(x)", "tanh(x)", "cosh(x)"]
    config["evaluator"]["synthetic"] = {"seconds": 0.05, "hang_on": ["atan"], "nan_on": ["cosh"]}
    config["evaluator"]["timeout_seconds"] = 2  # a batch of 3 may run 6 s
    config["resources"]["workers"] = 1
    _, store = _run(config)
    study, rows = _rows(store, "batchhang")
    by_seed = {c.seed_name: e for c, e in rows if c.seed_name}
    assert (by_seed["atan(x)"].status, by_seed["atan(x)"].stage) == ("failed", "timeout")
    assert by_seed["relu(x)"].status == "done" and by_seed["tanh(x)"].status == "done"
    assert (by_seed["cosh(x)"].status, by_seed["cosh(x)"].stage) == ("rejected", "full")  # a NaN member
    assert all(e.attempt == 1 for _, e in rows if e.status in FINISHED)  # cut for another's hang: no attempt lost
    assert sum(e.status in FINISHED for _, e in rows) == 9 and study.status == "finished"


def _run(config: dict) -> tuple[StudyRunner, Store]:
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    runner = StudyRunner(cfg, store, progress=False)
    runner.run()
    return runner, store


def test_a_sigkilled_batched_driver_resumes_to_exactly_its_budget(ray_address: str, tmp_path: Path) -> None:
    config = _batched("batchcrash", tmp_path, per_batch=4, budget={"evaluations": 24})
    config["evaluator"]["synthetic"] = {"seconds": 0.3}
    db = tmp_path / "store.db"
    driver = _launch_until(config, tmp_path, ray_address, finished=8)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    store = Store(f"sqlite:///{db}")
    study = store.get_study("batchcrash")
    before = {
        c.id: (e.status, e.objectives, e.finished_at) for c, e in store.evaluations(study.id) if e.status in FINISHED
    }
    assert 8 <= len(before) < 24

    resumed = _resume("batchcrash", tmp_path, ray_address)
    assert resumed.returncode == 0, resumed.stderr
    rows = store.evaluations(study.id)
    final = [(c, e) for c, e in rows if e.status in FINISHED]
    assert len(final) == 24
    assert len({c.key for c, _ in final}) == 24, "a candidate was evaluated twice"
    after = {c.id: (e.status, e.objectives, e.finished_at) for c, e in final}
    assert all(after[cid] == value for cid, value in before.items()), "a finished evaluation was trained again"
    resumed_rows = [(c, e) for c, e in final if c.id not in before]
    assert max(_batches(resumed_rows).values()) > 1, "the resumed run did not batch"
    assert store.get_study("batchcrash").status == "finished"
