"""The store the dashboard reads, and the caches in front of it.

The store is opened read-only (SQLite ``mode=ro`` + ``query_only``; PostgreSQL read-only sessions), so the
dashboard can never lock, slow or change a running study. Query results are cached for a few seconds and
shared by every browser session; the per-study evaluation log grows incrementally.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import importance, layers, queries
from evaluators.config import INT32_MAX
from search.db_urls import store_url
from search.objectives import objectives_of
from search.results import stage_funnel
from search.store import Store, StoreError, StudyRow

LIVE_TTL_SECONDS = 3
REFRESH_SECONDS = 5
ID_TEXT = re.compile(r"[0-9]{1,10}")  # ids are the store's INTEGER keys

PAGES = {
    "studies": "views/studies.py",
    "study": "views/study.py",
    "candidate": "views/candidate.py",
    "compare": "views/compare.py",
    "explore": "views/explore.py",
}


def db_url() -> str:
    return store_url()


@st.cache_resource(show_spinner=False)
def _open_store(url: str) -> Store:
    return Store(url, read_only=True)


def store() -> Store:
    """The read-only store, or an error on the page (and the page stops) when it cannot be opened."""
    try:
        return _open_store(db_url())
    except StoreError as exc:
        st.error(f"Cannot open the store: {exc}")
        st.stop()
        raise


def studies() -> list[StudyRow]:
    return store().list_studies()


def study_named(name: str) -> StudyRow | None:
    return next((s for s in studies() if s.name == name), None)


@st.cache_resource(show_spinner=False, max_entries=32)
def _log(url: str, study_id: int, objective_names: tuple[str, ...]) -> queries.EvaluationLog:
    return queries.EvaluationLog(study_id, list(objective_names))


def evaluation_log(study: StudyRow) -> pd.DataFrame:
    """Every search evaluation of the study, shared across sessions, topped up with rows newer than the cursor."""
    names = tuple(o.name for o in objectives_of(study))
    return _log(db_url(), study.id, names).refresh(store())


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def study_labels(url: str) -> dict[int, tuple[list[str], str]]:
    """Tags and note (``layerforge tag``/``note``) of every labelled study, by study id."""
    return {study_id: (list(row.tags or []), row.note or "") for study_id, row in _open_store(url).labels().items()}


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def status_counts_by_study(url: str) -> dict[int, dict[str, int]]:
    return queries.status_counts_by_study(_open_store(url))


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def best_objectives(url: str, study_id: int) -> dict[str, float | None]:
    s = _open_store(url)
    return queries.best_objectives(s, next(r for r in s.list_studies() if r.id == study_id))


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def stage_rows(url: str, study_id: int) -> list[dict[str, Any]]:
    s = _open_store(url)
    return stage_funnel(s, next(r for r in s.list_studies() if r.id == study_id))


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def reason_funnel(url: str, study_id: int) -> pd.DataFrame:
    return queries.reason_funnel(_open_store(url), study_id)


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def worker_usage(url: str, study_id: int) -> pd.DataFrame:
    return queries.worker_usage(_open_store(url), study_id)


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def recent_runs(url: str, study_id: int) -> pd.DataFrame:
    return queries.recent_runs(_open_store(url), study_id)


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def candidate_table(
    url: str, study_id: int, objective_names: tuple[str, ...], tq: queries.TableQuery
) -> tuple[pd.DataFrame, int]:
    return queries.candidate_table(_open_store(url), study_id, list(objective_names), tq)


@st.cache_data(ttl=60, show_spinner=False)
def distinct_stages(url: str, study_id: int) -> list[str]:
    return queries.distinct_stages(_open_store(url), study_id)


@st.cache_data(ttl=60, show_spinner=False, max_entries=16)
def metrics_of(url: str, evaluation_ids: tuple[int, ...]) -> pd.DataFrame:
    """Numeric metrics of a sample of evaluations (finished ones never change, so a minute's cache is safe)."""
    return queries.metrics_of(_open_store(url), list(evaluation_ids))


@st.cache_data(ttl=60, show_spinner=False, max_entries=16)
def part_shares(url: str, study_id: int, top: tuple[int, ...], everyone: tuple[int, ...]) -> pd.DataFrame:
    """``importance.part_shares`` of these candidates, their genomes read once and taken apart by their space."""
    s = _open_store(url)
    study = next(r for r in s.list_studies() if r.id == study_id)
    genomes = queries.genomes_of(s, sorted(set(top) | set(everyone)))
    parts = importance.parts_by_candidate(layers.space_of(study), genomes)
    return importance.part_shares(parts, list(top), list(everyone))


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def exported_module(url: str, candidate_id: int) -> tuple[str, str]:
    """The candidate's exported .py (file name, source), as of its latest search evaluation."""
    s = _open_store(url)
    cand = s.get_candidate(candidate_id)
    study = next(r for r in s.list_studies() if r.id == cand.study_id)
    evaluations = queries.evaluations_of(s, [candidate_id], "search")
    return layers.exported_module(s, study, cand, evaluations[-1] if evaluations else None)


def open_candidate(candidate_id: int) -> None:
    st.switch_page(PAGES["candidate"], query_params={"id": str(candidate_id)})


def parse_ids(text: str) -> list[int]:
    """Candidate ids from comma-separated text, each once; ValueError says which part is no id."""
    ids: list[int] = []
    for part in filter(None, text.replace(" ", "").split(",")):
        if not ID_TEXT.fullmatch(part) or not 1 <= int(part) <= INT32_MAX:
            shown = part if len(part) <= 24 else part[:21] + "..."
            raise ValueError(f"{shown!r} is not a candidate id: ids are whole numbers from 1 to {INT32_MAX}")
        if int(part) not in ids:
            ids.append(int(part))
    return ids


def query_id(name: str) -> int | None:
    """The candidate id in query parameter ``name``, None if absent; anything else stops the page with a short error."""
    try:
        ids = parse_ids(st.query_params.get(name, ""))
        if len(ids) > 1:
            raise ValueError(f"?{name}= takes one candidate id, got {len(ids)}")
    except ValueError as exc:
        st.error(str(exc))
        st.stop()
    return ids[0] if ids else None
