"""The store on real SQLite and on a real PostgreSQL server: the same suite against both backends."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError

from evaluators.vocabulary import Status, StudyStatus
from search.config import parse_config
from search.runner import StudyRunner
from search.store import CandidateRow, Store, StoreError, utcnow
from tests.conftest import add_study, study_config
from tests.pg import PostgresServer


def _candidate(key: str, **values) -> dict:
    return {
        "key": key,
        "canonical": key,
        "genome": {"space": "activation", "v": 1, "expr": key},
        "origin": "sample",
        **values,
    }


def test_studies_are_created_listed_and_unique_by_name(store: Store) -> None:
    first = add_study(store, "alpha").id
    add_study(store, "beta")
    assert [s.name for s in store.list_studies()] == ["alpha", "beta"]
    row = store.get_study("alpha")
    assert row.id == first and row.status == "created" and row.objectives[0]["name"] == "val_acc@mlp"
    with pytest.raises(StoreError, match="already exists"):
        add_study(store, "alpha")
    with pytest.raises(StoreError, match="no study named 'gamma'.*alpha, beta"):
        store.get_study("gamma")
    store.update_study(first, status="running", active_seconds=12.5)
    assert store.get_study("alpha").status == "running" and store.get_study("alpha").active_seconds == 12.5


def test_candidate_and_evaluation_are_written_in_one_transaction(store: Store) -> None:
    study = add_study(store).id
    cand_id, ev_id = store.add_candidate_with_evaluation(study, _candidate("a"), {"status": "running"})
    assert store.get_candidate(cand_id).genome["expr"] == "a"
    with pytest.raises(IntegrityError):
        store.add_candidate_with_evaluation(study, _candidate("b"), {"status": None})  # NOT NULL: the insert fails
    keys = store.read(lambda s: list(s.scalars(select(CandidateRow.key).where(CandidateRow.study_id == study))))
    assert keys == ["a"], "a failed evaluation insert left its candidate behind"
    assert [e.id for _, e in store.evaluations(study)] == [ev_id]


def test_reads_are_incremental(store: Store) -> None:
    study = add_study(store).id
    ids = [store.add_candidate_with_evaluation(study, _candidate(k), {"status": "running"})[1] for k in "abc"]
    assert [e.id for _, e in store.evaluations(study)] == ids
    assert [e.id for _, e in store.evaluations(study, after_id=ids[1])] == ids[2:]
    assert store.evaluations(study, after_id=ids[2]) == []
    assert [e.id for _, e in store.evaluations(study, limit=2)] == ids[:2]
    store.log_event(study, "start", "started", requeued=0)
    cursor = store.events(study)[-1].id
    store.log_event(study, "workers", "2 workers ready", workers=[{"name": "worker-1", "node_id": "ab12"}])
    new = store.events(study, after_id=cursor)
    assert [(e.kind, e.data["workers"][0]["node_id"]) for e in new] == [("workers", "ab12")]


def test_history_is_in_finishing_order_and_unfinished_lists_what_is_in_flight(store: Store) -> None:
    study = add_study(store).id
    now = utcnow()
    evs = {k: store.add_candidate_with_evaluation(study, _candidate(k), {"status": "running"})[1] for k in "abcd"}
    store.update_evaluation(evs["a"], status="done", finished_at=now + timedelta(seconds=3), objectives={"x": 0.5})
    store.update_evaluation(evs["b"], status="rejected", stage="numeric_probe", finished_at=now + timedelta(seconds=1))
    store.update_evaluation(evs["c"], status="failed", stage="timeout", finished_at=now + timedelta(seconds=2))
    assert [c.key for c, _ in store.history(study)] == ["b", "c", "a"]
    assert [c.key for c, _ in store.unfinished(study)] == ["d"]
    assert store.history(study)[-1][1].objectives == {"x": 0.5}


def test_counts_by_status_and_stage(store: Store) -> None:
    study = add_study(store).id
    for key, status, stage, seconds in [
        ("a", "done", "full", 2.0),
        ("b", "done", "full", 3.0),
        ("c", "rejected", "quality_gate", 0.5),
        ("d", "running", None, None),
    ]:
        store.add_candidate_with_evaluation(
            study, _candidate(key), {"status": status, "stage": stage, "seconds": seconds}
        )
    assert store.count_by_status(study) == {"done": 2, "rejected": 1, "running": 1}
    assert store.count_by_stage(study) == {("done", "full"): (2, 5.0), ("rejected", "quality_gate"): (1, 0.5)}


def test_statuses_are_stored_as_their_plain_words_and_read_back_as_members(store: Store) -> None:
    study = add_study(store).id
    _, ev_id = store.add_candidate_with_evaluation(study, _candidate("a"), {"status": Status.DONE})
    with store.engine.begin() as conn:
        assert conn.execute(text("SELECT status FROM evaluations")).scalar_one() == "done"
        assert conn.execute(text("SELECT status FROM studies")).scalar_one() == "created"
        conn.execute(text("UPDATE evaluations SET status = 'rejected'"))  # as an older store holds it
    _, ev = store.history(study)[0]
    assert ev.status is Status.REJECTED and f"{ev.status}" == str(ev.status) == "rejected"
    assert store.count_by_status(study) == {Status.REJECTED: 1}
    assert store.get_study("s").status is StudyStatus.CREATED
    with pytest.raises(StatementError, match="not among the defined enum values"):
        store.update_evaluation(ev_id, status="finished")


def test_read_only_store_reads_but_refuses_writes(store: Store, store_url: str) -> None:
    study = add_study(store).id
    reader = Store(store_url, read_only=True, retries=0)
    try:
        assert [s.id for s in reader.list_studies()] == [study]
        with pytest.raises(StoreError, match="read-only"):
            reader.update_study(study, status="finished")
        with pytest.raises(StoreError):  # the database itself refuses, not only the guard
            reader.read(lambda s: s.execute(text("UPDATE studies SET status = 'finished'")))
        store.log_event(study, "start")
        assert [e.kind for e in reader.events(study)] == ["start"], "the reader sees the writer's new rows"
    finally:
        reader.close()
    assert store.get_study("s").status == "created"


def test_lost_connection_mid_transaction_is_retried(postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database()
    store = Store(postgres_server.url(database))
    study = add_study(store).id
    calls = []

    def insert_then_lose_connection(session) -> int:
        calls.append(1)
        row = CandidateRow(study_id=study, **_candidate("k"))
        session.add(row)
        session.flush()
        if len(calls) == 1:
            assert postgres_server.terminate_connections(database) == 1
        session.flush()
        session.execute(text("SELECT 1"))  # the server is gone: this fails, the transaction is rolled back
        return row.id

    store.write(insert_then_lose_connection)
    assert len(calls) == 2, "the write was not retried after the connection dropped"
    keys = store.read(lambda s: list(s.scalars(select(CandidateRow.key))))
    assert keys == ["k"], "the retried transaction must land exactly once"
    store.close()


def test_study_on_postgresql_rides_out_dropped_connections(
    ray_address: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    database = postgres_server.create_database()
    config = study_config("pg", tmp_path, budget={"evaluations": 40}, store={"url": postgres_server.url(database)})
    config["evaluator"]["synthetic"] = {"seconds": 0.05}
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    runner = StudyRunner(cfg, store, progress=False)
    thread = threading.Thread(target=runner.run)
    thread.start()
    killed = 0
    while thread.is_alive():
        killed += postgres_server.terminate_connections(database)
        time.sleep(0.3)
    assert killed >= 3, "the test did not cut the driver's connection while it ran"
    study = store.get_study("pg")
    rows = store.evaluations(study.id)
    finished = [(c, e) for c, e in rows if e.status in ("done", "rejected", "failed")]
    assert study.status == "finished"
    assert len(finished) == 40
    assert len({c.key for c, _ in finished}) == 40, "a candidate was evaluated twice"
    assert len({e.candidate_id for _, e in rows}) == len(rows), "a candidate got two evaluation rows"
    store.close()
