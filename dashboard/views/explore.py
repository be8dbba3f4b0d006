"""Explore: the history of every evaluation, parallel coordinates, slices, and which parts the best share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import analysis, explore_charts, state, widgets
from dashboard.numbers import COLUMN_FORMAT
from evaluators.config import Objective
from evaluators.vocabulary import FINISHED
from search.objectives import objectives_of
from search.store import StudyRow

MAX_LINES = 2000  # candidates drawn in parallel coordinates and slices (a sample, the front always in)
MAX_TOP = 300  # best candidates whose parts are counted
MAX_EVERYONE = 1000  # evaluated candidates sampled for the parts' base rate
DEFAULT_DIMENSIONS = 8
BOOKKEEPING = {"id", "candidate", "status", "stage", "finished", "number"}  # log columns that are no dimension


def history_tab(log: pd.DataFrame, objectives: list[Objective]) -> None:
    by = st.selectbox("objective", [o.name for o in objectives], key="history_objective")
    objective = next(o for o in objectives if o.name == by)
    widgets.chart_opening_candidates(explore_charts.history(analysis.history(log, objective), objective), "history")


def sampled_points(done: pd.DataFrame, objectives: list[Objective]) -> pd.DataFrame:
    """A sample of the finished candidates (the Pareto front always in) with their metrics from the store."""
    front = analysis.pareto_front(done, objectives)
    points = pd.concat([front, analysis.sample(done, MAX_LINES)]).drop_duplicates("id")
    metrics = state.metrics_of(state.db_url(), tuple(int(i) for i in points["id"]))
    return points.join(metrics.drop(columns=[c for c in metrics.columns if c in points.columns]), on="id")


def dimensions_of(points: pd.DataFrame, objectives: list[Objective]) -> list[str]:
    """Objectives first, then seconds and every metric, those that vary."""
    names = [o.name for o in objectives]
    others = ["seconds", *(c for c in points.columns if c not in {*names, "seconds", *BOOKKEEPING})]
    return [*names, *(c for c in others if points[c].nunique(dropna=True) > 1)]


def parallel_tab(points: pd.DataFrame, objectives: list[Objective], dimensions: list[str]) -> None:
    chosen = st.multiselect(
        "dimensions", dimensions, default=dimensions[:DEFAULT_DIMENSIONS], key="parallel_dimensions"
    )
    color = st.selectbox("colour by", [o.name for o in objectives], key="parallel_color")
    if len(chosen) < 2:
        st.info("Pick at least two dimensions.")
        return
    objective = next(o for o in objectives if o.name == color)
    st.plotly_chart(explore_charts.parallel_coordinates(points, chosen, objective), key="parallel", width="stretch")
    st.caption("Drag along an axis to keep only the lines inside a range; several axes combine.")


def slices_tab(points: pd.DataFrame, objectives: list[Objective], dimensions: list[str]) -> None:
    left, right = st.columns([1, 3])
    by = left.selectbox("objective", [o.name for o in objectives], key="slice_objective")
    others = [d for d in dimensions if d != by]
    against = right.multiselect("against", others, default=others[: DEFAULT_DIMENSIONS - 2], key="slice_against")
    if not against:
        st.info("Pick at least one dimension to plot the objective against.")
        return
    objective = next(o for o in objectives if o.name == by)
    st.plotly_chart(explore_charts.slices(points, objective, against), key="slices", width="stretch")


def importance_tab(study: StudyRow, log: pd.DataFrame, done: pd.DataFrame, objectives: list[Objective]) -> None:
    left, right = st.columns(2)
    by = left.selectbox("best candidates by", [*(o.name for o in objectives), "Pareto front"], key="top_by")
    share = right.slider(
        "best share", 0.01, 0.5, 0.1, step=0.01, format="%.2f", key="top_share", disabled=by == "Pareto front"
    )
    top = analysis.top_rows(done, objectives, by, share, MAX_TOP)
    evaluated = log[log["status"].isin(FINISHED)]
    everyone = pd.concat([top, analysis.sample(evaluated, MAX_EVERYONE)]).drop_duplicates("candidate")
    top_ids = tuple(int(i) for i in top["candidate"])
    shares = state.part_shares(state.db_url(), study.id, top_ids, tuple(int(i) for i in everyone["candidate"]))
    label = "Pareto front" if by == "Pareto front" else f"best {len(top_ids):,} by {by}"
    st.caption(
        f"Parts ({study.space} space) held by the {label} ({len(top_ids):,} candidates), beside their share among "
        f"{len(everyone):,} evaluated candidates{' (a sample)' if len(evaluated) > len(everyone) else ''}: "
        "a part well above its base rate goes with good results."
    )
    if shares.empty:
        st.info("No part is shared by the best candidates yet.")
        return
    st.plotly_chart(explore_charts.importance(shares, label), key="importance", width="stretch")
    share_column = st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")
    st.dataframe(
        shares,
        hide_index=True,
        key="importance_table",
        column_config={
            "part": st.column_config.TextColumn("part", width="large"),
            "top share": share_column,
            "all share": share_column,
            "lift": st.column_config.NumberColumn("lift", format=COLUMN_FORMAT, help="top share / all share"),
        },
    )


st.title("Explore")
chosen = widgets.pick_study()
if chosen is None:
    st.stop()
widgets.study_caption(chosen)
study_objectives = objectives_of(chosen)
evaluations = state.evaluation_log(chosen)
if evaluations.empty:
    st.info("No evaluation has finished yet.")
    st.stop()
evaluations = evaluations.assign(number=np.arange(1, len(evaluations) + 1))
finished = analysis.scored(evaluations, study_objectives)
history, parallel, slices, parts = st.tabs(["History", "Parallel coordinates", "Slices", "Parts of the best"])
with history:
    history_tab(evaluations, study_objectives)
if finished.empty:
    for tab in (parallel, slices, parts):
        tab.info("No candidate has finished with all objectives yet: every one so far failed or was rejected.")
    st.stop()
sample = sampled_points(finished, study_objectives)
dims = dimensions_of(sample, study_objectives)
with parallel:
    parallel_tab(sample, study_objectives, dims)
with slices:
    slices_tab(sample, study_objectives, dims)
with parts:
    importance_tab(chosen, evaluations, finished, study_objectives)
