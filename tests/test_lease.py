"""One driver per study: the lease on real SQLite and PostgreSQL stores, racing threads, and concurrent
`layerforge` processes on one study."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from evaluators.vocabulary import FINISHED, StudyStatus
from search import lease as lease_module
from search.cli import app
from search.config import parse_config
from search.lease import Holder, StudyBusyError, StudyLease, leases, shown_status, this_machine
from search.runner import StudyRunner
from search.store import LeaseRow, Store, utcnow
from tests.conftest import add_study, study_config

LAYERFORGE = str(Path(sys.executable).with_name("layerforge"))
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _elsewhere(host: str = "elsewhere") -> Holder:
    """A driver on another machine: only its lease's expiry can tell it is gone."""
    return Holder(host, 4242, f"{host} other-boot pid:[1]", "1")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- the lease ----------------------------------------------------------------------------------------


def test_a_second_driver_is_refused_in_one_line_naming_the_holder(store: Store) -> None:
    study = add_study(store)
    first = StudyLease(store, study)
    assert first.acquire() is None
    with pytest.raises(StudyBusyError) as refused:
        StudyLease(store, study).acquire()
    message = str(refused.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()} since " in message and "\n" not in message
    first.release()
    previous = StudyLease(store, study).acquire()  # released: the next driver takes it without waiting
    assert previous is not None and previous.token == first.token


def test_a_dead_driver_on_this_machine_is_taken_over_at_once(store: Store) -> None:
    study = add_study(store)
    dead = Holder(socket.gethostname(), _dead_pid(), this_machine(), "1")
    StudyLease(store, study, holder=dead).acquire()
    assert StudyLease(store, study).acquire().pid == dead.pid
    other = add_study(store, "reused-pid")
    reused = Holder(socket.gethostname(), os.getpid(), this_machine(), "1")  # this pid, but another process
    StudyLease(store, other, holder=reused).acquire()
    assert StudyLease(store, other).acquire().pid == os.getpid()


def test_a_driver_elsewhere_holds_the_study_until_its_lease_expires(store: Store) -> None:
    study = add_study(store)
    store.update_study(study.id, status=StudyStatus.RUNNING)
    remote = StudyLease(store, study, holder=_elsewhere())
    remote.lease_seconds = 1.0
    remote.acquire()
    running = store.get_study("s")
    assert shown_status(running, leases(store)[study.id]) == StudyStatus.RUNNING
    with pytest.raises(StudyBusyError, match="pid 4242 on host elsewhere"):
        StudyLease(store, study).acquire()
    time.sleep(1.1)
    assert shown_status(running, leases(store)[study.id]) == StudyStatus.INTERRUPTED
    assert StudyLease(store, study).acquire().host == "elsewhere"
    assert not remote.renew(), "the expired driver must learn that its study was taken over"
    assert shown_status(running, None) == StudyStatus.RUNNING  # written before leases existed: as stored


@pytest.mark.parametrize("dead_holder_first", [False, True])
def test_of_racing_drivers_exactly_one_wins(store_url: str, dead_holder_first: bool) -> None:
    setup = Store(store_url)
    study = add_study(setup)
    if dead_holder_first:
        gone = StudyLease(setup, study, holder=_elsewhere("gone"))
        gone.lease_seconds = 0.0
        gone.acquire()
    stores = [Store(store_url) for _ in range(6)]  # an engine each, as separate drivers have
    start = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def claim(store: Store, n: int) -> None:
        contender = StudyLease(store, study, holder=_elsewhere(f"host{n}"))
        start.wait()
        try:
            contender.acquire()
            outcomes.append("won")
        except StudyBusyError:
            outcomes.append("refused")

    threads = [threading.Thread(target=claim, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["refused"] * (len(stores) - 1) + ["won"]
    for s in [setup, *stores]:
        s.close()


def test_renewal_keeps_the_lease_and_a_takeover_is_noticed(store: Store) -> None:
    study = add_study(store)
    mine = StudyLease(store, study)
    mine.lease_seconds, mine.renew_seconds = 1.0, 0.1
    mine.acquire()
    heard: list[str] = []
    mine.keep_renewed(heard.append)
    time.sleep(1.5)  # longer than the lease: only renewals keep it
    with pytest.raises(StudyBusyError):
        StudyLease(store, study, holder=_elsewhere()).acquire()
    taken = {"token": "t" * 32, "host": "thief", "pid": 7, "machine": "thief", "expires_at": utcnow() + timedelta(1)}
    store.write(lambda s: s.execute(update(LeaseRow).where(LeaseRow.study_id == study.id).values(**taken)))
    deadline = time.time() + 10
    while not heard and time.time() < deadline:
        time.sleep(0.05)
    assert heard and "pid 7 on host thief" in heard[0] and mine.lost
    mine.release()
    assert leases(store)[study.id].host == "thief", "a driver that lost its lease must not end the new one's"


def test_a_driver_that_loses_its_lease_stops_and_writes_nothing_more(
    ray_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease_module, "RENEW_SECONDS", 0.2)
    config = study_config("stolen", tmp_path, budget={"evaluations": 200})
    config["evaluator"]["synthetic"] = {"seconds": 0.2}
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    runner = StudyRunner(cfg, store, progress=False)
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _capture(runner.run, errors))
    thread.start()
    deadline = time.time() + 120
    while not runner.worker_infos and time.time() < deadline:
        time.sleep(0.1)
    study = store.get_study("stolen")
    thief = {"token": "t" * 32, "host": "thief", "pid": 7, "machine": "thief", "expires_at": utcnow() + timedelta(1)}
    store.write(lambda s: s.execute(update(LeaseRow).where(LeaseRow.study_id == study.id).values(**thief)))
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], StudyBusyError) and "taken over by pid 7" in str(errors[0])
    rows = len(store.evaluations(study.id))
    time.sleep(1)
    assert len(store.evaluations(study.id)) == rows
    assert store.get_study("stolen").status == StudyStatus.RUNNING, "the study is the new driver's to close"
    assert not [e for e in store.events(study.id) if e.kind in ("stopped", "finished")]
    store.close()


