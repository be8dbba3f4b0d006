"""Read-only SQL for the dashboard: aggregates, filters, sorting and paging run in the database, and the
per-study evaluation log is read incrementally (``id > cursor``), so a refresh never re-reads the whole study.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import String, and_, desc, func, select, type_coerce
from sqlalchemy.sql import ColumnElement, Select

from dashboard.numbers import compact
from evaluators.vocabulary import FINAL, FINISHED, Status, StudyStatus
from search.lease import leases, shown_status
from search.objectives import objectives_of, sign
from search.store import CandidateRow, EvaluationRow, EventRow, Store, StudyRow

E = EvaluationRow
C = CandidateRow


def objective_column(name: str) -> ColumnElement[float]:
    """One objective pulled out of the JSON column in SQL (json_extract on SQLite, ->> on PostgreSQL)."""
    return E.objectives[name].as_float()


def _as_text(column: Any) -> Any:
    """Timestamps come back as raw text on SQLite; pandas parses a whole column at once, far faster per row."""
    return type_coerce(column, String)


def _timestamps(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, errors="coerce", format="ISO8601")


def _frame(store: Store, query: Select[Any], columns: list[str]) -> pd.DataFrame:
    """Run a Core query into a frame from plain tuples: ORM row handling and pandas' per-row inspection of
    Row objects cost seconds at 100,000 rows; tuples cost milliseconds."""
    rows = store.read(lambda s: [tuple(r) for r in s.connection().execute(query)])
    return pd.DataFrame.from_records(rows, columns=columns)


# -- studies ---------------------------------------------------------------------------------------------


def status_counts_by_study(store: Store) -> dict[int, dict[str, int]]:
    """study id -> {status: count} of search evaluations, for every study in one grouped query."""
    q = select(E.study_id, E.status, func.count()).where(E.purpose == "search").group_by(E.study_id, E.status)
    out: dict[int, dict[str, int]] = {}
    for study_id, status, n in store.read(lambda s: s.execute(q).all()):
        out.setdefault(study_id, {})[status] = n
    return out


def best_objectives(store: Store, study: StudyRow) -> dict[str, float | None]:
    """Best value of each objective over finished, non-duplicate search evaluations."""
    objectives = objectives_of(study)
    if not objectives:
        return {}
    best = [(func.max if sign(o) > 0 else func.min)(objective_column(o.name)).label(o.name) for o in objectives]
    q = select(*best).where(E.study_id == study.id, E.purpose == "search", E.status == Status.DONE)
    row = store.read(lambda s: s.execute(q).one())
    return dict(zip([o.name for o in objectives], row, strict=True))


def latest_event(store: Store, study_id: int, kinds: tuple[str, ...]) -> EventRow | None:
    q = select(EventRow).where(EventRow.study_id == study_id, EventRow.kind.in_(kinds)).order_by(desc(EventRow.id))
    return store.read(lambda s: s.scalars(q.limit(1)).first())


def worker_count(store: Store, study_id: int) -> int:
    """Workers of the latest run, as the driver announced them."""
    event = latest_event(store, study_id, ("workers",))
    return len(event.data.get("workers", [])) if event is not None else 0


def study_status(store: Store, study: StudyRow, now: datetime) -> StudyStatus:
    """The status to show: a study stored as running whose driver is gone shows as interrupted."""
    return shown_status(study, leases(store).get(study.id), now)


def active_seconds(store: Store, study: StudyRow, now: datetime) -> float:
    """Wall time spent running; for a running study the current run is added (the row is updated at the end),
    up to now, or up to its driver's last sign of life if it was interrupted."""
    if study.status != StudyStatus.RUNNING:
        return study.active_seconds or 0.0
    lease = leases(store).get(study.id)
    if shown_status(study, lease, now) == StudyStatus.INTERRUPTED:
        now = lease.renewed_at
    event = latest_event(store, study.id, ("start", "resume"))
    since = event.time if event is not None else study.started_at
    return (study.active_seconds or 0.0) + max(0.0, (now - since).total_seconds() if since else 0.0)


