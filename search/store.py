"""The SQL store: studies, candidates, evaluations, events. SQLite (WAL) by default, PostgreSQL by URL.

Only the driver writes. Dashboard reads are incremental (``id > cursor``) and can open the store read-only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from evaluators.vocabulary import FINAL, IN_FLIGHT, Status, StudyStatus

T = TypeVar("T")

DEFAULT_URL = "sqlite:///runs/layerforge.db"
URL_ENV = "LAYERFORGE_DB"  # the store the CLI and the dashboard use when none is given


class StoreError(RuntimeError):
    """The store is unreachable, read-only, or holds something unexpected."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def store_url(url: str | None = None) -> str:
    """``url``, else $LAYERFORGE_DB, else the default SQLite file under runs/."""
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """``(scheme://, userinfo, host and the rest)``, or None without a userinfo.

    The userinfo ends at the last "@", so a password holding an unencoded "@", "/" or ":" stays whole (SQLAlchemy's
    parser would cut it at its first "@" and read the rest as host and database).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme: not a URL the store opens, but a password in it is still hidden
        scheme, rest = "", url
    userinfo, at, location = rest.rpartition("@")
    return (scheme + sep, userinfo, location) if at else None


def _with_password(url: str, shown: str | None) -> str:
    """``url`` with its password (userinfo or ``password=`` parameter) replaced by ``shown``, or dropped if None."""
    parts = _userinfo(url)
    if parts is not None and ":" in parts[1]:
        head, userinfo, location = parts
        user = userinfo.split(":", 1)[0]
        url = f"{head}{user}@{location}" if shown is None else f"{head}{user}:{shown}@{location}"
    base, _, query = url.partition("?")
    parameters = []
    for parameter in filter(None, query.split("&")):
        if parameter.lower().startswith("password="):
            if shown is None:
                continue
            parameter = f"password={shown}"
        parameters.append(parameter)
    return base + ("?" + "&".join(parameters) if parameters else "")


def redact_url(url: str) -> str:
    """``url`` as every message and page shows it: a password (in the userinfo or a ``password=`` parameter) is ***."""
    return _with_password(url, "***")


def without_password(url: str) -> str:
    """``url`` with no password at all, as the store keeps it: a driver gets its URL from --db, $LAYERFORGE_DB or
    the config file, and PostgreSQL (libpq) reads a missing password from PGPASSWORD or ~/.pgpass."""
    return _with_password(url, None)


def _word_column(words: type[Status | StudyStatus]) -> Enum:
    """A status column: VARCHAR(20) holding the plain values (as stores always have), read back as members."""
    return Enum(
        words,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda enum: [member.value for member in enum],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class StudyRow(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    space: Mapped[str] = mapped_column(String(50))
    algorithm: Mapped[str] = mapped_column(String(50))
    status: Mapped[StudyStatus] = mapped_column(_word_column(StudyStatus), default=StudyStatus.CREATED)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    budget_evaluations: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_minutes: Mapped[float | None] = mapped_column(Float, nullable=True)
    objectives: Mapped[list[Any]] = mapped_column(JSON)  # [{"name": ..., "direction": ...}]
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    active_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # wall time spent running, over all runs


class CandidateRow(Base):
    __tablename__ = "candidates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    key: Mapped[str] = mapped_column(String(64))  # hash of the canonical form
    canonical: Mapped[str] = mapped_column(Text)
    genome: Mapped[dict[str, Any]] = mapped_column(JSON)
    formula: Mapped[str] = mapped_column(Text, default="")
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    origin: Mapped[str] = mapped_column(String(20))  # seed, sample, mutate, crossover, optuna
    seed_name: Mapped[str | None] = mapped_column(String(50), nullable=True)  # baseline name for seeds
    parents: Mapped[list[Any]] = mapped_column(JSON, default=list)
    mutation_op: Mapped[str | None] = mapped_column(String(50), nullable=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"), nullable=True)
    proposal: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # algorithm data (e.g. Optuna params)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (
        Index("ix_candidates_study_key", "study_id", "key"),
        Index("ix_candidates_study_fp", "study_id", "fingerprint"),
        Index("ix_candidates_study_id", "study_id", "id"),
    )


class EvaluationRow(Base):
    __tablename__ = "evaluations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    purpose: Mapped[str] = mapped_column(String(20), default="search")  # search, rerank
    status: Mapped[Status] = mapped_column(_word_column(Status))
    stage: Mapped[str | None] = mapped_column(String(30), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(100), nullable=True)
    queued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # worker-side compute
    stage_seconds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    objectives: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (
        Index("ix_evaluations_study_id", "study_id", "id"),
        Index("ix_evaluations_study_status", "study_id", "status"),
        Index("ix_evaluations_candidate", "candidate_id"),
    )


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), nullable=True)
    time: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (Index("ix_events_study_id", "study_id", "id"),)


class LeaseRow(Base):
    """Which driver runs a study, and until when its claim holds unless renewed (see ``search.lease``)."""

    __tablename__ = "study_leases"
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), primary_key=True)
    token: Mapped[str] = mapped_column(String(32))  # one per claim: renewals and releases match on it
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    machine: Mapped[str] = mapped_column(Text)  # host, boot and PID namespace: where ``pid`` can be checked
    process_start: Mapped[str] = mapped_column(String(40))  # tells a reused pid from the holder
    acquired_at: Mapped[datetime] = mapped_column(DateTime)
    renewed_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)  # set to the release time when the driver ends


def _sqlite_pragmas(read_only: bool) -> Callable[..., None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        if read_only:
            cur.execute("PRAGMA query_only=ON")
        else:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


class _SameFile:
    """Refuses connections once a writer's SQLite file was replaced or removed under it.

    A new connection would write another database (or create an empty one), and SQLite would truncate the WAL
    index that this process's older connections still map: a SIGBUS at their next checkpoint.
    """

    def __init__(self, path: Path):
        self.path = path
        self.identity: tuple[int, int] | None = None  # (device, inode) of the file the first connection opened

    def _current(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    def check(self, *_: Any) -> None:
        """Before a connection reads the file (connect) and before each use (checkout)."""
        current = self._current()
        if self.identity is None:
            self.identity = current  # None until the first connection has created the file
        elif current != self.identity:
            raise StoreError(
                f"store file {self.path} was replaced or removed while this driver had it open; "
                "nothing more is written to it"
            )


def make_engine(url: str, read_only: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout, and its folder is created if missing."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"store URL {redact_url(url)!r} is not a database URL; "
            "use sqlite:///path/to.db or postgresql+psycopg://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            path = Path(database)
            if read_only:
                if not path.exists():
                    raise StoreError(f"store file {path} does not exist; run a study first or pass --db")
                # Read-only dashboards open the file with mode=ro so they can never take a write lock.
                url = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        if database and database != ":memory:" and not read_only:
            same_file = _SameFile(Path(database))
            event.listen(engine, "connect", same_file.check)  # first: before a pragma reads the file
            event.listen(engine, "checkout", same_file.check)
        event.listen(engine, "connect", _sqlite_pragmas(read_only))
        return engine
    if backend == "postgresql":
        parts = _userinfo(url)
        if parts is not None and "@" in parts[1]:
            raise StoreError(
                f"the user name or password in store URL {redact_url(url)} holds an unencoded '@', so the URL "
                "cannot be read; percent-encode it (@ as %40, / as %2F, : as %3A: urllib.parse.quote(password, "
                "safe='')), or leave the password out and let PostgreSQL read it from PGPASSWORD or ~/.pgpass"
            )
        if parsed.drivername == "postgresql":
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=1800)
        if read_only:
            event.listen(engine, "connect", _pg_read_only)
        return engine
    raise StoreError(f"unsupported store backend {backend!r}; use sqlite:/// or postgresql://")


def _pg_read_only(dbapi_conn: Any, _record: Any) -> None:
    with dbapi_conn.cursor() as cur:
        cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    dbapi_conn.commit()


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
        row = self.read(lambda s: s.scalars(select(StudyRow).where(StudyRow.name == name)).first())
        if row is None:
            names = ", ".join(r.name for r in self.list_studies()) or "none"
            raise StoreError(f"no study named {name!r} in {self._safe_url()}; studies: {names}")
        return row

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
