"""The SQL store: studies, candidates, evaluations, events. SQLite (WAL) by default, PostgreSQL by URL.

Only the driver writes. Dashboard reads are incremental (``id > cursor``) and can open the store read-only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import func, insert, inspect, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from evaluators.vocabulary import FINAL, IN_FLIGHT, Status
from search.db_urls import redact_url, without_password
from search.store_engine import StoreError, make_engine
from search.tables import Base, CandidateRow, EvaluationRow, EventRow, LeaseRow, StudyLabelRow, StudyRow, utcnow

__all__ = [
    "CandidateRow",
    "EvaluationRow",
    "EventRow",
    "LeaseRow",
    "Store",
    "StoreError",
    "StudyLabelRow",
    "StudyRow",
    "utcnow",
]

T = TypeVar("T")

PREFIX_MATCHES_SHOWN = 10  # an ambiguous study name prefix lists this many of the studies it matches


class Store:
    """Typed access to the tables; every write is one short transaction, retried on a lost connection."""

    def __init__(self, url: str, read_only: bool = False, retries: int = 5, connect_retries: int = 1):
        self.url = url
        self.read_only = read_only
        self.engine = make_engine(url, read_only=read_only)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # A wrong URL should fail fast at start; a running study rides out longer outages.
        self.retries = connect_retries
        if not read_only:
            self._call(lambda: Base.metadata.create_all(self.engine))
        else:
            self._call(self._check_tables)
        self.retries = retries

    # -- plumbing ---------------------------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying with backoff when the connection drops (cluster databases restart)."""
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except IntegrityError:
                raise  # a constraint says no (e.g. a taken study name): the caller explains it
            except (OperationalError, DBAPIError) as exc:
                lasting = _lasting_sqlite_error(exc)
                transient = (isinstance(exc, OperationalError) and not lasting) or exc.connection_invalidated
                if not transient or attempt == self.retries:
                    raise StoreError(f"store {self._safe_url()} failed: {_first_line(exc)}") from None
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")

    def _safe_url(self) -> str:
        return redact_url(self.url)

    def _check_tables(self) -> None:
        """A reader must find a LayerForge store: a corrupt or foreign file fails here, at start, in one line."""
        if not inspect(self.engine).has_table(StudyRow.__tablename__):
            raise StoreError(
                f"store {self._safe_url()} has no studies table, so it is not a LayerForge store (yet); "
                "point --db at the store a study was launched with"
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def write(self, fn: Callable[[Session], T]) -> T:
        if self.read_only:
            raise StoreError(f"store {self._safe_url()} is open read-only; only a study's driver writes to it")

        def run() -> T:
            with self.session() as s:
                return fn(s)

        return self._call(run)

    def read(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with self._sessions() as s:
                return fn(s)

        return self._call(run)

    def close(self) -> None:
        self.engine.dispose()

    # -- studies ----------------------------------------------------------------------------------
    def create_study(
        self,
        name: str,
        *,
        space: str,
        algorithm: str,
        seed: int,
        config: dict[str, Any],
        objectives: list[dict[str, str]],
        budget_evaluations: int | None,
        budget_minutes: float | None,
    ) -> StudyRow:
        def fn(s: Session) -> StudyRow:
            row = StudyRow(
                name=name,
                space=space,
                algorithm=algorithm,
                seed=seed,
                config=_without_stored_password(config),
                objectives=objectives,
                budget_evaluations=budget_evaluations,
                budget_minutes=budget_minutes,
            )
            s.add(row)
            s.flush()
            return row

        try:
            return self.write(fn)
        except IntegrityError:
            raise StoreError(
                f"a study named {name!r} already exists in {self._safe_url()}; "
                f"use `layerforge resume {name}` or choose another name"
            ) from None

    def get_study(self, name: str) -> StudyRow:
        """The study named ``name``, or else the one study whose name starts with it (``quickstart`` for
        ``quickstart-20260101-120000``); an ambiguous prefix is refused with the names it matches."""

        def find(s: Session) -> list[StudyRow]:
            exact = s.scalars(select(StudyRow).where(StudyRow.name == name)).first()
            if exact is not None:
                return [exact]
            starts = select(StudyRow).where(StudyRow.name.startswith(name, autoescape=True)).order_by(StudyRow.id)
            return list(s.scalars(starts.limit(PREFIX_MATCHES_SHOWN + 1)))

        found = self.read(find) if name else []
        if len(found) == 1:
            return found[0]
        if found:
            shown = ", ".join(r.name for r in found[:PREFIX_MATCHES_SHOWN])
            more = ", ..." if len(found) > PREFIX_MATCHES_SHOWN else ""
            raise StoreError(
                f"study name {name!r} is ambiguous in {self._safe_url()}: it starts {shown}{more}; "
                "give more of the name"
            )
        names = ", ".join(r.name for r in self.list_studies()) or "none"
        raise StoreError(f"no study named {name!r} in {self._safe_url()}; studies: {names}")

    def list_studies(self) -> list[StudyRow]:
        return self.read(lambda s: list(s.scalars(select(StudyRow).order_by(StudyRow.id))))

    def update_study(self, study_id: int, **values: Any) -> None:
        self.write(lambda s: s.execute(update(StudyRow).where(StudyRow.id == study_id).values(**values)))

    # -- candidates and evaluations ---------------------------------------------------------------
    def add_candidate_with_evaluation(
        self, study_id: int, candidate: dict[str, Any], evaluation: dict[str, Any]
    ) -> tuple[int, int]:
        """One transaction, so a crash never leaves a candidate without its evaluation row."""

        def fn(s: Session) -> tuple[int, int]:
            # Core inserts: this is the driver's hot path, and ORM unit-of-work overhead doubles its cost.
            cand_id = s.execute(insert(CandidateRow).values(study_id=study_id, **candidate)).inserted_primary_key[0]
            ev = insert(EvaluationRow).values(study_id=study_id, candidate_id=cand_id, **evaluation)
            return cand_id, s.execute(ev).inserted_primary_key[0]

        return self.write(fn)

    def add_evaluation(self, study_id: int, candidate_id: int, **values: Any) -> int:
        def fn(s: Session) -> int:
            row = EvaluationRow(study_id=study_id, candidate_id=candidate_id, **values)
            s.add(row)
            s.flush()
            return row.id

        return self.write(fn)

    def update_evaluation(self, evaluation_id: int, **values: Any) -> None:
        self.write(lambda s: s.execute(update(EvaluationRow).where(EvaluationRow.id == evaluation_id).values(**values)))

    def _search_rows(
        self, study_id: int, statuses: tuple[Status, ...], *order: Any
    ) -> list[tuple[CandidateRow, EvaluationRow]]:
        q = (
            select(CandidateRow, EvaluationRow)
            .join(EvaluationRow, EvaluationRow.candidate_id == CandidateRow.id)
            .where(
                EvaluationRow.study_id == study_id,
                EvaluationRow.purpose == "search",
                EvaluationRow.status.in_(statuses),
            )
            .order_by(*order)
        )
        return self.read(lambda s: [(c, e) for c, e in s.execute(q).all()])

    def history(self, study_id: int) -> list[tuple[CandidateRow, EvaluationRow]]:
        """Search evaluations in the order they finished, joined with their candidates (for replay)."""
        return self._search_rows(study_id, FINAL, EvaluationRow.finished_at, EvaluationRow.id)

    def unfinished(self, study_id: int) -> list[tuple[CandidateRow, EvaluationRow]]:
        """Evaluations left pending or running by a driver that stopped (to re-queue on resume)."""
        return self._search_rows(study_id, IN_FLIGHT, EvaluationRow.id)

    def count_by_status(self, study_id: int, purpose: str = "search") -> dict[Status, int]:
        q = (
            select(EvaluationRow.status, func.count())
            .where(EvaluationRow.study_id == study_id, EvaluationRow.purpose == purpose)
            .group_by(EvaluationRow.status)
        )
        return self.read(lambda s: {status: n for status, n in s.execute(q).all()})

    def count_by_stage(self, study_id: int) -> dict[tuple[Status, str], tuple[int, float]]:
        """(status, stage) -> (count, worker seconds) for final search evaluations."""
        q = (
            select(
                EvaluationRow.status,
                EvaluationRow.stage,
                func.count(),
                func.coalesce(func.sum(EvaluationRow.seconds), 0.0),
            )
            .where(
                EvaluationRow.study_id == study_id,
                EvaluationRow.purpose == "search",
                EvaluationRow.status.in_(FINAL),
            )
            .group_by(EvaluationRow.status, EvaluationRow.stage)
        )
        return self.read(lambda s: {(st, stage or ""): (n, float(sec)) for st, stage, n, sec in s.execute(q).all()})

    def evaluations(
        self, study_id: int, purpose: str | None = "search", after_id: int = 0, limit: int | None = None
    ) -> list[tuple[CandidateRow, EvaluationRow]]:
        """Evaluations with id > after_id (incremental reads), oldest first."""
        q = (
            select(CandidateRow, EvaluationRow)
            .join(EvaluationRow, EvaluationRow.candidate_id == CandidateRow.id)
            .where(EvaluationRow.study_id == study_id, EvaluationRow.id > after_id)
        )
        if purpose is not None:
            q = q.where(EvaluationRow.purpose == purpose)
        q = q.order_by(EvaluationRow.id)
        if limit is not None:
            q = q.limit(limit)
        return self.read(lambda s: [(c, e) for c, e in s.execute(q).all()])

    def get_candidate(self, candidate_id: int) -> CandidateRow:
        row = self.read(lambda s: s.get(CandidateRow, candidate_id))
        if row is None:
            raise StoreError(f"no candidate with id {candidate_id}")
        return row

    # -- events -----------------------------------------------------------------------------------
    def log_event(self, study_id: int | None, kind: str, message: str = "", **data: Any) -> None:
        self.write(
            lambda s: s.add(
                EventRow(
                    study_id=study_id,
                    kind=kind,
                    message=message,
                    data=json.loads(json.dumps(data, default=str)),
                )
            )
        )

    def events(self, study_id: int, after_id: int = 0) -> list[EventRow]:
        q = select(EventRow).where(EventRow.study_id == study_id, EventRow.id > after_id).order_by(EventRow.id)
        return self.read(lambda s: list(s.scalars(q)))

    def latest_event(self, study_id: int, kinds: tuple[str, ...]) -> EventRow | None:
        """The study's newest event of one of these kinds."""
        q = select(EventRow).where(EventRow.study_id == study_id, EventRow.kind.in_(kinds))
        return self.read(lambda s: s.scalars(q.order_by(EventRow.id.desc()).limit(1)).first())

    # -- labels -----------------------------------------------------------------------------------
    def labels(self) -> dict[int, StudyLabelRow]:
        """Every labelled study's tags and note by study id; none in a store written before labels existed."""
        if not self.read(lambda s: inspect(s.connection()).has_table(StudyLabelRow.__tablename__)):
            return {}
        return self.read(lambda s: {row.study_id: row for row in s.scalars(select(StudyLabelRow))})


def _lasting_sqlite_error(exc: DBAPIError) -> bool:
    """SQLite cannot write the file (read-only, disk full, I/O error, not a database): waiting will not help.

    Only its lock errors pass with time, and its busy timeout has already waited for those.
    """
    name = getattr(exc.orig, "sqlite_errorname", "")  # Python 3.11+; older ones keep retrying
    return bool(name) and not name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _without_stored_password(config: dict[str, Any]) -> dict[str, Any]:
    """A study config as the store keeps it: its store URL without a password (every dashboard user reads it)."""
    store = config.get("store")
    if not isinstance(store, dict) or not isinstance(store.get("url"), str):
        return config
    return {**config, "store": {**store, "url": without_password(store["url"])}}


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