# -- the candidates table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableQuery:
    """What the candidates table shows: filters, one sort key and one page."""

    statuses: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    objective: str | None = None  # filter/sort objective
    min_value: float | None = None
    max_value: float | None = None
    sort: str = "id"  # "id", "seconds", or an objective name
    descending: bool = True
    page: int = 0
    page_size: int = 50


def _table_filters(study_id: int, tq: TableQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [E.study_id == study_id, E.purpose == "search"]
    if tq.statuses:
        where.append(E.status.in_(tq.statuses))
    if tq.stages:
        where.append(E.stage.in_(tq.stages))
    if tq.objective is not None:
        col = objective_column(tq.objective)
        if tq.min_value is not None:
            where.append(col >= tq.min_value)
        if tq.max_value is not None:
            where.append(col <= tq.max_value)
    return where


def candidate_table(
    store: Store, study_id: int, objective_names: list[str], tq: TableQuery
) -> tuple[pd.DataFrame, int]:
    """One page of candidates with their search evaluation, and the number of rows matching the filters; the
    objective columns come right after the id, so they are on screen however wide the formulas are."""
    where = _table_filters(study_id, tq)
    total_q = select(func.count()).select_from(E).where(and_(*where))
    objective_cols = [objective_column(n).label(n) for n in objective_names]
    if tq.sort == "seconds":
        key: Any = E.seconds
    elif tq.sort in objective_names:
        key = objective_column(tq.sort)
    else:
        key = E.id
    order = [key.desc().nulls_last() if tq.descending else key.asc().nulls_last(), E.id.desc()]
    q: Select[Any] = (
        select(
            C.id.label("candidate"),
            *objective_cols,
            E.status,
            E.stage,
            C.formula,
            C.generation,
            C.origin,
            C.mutation_op,
            E.reason,
            E.seconds,
            E.worker,
        )
        .join(C, C.id == E.candidate_id)
        .where(and_(*where))
        .order_by(*order)
        .limit(tq.page_size)
        .offset(tq.page * tq.page_size)
    )

    def run(s: Any) -> tuple[list[Any], list[str], int]:
        result = s.execute(q)
        return result.all(), list(result.keys()), s.execute(total_q).scalar_one()

    rows, columns, total = store.read(run)
    return pd.DataFrame(rows, columns=columns), total


def distinct_stages(store: Store, study_id: int) -> list[str]:
    q = select(E.stage).where(E.study_id == study_id, E.purpose == "search", E.stage.is_not(None)).distinct()
    return sorted(store.read(lambda s: list(s.scalars(q))))


# -- where the compute went ------------------------------------------------------------------------------

_NUMBERS = re.compile(r"-?\d+(\.\d+)?(e-?\d+)?")
STOPPED_EARLY = (Status.REJECTED, Status.FAILED, Status.DUPLICATE)  # what the reason funnel groups


def reason_funnel(store: Store, study_id: int, top: int = 20) -> pd.DataFrame:
    """Rejections, failures and duplicates grouped by stage and reason. Numbers are folded to ``#`` so similar
    reasons merge; ``values`` gives the range each ``#`` took and ``example`` the most frequent reason verbatim."""
    q = (
        select(E.status, E.stage, E.reason, func.count(), func.coalesce(func.sum(E.seconds), 0.0))
        .where(E.study_id == study_id, E.purpose == "search", E.status.in_(STOPPED_EARLY))
        .group_by(E.status, E.stage, E.reason)
    )
    rows = store.read(lambda s: s.execute(q).all())
    frame = pd.DataFrame(rows, columns=["status", "stage", "example", "count", "seconds"])
    columns = ["status", "stage", "reason", "values", "count", "seconds", "example"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame["example"] = frame["example"].fillna("")
    frame["reason"] = frame["example"].map(lambda r: _NUMBERS.sub("#", r)[:140] or "(no reason)")
    frame["stage"] = frame["stage"].fillna("")
    keys = ["status", "stage", "reason"]
    grouped = frame.groupby(keys, as_index=False)[["count", "seconds"]].sum()
    by_count = frame.sort_values("count", ascending=False, kind="stable")
    examples = by_count.groupby(keys, as_index=False)["example"].first()
    values = frame.groupby(keys, as_index=False)["example"].agg(_number_ranges).rename(columns={"example": "values"})
    merged = grouped.merge(values, on=keys).merge(examples, on=keys)
    return merged.sort_values("count", ascending=False).head(top).reset_index(drop=True)[columns]


def _number_ranges(reasons: pd.Series) -> str:
    """The numbers a group of reasons holds, slot by slot: "3" when all agree, "0.1 - 97" when they vary."""
    slots: list[list[float]] = []
    for reason in reasons:
        for index, match in enumerate(_NUMBERS.finditer(reason)):
            if index == len(slots):
                slots.append([])
            slots[index].append(float(match.group()))
    shown = []
    for numbers in slots:
        low, high = compact(min(numbers)), compact(max(numbers))
        shown.append(low if low == high else f"{low} - {high}")
    return ", ".join(shown)


def worker_usage(store: Store, study_id: int) -> pd.DataFrame:
    """Per worker: evaluations, busy seconds, first start and last finish (utilization = busy / span)."""
    q = (
        select(
            E.worker,
            func.count(),
            func.coalesce(func.sum(E.seconds), 0.0),
            _as_text(func.min(E.started_at)),
            _as_text(func.max(E.finished_at)),
        )
        .where(E.study_id == study_id, E.purpose == "search", E.worker.is_not(None), E.status.in_(FINISHED))
        .group_by(E.worker)
        .order_by(E.worker)
    )
    rows = store.read(lambda s: s.execute(q).all())
    frame = pd.DataFrame(rows, columns=["worker", "evaluations", "busy_seconds", "first_start", "last_finish"])
    frame["first_start"] = _timestamps(frame["first_start"])
    frame["last_finish"] = _timestamps(frame["last_finish"])
    span = (frame["last_finish"] - frame["first_start"]).dt.total_seconds()
    frame["utilization"] = (frame["busy_seconds"] / span.where(span > 0)).clip(upper=1.0)
    return frame


def recent_runs(store: Store, study_id: int, limit: int = 300) -> pd.DataFrame:
    """The latest evaluations that ran on a worker (newest ``limit``), for the worker timeline."""
    q = (
        select(
            E.candidate_id,
            E.purpose,
            E.status,
            E.worker,
            _as_text(E.started_at),
            _as_text(E.finished_at),
        )
        .where(E.study_id == study_id, E.worker.is_not(None), E.started_at.is_not(None))
        .order_by(desc(E.id))
        .limit(limit)
    )
    rows = store.read(lambda s: s.execute(q).all())
    frame = pd.DataFrame(rows, columns=["candidate", "purpose", "status", "worker", "started", "finished"])
    frame["started"] = _timestamps(frame["started"])
    frame["finished"] = _timestamps(frame["finished"])
    return frame


# -- the incremental evaluation log ----------------------------------------------------------------------

LOG_COLUMNS = ["id", "candidate", "status", "stage", "seconds", "finished"]


@dataclass
class EvaluationLog:
    """Search evaluations of one study, read incrementally and shared by every dashboard session.

    Rows are written as "running" and updated in place when they finish, so the cursor stops before the
    oldest row that is still in flight: finished rows are read once, in-flight ones until they finish.
    """

    study_id: int
    objective_names: list[str]
    cursor: int = 0
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def refresh(self, store: Store) -> pd.DataFrame:
        with self.lock:
            new = self._read_after(store, self.cursor)
            if new.empty:
                return self.frame
            in_flight = ~new["status"].isin(FINAL)
            if in_flight.any():
                first = int(in_flight.to_numpy().argmax())
                self.cursor = int(new["id"].iloc[first]) - 1
                new = new.iloc[:first]
            else:
                self.cursor = int(new["id"].iloc[-1])
            if not new.empty:
                self.frame = new if self.frame.empty else pd.concat([self.frame, new], ignore_index=True)
            return self.frame

    def _read_after(self, store: Store, after_id: int) -> pd.DataFrame:
        q = (
            select(
                E.id,
                E.candidate_id,
                E.status,
                E.stage,
                E.seconds,
                _as_text(E.finished_at),
                *(objective_column(n) for n in self.objective_names),
            )
            .where(E.study_id == self.study_id, E.purpose == "search", E.id > after_id)
            .order_by(E.id)
        )
        frame = _frame(store, q, LOG_COLUMNS + self.objective_names)
        for name in ["seconds", *self.objective_names]:
            frame[name] = frame[name].astype(float)
        frame["finished"] = _timestamps(frame["finished"])
        return frame


# -- one candidate ---------------------------------------------------------------------------------------


def evaluations_of(store: Store, candidate_ids: list[int], purpose: str) -> list[EvaluationRow]:
    q = select(E).where(E.candidate_id.in_(candidate_ids), E.purpose == purpose).order_by(E.id)
    return store.read(lambda s: list(s.scalars(q)))


def candidates_by_id(store: Store, candidate_ids: list[int]) -> dict[int, CandidateRow]:
    q = select(C).where(C.id.in_(candidate_ids))
    return {c.id: c for c in store.read(lambda s: list(s.scalars(q)))}


def ancestors(store: Store, candidate: CandidateRow, limit: int = 30) -> list[CandidateRow]:
    """Parents, grandparents, ... breadth first (each id once), newest generation first."""
    seen: set[int] = {candidate.id}
    frontier = [int(p) for p in candidate.parents or []]
    out: list[CandidateRow] = []
    while frontier and len(out) < limit:
        found = candidates_by_id(store, [p for p in frontier if p not in seen])
        seen.update(frontier)
        level = [found[p] for p in frontier if p in found]
        out.extend(level)
        frontier = [int(p) for c in level for p in c.parents or [] if int(p) not in seen]
    return out[:limit]


def genomes_of(store: Store, candidate_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The genomes of the given candidates (the few hundred or thousand an analysis samples), by id."""
    q = select(C.id, C.genome).where(C.id.in_(candidate_ids))
    return dict(store.read(lambda s: [tuple(r) for r in s.execute(q)]))


def metrics_of(store: Store, evaluation_ids: list[int]) -> pd.DataFrame:
    """The numeric metrics of the given evaluations, one column per metric, indexed by evaluation id."""
    q = select(E.id, E.metrics).where(E.id.in_(evaluation_ids))
    rows = store.read(lambda s: [tuple(r) for r in s.execute(q)])
    numeric = {ev_id: {k: float(v) for k, v in (metrics or {}).items() if _is_number(v)} for ev_id, metrics in rows}
    return pd.DataFrame.from_dict(numeric, orient="index").sort_index(axis=1)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def labels(store: Store, candidate_ids: list[int]) -> pd.DataFrame:
    """Formula and baseline name of the given candidates (the few a chart shows), indexed by candidate id."""
    q = select(C.id, C.formula, C.seed_name).where(C.id.in_(candidate_ids))
    return _frame(store, q, ["candidate", "formula", "seed_name"]).set_index("candidate")


def seed_ids(store: Store, study_id: int) -> list[int]:
    """Candidates injected as named baselines (ReLU, GELU, ...)."""
    q = select(C.id).where(C.study_id == study_id, C.seed_name.is_not(None)).order_by(C.id)
    return store.read(lambda s: list(s.scalars(q)))


def seed_candidates(store: Store, study_id: int) -> list[CandidateRow]:
    """The study's named baselines (its seeds), first proposal of each name."""
    q = select(C).where(C.study_id == study_id, C.seed_name.is_not(None)).order_by(C.id)
    first: dict[str, CandidateRow] = {}
    for cand in store.read(lambda s: list(s.scalars(q))):
        first.setdefault(cand.seed_name, cand)
    return list(first.values())


def seed_candidate(store: Store, study_id: int, seed_name: str) -> CandidateRow | None:
    q = select(C).where(C.study_id == study_id, C.seed_name == seed_name).order_by(C.id).limit(1)
    return store.read(lambda s: s.scalars(q).first())