def _capture(fn, errors: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        errors.append(exc)


def test_the_dashboard_shows_a_study_whose_driver_is_gone_as_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    alive, gone = add_study(store, "alive"), add_study(store, "gone")
    for study, lease_seconds in ((alive, 3600.0), (gone, 0.0)):
        store.update_study(study.id, status=StudyStatus.RUNNING, started_at=utcnow())
        lease = StudyLease(store, study, holder=_elsewhere())
        lease.lease_seconds = lease_seconds
        lease.acquire()
    monkeypatch.setenv("LAYERFORGE_DB", store.url)
    app = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    at = AppTest.from_file(str(app), default_timeout=60)
    at.run()
    table = at.dataframe[0].value
    assert dict(zip(table["study"], table["status"], strict=True)) == {"alive": "running", "gone": "interrupted"}
    at.switch_page("views/study.py")
    at.query_params["study"] = "gone"
    at.run()
    assert not at.exception and {m.label: m.value for m in at.metric}["status"] == "interrupted"
    store.close()


# -- concurrent `layerforge` processes ----------------------------------------------------------------


def _finished(store: Store, name: str) -> int:
    try:
        study = store.get_study(name)
    except Exception:  # noqa: BLE001 - the driver has not created it yet
        return 0
    return sum(n for status, n in store.count_by_status(study.id).items() if status in FINISHED)


def _driver(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [LAYERFORGE, *args, "--no-progress"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _list(store_url: str) -> str:
    return CliRunner().invoke(app, ["list", "--db", store_url], env={"COLUMNS": "200"}).output


def _refused_line(stderr: str, holder_pid: int) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "is already being run by pid" in lines[0] and f"pid {holder_pid} on host" in lines[0], lines[0]


@pytest.mark.slow
def test_concurrent_drivers_of_one_study_run_it_exactly_once(ray_address: str, store_url: str, tmp_path: Path) -> None:
    budget = 40  # at 1 s each on 2 workers: the launch still runs when the refused resume is done
    config = study_config("shared", tmp_path, budget={"evaluations": budget}, store={"url": store_url})
    config["evaluator"]["synthetic"] = {"seconds": 1.0}
    config_path = tmp_path / "study.yaml"
    config_path.write_text(yaml.safe_dump(config))
    store = Store(store_url)
    launch = _driver("launch", str(config_path), "--address", ray_address)
    deadline = time.time() + 120
    while _finished(store, "shared") < 3 and time.time() < deadline:
        assert launch.poll() is None, launch.stderr.read()
        time.sleep(0.2)

    # launch + resume: the second driver is refused before it touches anything
    resume_args = ("resume", "shared", "--db", store_url, "--address", ray_address)
    refused = subprocess.run([LAYERFORGE, *resume_args, "--no-progress"], env=ENV, capture_output=True, text=True)
    assert refused.returncode == 2
    _refused_line(refused.stderr, launch.pid)

    assert launch.poll() is None, "the launch finished before the test could kill it"
    launch.send_signal(signal.SIGKILL)
    launch.wait()
    listed = _list(store_url)
    assert "interrupted" in listed, listed  # stored as running, but its driver is dead

    # two resumes at once: one takes the dead driver's study over, the other is refused
    drivers = [_driver(*resume_args), _driver(*resume_args)]
    errors = [d.communicate(timeout=240)[1] for d in drivers]
    by_code = {d.returncode: (d.pid, err) for d, err in zip(drivers, errors, strict=True)}
    assert sorted(by_code) == [0, 2], errors
    _refused_line(by_code[2][1], holder_pid=by_code[0][0])

    study = store.get_study("shared")
    rows = store.evaluations(study.id)
    finished = [(c, e) for c, e in rows if e.status in FINISHED]
    assert study.status == StudyStatus.FINISHED and len(finished) == budget
    assert len({c.key for c, _ in finished}) == budget, "a candidate was trained twice"
    assert len({e.candidate_id for _, e in rows}) == len(rows), "a candidate got two evaluation rows"
    kinds = [e.kind for e in store.events(study.id)]
    assert kinds.count("finished") == 1 and kinds.count("takeover") == 1
    assert "finished" in _list(store_url)
    store.close()
