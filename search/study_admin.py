"""Study management: extend a budget, rename, delete, tag and annotate a stored study.

A study is named by its full name or a unique prefix (``Store.get_study``). A change to a study's budget, name or
rows is refused while a live driver runs it, checked inside the transaction that makes the change, so a driver
never finds its study renamed or gone under it. Tags and a note live in their own table and may change any time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evaluators.config import INT32_MAX
from evaluators.vocabulary import FINISHED, StudyStatus
from search.config import NAME_LENGTH, NAME_PATTERN, ConfigError
from search.lease import StudyBusyError, describe, driver_alive
from search.store import Store, StoreError
from search.tables import CandidateRow, EvaluationRow, EventRow, LeaseRow, StudyLabelRow, StudyRow

TAG_PATTERN = re.compile(r"[A-Za-z0-9_.:/+\-]{1,50}")


def finished_evaluations(store: Store, study: StudyRow) -> int:
    """Finished search evaluations (duplicates excluded): what the evaluation budget counts."""
    counts = store.count_by_status(study.id)
    return sum(counts.get(status, 0) for status in FINISHED)


def _refuse_while_running(s: Session, study: StudyRow, change: str) -> None:
    lease = s.get(LeaseRow, study.id)
    if lease is not None and driver_alive(lease):
        raise StudyBusyError(
            f"cannot {change} study {study.name!r} while {describe(lease)} runs it; "
            "stop that driver first (Ctrl-C), then try again"
        )


# -- budget ----------------------------------------------------------------------------------------------------


def extend_budget(
    store: Store, name: str, *, evaluations: int | None = None, minutes: float | None = None
) -> StudyRow:
    """Give a study ``evaluations`` more finished evaluations and/or ``minutes`` more minutes of run time than it
    has spent, whichever comes first (a bound not given is lifted), as ``Study.run(evaluations, minutes)`` does.

    The new budget is stored, in the study's row and in its stored config, which ``resume`` runs from, so a
    resume runs to exactly that budget; a finished study becomes stopped, ready to be resumed.
    """
    if evaluations is None and minutes is None:
        raise ConfigError("give --evaluations N and/or --minutes M: how much more the study may run")
    if evaluations is not None and evaluations < 1:
        raise ConfigError(f"--evaluations must be at least 1, got {evaluations}")
    if minutes is not None and not minutes > 0:
        raise ConfigError(f"--minutes must be above 0, got {minutes}")
    study = store.get_study(name)
    finished = finished_evaluations(store, study)
    new_evaluations = None if evaluations is None else finished + evaluations
    new_minutes = None if minutes is None else (study.active_seconds or 0.0) / 60 + minutes
    if new_evaluations is not None and new_evaluations > INT32_MAX:
        raise ConfigError(
            f"study {study.name!r} has finished {finished} evaluations; --evaluations may add at most "
            f"{INT32_MAX - finished} (the store keeps the budget as a 32-bit integer)"
        )
    budget = {"evaluations": new_evaluations, "minutes": new_minutes}

    def change(s: Session) -> None:
        _refuse_while_running(s, study, "change the budget of")
        status = StudyStatus.STOPPED if study.status == StudyStatus.FINISHED else study.status
        s.execute(
            update(StudyRow)
            .where(StudyRow.id == study.id)
            .values(
                budget_evaluations=new_evaluations,
                budget_minutes=new_minutes,
                config={**study.config, "budget": budget},
                status=status,
                finished_at=None,
            )
        )
        previous = {"evaluations": study.budget_evaluations, "minutes": study.budget_minutes}
        message = f"budget set to {describe_budget(new_evaluations, new_minutes)}"
        s.add(EventRow(study_id=study.id, kind="budget", message=message, data={"previous": previous, **budget}))

    store.write(change)
    return store.get_study(study.name)


def describe_budget(evaluations: int | None, minutes: float | None) -> str:
    """``110 evaluations or 8.5 minutes``: whichever is spent first stops the study."""
    parts = [f"{evaluations} evaluations"] if evaluations is not None else []
    parts += [f"{minutes:.1f} minutes"] if minutes is not None else []
    return " or ".join(parts) or "none"


# -- rename and delete -----------------------------------------------------------------------------------------


def rename_study(store: Store, name: str, new_name: str) -> StudyRow:
    """Give a study a new name (its stored config follows, so ``resume`` finds it under the new one)."""
    if not 1 <= len(new_name) <= NAME_LENGTH or not NAME_PATTERN.fullmatch(new_name):
        raise ConfigError(
            f"a study name is 1 to {NAME_LENGTH} letters, digits, '_', '-' and '.', not starting with a dot, "
            f"got {new_name[:60]!r}"
        )
    study = store.get_study(name)

    def change(s: Session) -> None:
        _refuse_while_running(s, study, "rename")
        s.execute(
            update(StudyRow)
            .where(StudyRow.id == study.id)
            .values(name=new_name, config={**study.config, "name": new_name})
        )

    try:
        store.write(change)
    except IntegrityError:
        raise StoreError(f"a study named {new_name!r} already exists in this store; choose another name") from None
    return store.get_study(new_name)


@dataclass(frozen=True)
class StudyRows:
    """How many rows a study holds beside its own."""

    candidates: int
    evaluations: int
    events: int

    def __str__(self) -> str:
        return f"{self.candidates} candidates, {self.evaluations} evaluations and {self.events} events"


def count_rows(store: Store, study: StudyRow) -> StudyRows:
    def count(s: Session, table: type[CandidateRow | EvaluationRow | EventRow]) -> int:
        return s.execute(select(func.count()).select_from(table).where(table.study_id == study.id)).scalar_one()

    return store.read(lambda s: StudyRows(count(s, CandidateRow), count(s, EvaluationRow), count(s, EventRow)))


def delete_study(store: Store, name: str) -> StudyRows:
    """Delete a study with its candidates, evaluations, events, lease and labels, in one transaction."""
    study = store.get_study(name)

    def change(s: Session) -> StudyRows:
        _refuse_while_running(s, study, "delete")
        ids = select(CandidateRow.id).where(CandidateRow.study_id == study.id)
        # A candidate marked as a duplicate of one of these (its own study's, by construction) lets go first.
        s.execute(update(CandidateRow).where(CandidateRow.duplicate_of.in_(ids)).values(duplicate_of=None))
        evaluations = s.execute(delete(EvaluationRow).where(EvaluationRow.study_id == study.id)).rowcount
        candidates = s.execute(delete(CandidateRow).where(CandidateRow.study_id == study.id)).rowcount
        events = s.execute(delete(EventRow).where(EventRow.study_id == study.id)).rowcount
        s.execute(delete(LeaseRow).where(LeaseRow.study_id == study.id))
        s.execute(delete(StudyLabelRow).where(StudyLabelRow.study_id == study.id))
        s.execute(delete(StudyRow).where(StudyRow.id == study.id))
        return StudyRows(candidates, evaluations, events)

    return store.write(change)


# -- tags and note ---------------------------------------------------------------------------------------------


def _labels(s: Session, study: StudyRow) -> StudyLabelRow:
    row = s.get(StudyLabelRow, study.id)
    if row is None:
        row = StudyLabelRow(study_id=study.id, tags=[], note="")
        s.add(row)
    return row


def tag_study(store: Store, name: str, action: Literal["add", "remove"], tags: list[str]) -> list[str]:
    """Add or remove tags; returns the study's tags after the change, sorted."""
    bad = [t for t in tags if not TAG_PATTERN.fullmatch(t)]
    if bad:
        raise ConfigError(
            f"tag {bad[0][:60]!r} is not a tag: 1 to 50 letters, digits and _ . : / + - (no spaces or commas)"
        )
    study = store.get_study(name)

    def change(s: Session) -> list[str]:
        row = _labels(s, study)
        current = set(row.tags or [])
        if action == "remove":
            missing = sorted(set(tags) - current)
            if missing:
                have = ", ".join(sorted(current)) or "none"
                raise ConfigError(f"study {study.name!r} has no tag {missing[0]!r}; its tags: {have}")
            row.tags = sorted(current - set(tags))
        else:
            row.tags = sorted(current | set(tags))
        return row.tags

    return store.write(change)


def note_study(store: Store, name: str, text: str) -> None:
    """Set the study's note (an empty text clears it)."""
    study = store.get_study(name)

    def change(s: Session) -> None:
        _labels(s, study).note = text.strip()

    store.write(change)
