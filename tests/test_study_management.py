"""Study management on SQLite and PostgreSQL: names by unique prefix, budget extension that resume honours, rename,
delete, tags and notes, what stopped a study, the list at 80 columns, and stores written before labels existed."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from evaluators.vocabulary import Status, StudyStatus
from search.cli import app
from search.config import ConfigError, parse_config
from search.lease import Holder, StudyBusyError, StudyLease, leases, shown_status
from search.runner import StudyRunner
from search.store import CandidateRow, EvaluationRow, EventRow, LeaseRow, Store, StoreError, StudyRow, utcnow
from search.store_engine import make_engine
from search.study_admin import (
    delete_study,
    extend_budget,
    finished_evaluations,
    note_study,
    rename_study,
    tag_study,
)
from search.summary import print_summary, stopped_by, studies_table
from search.tables import Base, StudyLabelRow
from tests.conftest import add_study, study_config

ELSEWHERE = Holder("elsewhere", 4242, "elsewhere other-boot pid:[1]", "1")  # only its lease's expiry tells it is gone


def _study_with_evaluations(store: Store, name: str, done: int, **study_values) -> StudyRow:
    """A study with ``done`` finished search evaluations (and one duplicate of the first), then ``study_values``."""
    study = add_study(store, name)
    first = None
    for i in range(done):
        candidate = {"key": f"{name}{i}", "canonical": f"{name}{i}", "genome": {"i": i}, "origin": "sample"}
        objectives = {"val_acc@mlp": 0.1 * i}
        cand_id, _ = store.add_candidate_with_evaluation(
            study.id, candidate, {"status": Status.DONE, "objectives": objectives, "finished_at": utcnow()}
        )
        first = first or cand_id
    if first is not None:
        duplicate = {"key": f"{name}d", "canonical": "d", "genome": {}, "origin": "sample", "duplicate_of": first}
        store.add_candidate_with_evaluation(study.id, duplicate, {"status": Status.DUPLICATE})
    store.log_event(study.id, "start", "started")
    if study_values:
        store.update_study(study.id, **study_values)
    return store.get_study(name)


def _stopped_by(store: Store, name: str) -> str:
    study = store.get_study(name)
    shown = shown_status(study, leases(store).get(study.id))
    return stopped_by(store, study, shown, finished_evaluations(store, study))


def _invoke(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=input)
    return result.exit_code, result.output


# -- names -------------------------------------------------------------------------------------------------------


def test_a_study_is_named_by_its_name_or_a_unique_prefix(store: Store) -> None:
    for name in ("quickstart-20260101-120000", "quick_2", "quickx"):
        add_study(store, name)
    assert store.get_study("quickstart").name == "quickstart-20260101-120000"
    assert store.get_study("quick_").name == "quick_2", "'_' in a prefix is a character, not a wildcard"
    with pytest.raises(StoreError, match="'quick' is ambiguous.*quickstart-20260101-120000, quick_2, quickx"):
        store.get_study("quick")
    add_study(store, "quick")
    assert store.get_study("quick").name == "quick", "a full name wins over being a prefix of others"
    with pytest.raises(StoreError, match="no study named 'slow'"):
        store.get_study("slow")


# -- budget ------------------------------------------------------------------------------------------------------


def test_extending_a_finished_study_stores_the_new_budget(store: Store) -> None:
    _study_with_evaluations(store, "s", 10, status=StudyStatus.FINISHED, active_seconds=120.0, budget_minutes=2.0)
    assert _stopped_by(store, "s") == "evaluations 10/10"

    row = extend_budget(store, "s", evaluations=5)
    assert (row.budget_evaluations, row.budget_minutes) == (15, None), "N more than finished; the other bound lifted"
    assert row.config["budget"] == {"evaluations": 15, "minutes": None}, "resume runs from the stored config"
    assert row.status == StudyStatus.STOPPED and row.finished_at is None
    assert _stopped_by(store, "s") == "budget extended, not resumed yet"
    assert store.latest_event(row.id, ("budget",)).data["previous"] == {"evaluations": 10, "minutes": 2.0}

    row = extend_budget(store, "s", minutes=3)
    assert (row.budget_evaluations, row.budget_minutes) == (None, pytest.approx(5.0))
    for bad in ({}, {"evaluations": 0}, {"minutes": -1.0}, {"evaluations": 2**31}):
        with pytest.raises(ConfigError):
            extend_budget(store, "s", **bad)


def test_resume_runs_an_extended_study_to_exactly_its_new_budget(ray_address: str, tmp_path: Path) -> None:
    cfg = parse_config(study_config("extend-me", tmp_path, budget={"evaluations": 8}))
    store = Store(cfg.store.url)
    assert StudyRunner(cfg, store, progress=False).run().status == StudyStatus.FINISHED
    extend_budget(store, "extend", evaluations=5)
    row = StudyRunner.for_existing(store, "extend", progress=False).run(resume=True)
    assert row.status == StudyStatus.FINISHED
    assert finished_evaluations(store, row) == 13
    assert _stopped_by(store, "extend") == "evaluations 13/13"


# -- changes refused while a driver runs the study ---------------------------------------------------------------


def test_budget_rename_and_delete_wait_for_the_driver_but_tags_do_not(store: Store) -> None:
    study = _study_with_evaluations(store, "busy", 2, status=StudyStatus.RUNNING)
    lease = StudyLease(store, study, holder=ELSEWHERE)
    lease.acquire()
    for change in (
        lambda: extend_budget(store, "busy", evaluations=5),
        lambda: rename_study(store, "busy", "other"),
        lambda: delete_study(store, "busy"),
    ):
        with pytest.raises(StudyBusyError, match="while pid 4242 on host elsewhere .* runs it; stop that driver"):
            change()
    assert store.get_study("busy").budget_evaluations == 10
    assert tag_study(store, "busy", "add", ["live"]) == ["live"]
    assert _stopped_by(store, "busy") == "", "a running study was stopped by nothing yet"
    lease.release()
    assert _stopped_by(store, "busy") == "interrupted", "stored as running, and its driver has let go"
    delete_study(store, "busy")
    assert store.list_studies() == []


# -- rename and delete -------------------------------------------------------------------------------------------


def test_rename_moves_the_name_and_the_stored_config(store: Store) -> None:
    add_study(store, "old-name")
    add_study(store, "taken")
    row = rename_study(store, "old", "new-name")
    assert row.name == "new-name" and row.config["name"] == "new-name"
    with pytest.raises(StoreError, match="'taken' already exists"):
        rename_study(store, "new-name", "taken")
    with pytest.raises(ConfigError, match="a study name is"):
        rename_study(store, "new-name", "no spaces please")
    assert [s.name for s in store.list_studies()] == ["new-name", "taken"]


def _rows(store: Store, table: type, study_id: int) -> int:
    column = table.study_id
    return store.read(lambda s: s.execute(select(func.count()).select_from(table).where(column == study_id)).scalar())


def test_delete_removes_the_study_and_its_rows_and_nothing_else(store: Store) -> None:
    gone = _study_with_evaluations(store, "gone", 3, status=StudyStatus.FINISHED)
    kept = _study_with_evaluations(store, "kept", 2, status=StudyStatus.FINISHED)
    lease = StudyLease(store, gone)
    lease.acquire()
    lease.release()
    tag_study(store, "gone", "add", ["x"])
    deleted = delete_study(store, "gone")
    assert (deleted.candidates, deleted.evaluations, deleted.events) == (4, 4, 1)
    for table in (CandidateRow, EvaluationRow, EventRow, LeaseRow, StudyLabelRow):
        assert _rows(store, table, gone.id) == 0, table.__tablename__
    assert [s.name for s in store.list_studies()] == ["kept"]
    assert (_rows(store, CandidateRow, kept.id), _rows(store, EvaluationRow, kept.id)) == (3, 3)
    assert store.labels() == {}


def test_delete_asks_first_unless_yes(store: Store, store_url: str) -> None:
    _study_with_evaluations(store, "asked", 2, status=StudyStatus.FINISHED)
    code, output = _invoke("delete", "ask", "--db", store_url, input="n\n")
    assert code != 0 and "delete study 'asked' and its 3 candidates, 3 evaluations and 1 events" in output
    assert store.get_study("asked")
    code, output = _invoke("delete", "ask", "--db", store_url, input="y\n")
    assert code == 0 and "deleted study 'asked'" in output
    _study_with_evaluations(store, "unasked", 1)
    assert _invoke("delete", "unasked", "--yes", "--db", store_url)[0] == 0
    assert store.list_studies() == []


# -- tags, notes, list and status --------------------------------------------------------------------------------


def test_tags_and_notes_are_shown_by_list_and_status(store: Store, store_url: str) -> None:
    _study_with_evaluations(store, "labelled", 3, status=StudyStatus.FINISHED)
    assert tag_study(store, "lab", "add", ["b", "a", "b"]) == ["a", "b"]
    assert tag_study(store, "lab", "remove", ["a"]) == ["b"]
    with pytest.raises(ConfigError, match="has no tag 'zz'; its tags: b"):
        tag_study(store, "lab", "remove", ["zz"])
    with pytest.raises(ConfigError, match="not a tag"):
        tag_study(store, "lab", "add", ["two words"])
    note_study(store, "lab", "  first try  ")
    assert _invoke("tag", "lab", "rename", "x", "--db", store_url)[0] == 2

    code, listed = _invoke("list", "--db", store_url)
    assert code == 0 and "b (first try)" in listed
    out = io.StringIO()
    print_summary(Console(file=out, width=120), store, store.get_study("lab"))
    assert "tags: b | note: first try" in out.getvalue()


def test_list_says_what_stopped_each_study_and_fits_80_columns(store: Store) -> None:
    _study_with_evaluations(store, "quickstart-20260101-120000", 10, status=StudyStatus.FINISHED)
    _study_with_evaluations(
        store, "quickstart-20260101-130000", 4, status=StudyStatus.FINISHED, active_seconds=510.0, budget_minutes=8.5
    )
    _study_with_evaluations(store, "quickstart-20260101-140000", 2, status=StudyStatus.STOPPED)
    dead = _study_with_evaluations(store, "quickstart-20260101-150000", 1, status=StudyStatus.RUNNING)
    StudyLease(store, dead, holder=ELSEWHERE).acquire()
    store.write(lambda s: s.execute(update(LeaseRow).values(expires_at=utcnow() - timedelta(seconds=1))))
    tag_study(store, "quickstart-20260101-150000", "add", ["crashed"])

    assert [_stopped_by(store, f"quickstart-20260101-{h}0000") for h in (12, 13, 14, 15)] == [
        "evaluations 10/10",
        "minutes 8.5/8.5",
        "Ctrl-C or an error",
        "interrupted",
    ]
    out = io.StringIO()
    Console(file=out, width=80).print(studies_table(store, 80))
    text = out.getvalue()
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    assert "…" not in text, text
    row = next(line for line in lines if line.startswith("quickstart-20260101-150000"))
    assert "running" not in row and "interrupted  interrupted" in row and "crashed" in row, text
    assert "10/10" in text and "8.5/8.5" in text and "tags /" in text, text


# -- stores written before labels existed ------------------------------------------------------------------------


def test_a_store_from_before_labels_reads_back_and_gets_them_on_first_write(store_url: str) -> None:
    engine = make_engine(store_url)
    Base.metadata.create_all(engine, tables=[t for t in Base.metadata.sorted_tables if t.name != "study_labels"])
    with Session(engine) as session, session.begin():
        session.add(
            StudyRow(
                name="old",
                space="activation",
                algorithm="random",
                config={"name": "old"},
                objectives=[{"name": "val_acc@mlp", "direction": "max"}],
                budget_evaluations=5,
            )
        )
    engine.dispose()

    reader = Store(store_url, read_only=True)
    assert reader.labels() == {}
    assert "old" in _invoke("list", "--db", store_url)[1]
    writer = Store(store_url)
    assert tag_study(writer, "old", "add", ["kept"]) == ["kept"]
    assert [row.tags for row in reader.labels().values()] == [["kept"]]
    reader.close()
    writer.close()
