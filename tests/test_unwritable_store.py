"""A store that stops taking writes mid-study (a full disk, a read-only or replaced SQLite file) stops the study
with one line and no crash, and `resume` then finishes it to exactly its budget."""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from sqlalchemy import event

from evaluators.vocabulary import FINISHED, StudyStatus
from search.store import Store, StoreError
from tests.conftest import study_config

LAYERFORGE = str(Path(sys.executable).with_name("layerforge"))
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
BUDGET = 40


def _config(tmp_path: Path, name: str, seconds: float) -> Path:
    config = study_config(name, tmp_path, budget={"evaluations": BUDGET})
    config["evaluator"]["synthetic"] = {"seconds": seconds}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _finished(db: Path, name: str) -> int:
    """Finished evaluations, read with plain sqlite3 (no pooled connection stays open in this process)."""
    try:
        with closing(sqlite3.connect(db)) as conn:
            return conn.execute(
                "SELECT count(*) FROM evaluations e JOIN studies s ON s.id = e.study_id "
                "WHERE s.name = ? AND e.status IN ('done', 'rejected', 'failed')",
                (name,),
            ).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _stopped_in_one_line(driver: subprocess.Popen, stderr: str, expected: str) -> None:
    assert driver.returncode == 2, f"exit code {driver.returncode} (negative: killed by a signal)\n{stderr}"
    assert "Traceback" not in stderr and "Fatal Python error" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0] and "`layerforge resume" in errors[0], stderr


def _resume_finishes(tmp_path: Path, name: str, ray_address: str) -> None:
    db = tmp_path / "store.db"
    resumed = subprocess.run(
        [LAYERFORGE, "resume", name, "--db", f"sqlite:///{db}", "--address", ray_address, "--no-progress"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr
    store = Store(f"sqlite:///{db}")
    study = store.get_study(name)
    rows = store.evaluations(study.id)
    finished = [(c, e) for c, e in rows if e.status in FINISHED]
    assert study.status == StudyStatus.FINISHED and len(finished) == BUDGET
    assert len({c.key for c, _ in finished}) == BUDGET, "a candidate was trained twice"
    store.close()


def _file_size_limit(limit: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _store_with_a_study(tmp_path: Path) -> tuple[Store, int]:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    study = store.create_study(
        "s", space="activation", algorithm="random", seed=0, config={}, objectives=[], budget_evaluations=1,
        budget_minutes=None,
    )  # fmt: skip
    return store, study.id


def test_a_writer_refuses_a_store_file_replaced_under_it(tmp_path: Path) -> None:
    store, study_id = _store_with_a_study(tmp_path)
    db = tmp_path / "store.db"
    with closing(sqlite3.connect(db)) as live, closing(sqlite3.connect(tmp_path / "copy.db")) as copy:
        live.backup(copy)
    os.replace(tmp_path / "copy.db", db)
    with pytest.raises(StoreError, match="was replaced or removed while this driver had it open"):
        store.log_event(study_id, "after")
    store.close()


def test_a_store_file_that_cannot_be_written_fails_at_once_without_retrying(tmp_path: Path) -> None:
    store, study_id = _store_with_a_study(tmp_path)
    # SQLite refuses every write from now on, as it does for a file that turned read-only.
    event.listen(store.engine, "connect", lambda conn, _: conn.execute("PRAGMA query_only=ON"))
    store.engine.dispose()
    started = time.time()
    with pytest.raises(StoreError, match="store sqlite:///.* failed: attempt to write a readonly database"):
        store.log_event(study_id, "after")
    assert time.time() - started < 2, "a lasting SQLite error was retried as if the connection had dropped"
    store.close()


@pytest.mark.slow
def test_a_full_disk_stops_the_study_in_one_line_and_resume_finishes_it(ray_address: str, tmp_path: Path) -> None:
    # The driver may write no file past 400 kB: its SQLite WAL fills that after a few evaluations.
    driver = subprocess.Popen(
        [LAYERFORGE, "launch", str(_config(tmp_path, "full", 0.05)), "--address", ray_address, "--no-progress"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_file_size_limit(400_000),
    )
    _, stderr = driver.communicate(timeout=240)
    _stopped_in_one_line(driver, stderr, "store sqlite:///")
    assert 0 < _finished(tmp_path / "store.db", "full") < BUDGET
    _resume_finishes(tmp_path, "full", ray_address)


@pytest.mark.slow
def test_a_replaced_store_file_stops_the_study_in_one_line_without_a_crash(ray_address: str, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    driver = subprocess.Popen(
        [LAYERFORGE, "launch", str(_config(tmp_path, "moved", 0.3)), "--address", ray_address, "--no-progress"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while _finished(db, "moved") < 5 and time.time() < deadline:
        assert driver.poll() is None, driver.stderr.read()
        time.sleep(0.2)
    # Someone puts a copy in its place (a consistent one, so that the study can go on from it).
    with closing(sqlite3.connect(db)) as live, closing(sqlite3.connect(tmp_path / "copy.db")) as copy:
        live.backup(copy)
    os.replace(tmp_path / "copy.db", db)
    _, stderr = driver.communicate(timeout=120)
    _stopped_in_one_line(driver, stderr, "was replaced or removed")
    _resume_finishes(tmp_path, "moved", ray_address)
