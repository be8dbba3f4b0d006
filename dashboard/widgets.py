"""Inputs several pages share: the study picker, kept in the page's ``?study=`` query parameter, and charts
whose points open their candidate."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from dashboard import state
from evaluators.splits import LABELS, split_of
from search.objectives import objectives_of
from search.store import StudyRow


def pick_study() -> StudyRow | None:
    """The study named in ``?study=`` (the newest when none is named), chosen in a select box; None, with a hint,
    when the store has no study yet."""
    studies = state.studies()
    if not studies:
        st.info("No studies in this store yet. Start one with `layerforge launch configs/quickstart.yaml`.")
        return None
    names = [s.name for s in studies]
    wanted = st.query_params.get("study")
    if wanted is not None and wanted not in names:
        shown = wanted if len(wanted) <= 60 else wanted[:57] + "..."
        st.error(f"No study named {shown!r} in this store; pick one below.")
        index = None
    else:
        index = names.index(wanted) if wanted is not None else len(names) - 1
    name = st.selectbox("Study", names, index=index, key="study_name")
    if name is None:
        st.stop()
    st.query_params["study"] = name
    return studies[names.index(name)]


def study_caption(study: StudyRow) -> None:
    """Under a study page's title: space, algorithm, objectives with their split and seed; its tags and note."""
    objectives = ", ".join(
        f"{o.name} ({o.direction}, {LABELS.get(split_of(o.name), 'no split')})" for o in objectives_of(study)
    )
    st.caption(
        f"space **{study.space}** · algorithm **{study.algorithm}** · objectives {objectives} · seed {study.seed}"
    )
    tags, note = state.study_labels(state.db_url()).get(study.id, ([], ""))
    if tags:
        st.markdown(" ".join(f":blue-badge[{tag}]" for tag in tags))  # tags are letters, digits and _ . : / + -
    if note:
        st.info(note, icon=":material/sticky_note_2:")


def chart_opening_candidates(figure: go.Figure, key: str) -> None:
    """A chart whose clicked point opens that candidate (its points carry the candidate id as ``customdata``)."""
    event = st.plotly_chart(figure, key=key, on_select="rerun", selection_mode="points", width="stretch")
    points = event.selection.points if event else []
    if points:
        state.open_candidate(int(points[0]["customdata"]))
