"""The `layerforge` command: bad input gives one clear line and a non-zero exit; a SIGKILLed driver resumes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from search.cli import app
from search.store import Store
from tests.conftest import study_config

LAYERFORGE = str(Path(sys.executable).with_name("layerforge"))


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(colour="blue"), "colour: unknown key"),
        (lambda c: c["budget"].update(evaluations="many"), "budget.evaluations"),
        (lambda c: c["space"]["options"].update(unary_ops=["relu", "frobnicate"]), "frobnicate"),
        (lambda c: c["space"].update(kind="hyperbolic"), "unknown space 'hyperbolic'"),
        (lambda c: c["algorithm"].update(name="annealing"), "algorithm.name"),
        (lambda c: c["algorithm"]["options"].update(temperature=3), "temperature"),
        (lambda c: c["store"].update(url="postgresql://nobody@127.0.0.1:9/none"), "store"),
        (lambda c: c["store"].update(url="not a url"), "not a database URL"),
        (lambda c: c["space"].update(seeds=["relu", "wibble(x)"]), "wibble"),
        (
            lambda c: c.update(
                evaluator={
                    "proxies": [{"name": "mlp", "arch": "mlp", "dataset": "digits"}],
                    "objectives": [{"name": "val_acurracy@mlp"}],
                }
            ),
            "'val_acurracy@mlp' names no metric",
        ),
        (
            lambda c: c.update(evaluator={"proxies": [{"name": "mlp", "arch": "transformer", "dataset": "digits"}]}),
            "unknown architecture 'transformer'",
        ),
    ],
)
def test_bad_config_exits_with_one_clear_message(tmp_path: Path, mutate, expected: str) -> None:
    config = study_config("bad", tmp_path)
    mutate(config)
    code, output = _invoke("launch", str(_write(tmp_path, config)), "--no-progress")
    assert code == 2
    assert expected in output
    assert "Traceback" not in output
    assert not Store(f"sqlite:///{tmp_path / 'store.db'}").list_studies(), "a bad config must not create a study"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["launch", "/no/such/config.yaml"], "does not exist"),
        (["launch", "CONFIG", "--workers", "0"], "--workers must be at least 1"),
        (["export", "nostudy", "--out", "x"], "exactly one of --top K or --pareto"),
        (["export", "nostudy", "--top", "2", "--out", "x", "--db", "sqlite:///DB"], "does not exist"),
        (["rerank", "nostudy", "--db", "sqlite:///DB"], "does not exist"),
        (["transfer", "nostudy", "--db", "sqlite:///DB"], "does not exist"),
        (["resume", "nostudy", "--db", "sqlite:///DB"], "no study named 'nostudy'"),
        (["launch"], "Missing argument"),
    ],
)
def test_bad_cli_arguments_exit_non_zero(tmp_path: Path, args: list[str], expected: str) -> None:
    config_path = _write(tmp_path, study_config("cli", tmp_path))
    args = [a.replace("CONFIG", str(config_path)).replace("DB", str(tmp_path / "missing.db")) for a in args]
    if args[0] == "resume":
        Store(args[-1])  # an empty store: the study is what is missing
    code, output = _invoke(*args)
    assert code == 2
    assert expected in output
    assert "Traceback" not in output
    if args[0] != "resume":
        assert not (tmp_path / "missing.db").exists(), "a mistyped --db must not create an empty store"


def _finished_count(db: Path, name: str) -> int:
    """Finished search evaluations, read with plain sqlite3 as an outside observer; 0 before the tables exist."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute(
                "SELECT count(*) FROM evaluations e JOIN studies s ON s.id = e.study_id "
                "WHERE s.name = ? AND e.purpose = 'search' AND e.status IN ('done', 'rejected', 'failed')",
                (name,),
            ).fetchone()[0]
        except sqlite3.OperationalError:  # the driver has created the file but not yet its tables
            return 0


ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _launch_until(config: dict, tmp_path: Path, ray_address: str, finished: int) -> subprocess.Popen:
    """Start `layerforge launch` as its own process and return once `finished` evaluations are stored."""
    db = tmp_path / "store.db"
    driver = subprocess.Popen(
        [LAYERFORGE, "launch", str(_write(tmp_path, config)), "--address", ray_address, "--no-progress"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and _finished_count(db, config["name"]) < finished:
        assert driver.poll() is None, driver.stderr.read()
        time.sleep(0.2)
    return driver


def _resume(name: str, tmp_path: Path, ray_address: str) -> subprocess.CompletedProcess:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    return subprocess.run(
        [LAYERFORGE, "resume", name, "--db", db, "--address", ray_address, "--no-progress"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_sigkilled_driver_resumes_to_exactly_its_budget(ray_address: str, tmp_path: Path) -> None:
    config = study_config("crash", tmp_path, budget={"evaluations": 24})
    config["evaluator"]["synthetic"] = {"seconds": 0.4}
    db = tmp_path / "store.db"
    driver = _launch_until(config, tmp_path, ray_address, finished=8)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    store = Store(f"sqlite:///{db}")
    study = store.get_study("crash")
    before = {
        c.id: (e.status, e.objectives)
        for c, e in store.evaluations(study.id)
        if e.status in ("done", "rejected", "failed")
    }
    assert 8 <= len(before) < 24

    resumed = _resume("crash", tmp_path, ray_address)
    assert resumed.returncode == 0, resumed.stderr
    rows = store.evaluations(study.id)
    final = [(c, e) for c, e in rows if e.status in ("done", "rejected", "failed")]
    assert len(final) == 24
    assert len({c.key for c, _ in final}) == 24, "a candidate was evaluated twice"
    assert len({e.candidate_id for _, e in rows}) == len(rows), "a candidate got two evaluation rows"
    after = {c.id: (e.status, e.objectives) for c, e in final}
    assert all(after[cid] == value for cid, value in before.items()), "a finished evaluation was lost or changed"
    assert store.get_study("crash").status == "finished"
    assert "Top 5" in resumed.stdout


def test_ctrl_c_stops_dispatching_and_resume_finishes(ray_address: str, tmp_path: Path) -> None:
    config = study_config("interrupted", tmp_path, budget={"evaluations": 16})
    config["evaluator"]["synthetic"] = {"seconds": 0.5}
    db = tmp_path / "store.db"
    driver = _launch_until(config, tmp_path, ray_address, finished=4)
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 0, err
    assert "stopping" in err
    store = Store(f"sqlite:///{db}")
    study = store.get_study("interrupted")
    assert study.status == "stopped"
    stopped_at = _finished_count(db, "interrupted")
    assert 4 <= stopped_at < 16
    statuses = {e.status for _, e in store.evaluations(study.id)}
    assert statuses <= {"done", "pending", "duplicate"}, statuses  # in-flight work was left pending, not lost

    resumed = _resume("interrupted", tmp_path, ray_address)
    assert resumed.returncode == 0, resumed.stderr
    assert _finished_count(db, "interrupted") == 16
    assert store.get_study("interrupted").status == "finished"
