"""Compare: two to four candidates side by side (formulas, the layers drawn, objectives and metrics)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, layers, queries, state
from dashboard.numbers import compact
from search.store import CandidateRow, StudyRow
from spaces import Curve, Graph, Presentation, Space, Table

MIN_CANDIDATES, MAX_CANDIDATES = 2, 4
DASHES = ["solid", "dash", "dot", "dashdot"]


def pick_ids() -> list[int]:
    text = st.text_input(
        "Candidate ids (2 to 4, comma separated)", value=st.query_params.get("ids", ""), key="compare_ids"
    )
    try:
        ids = state.parse_ids(text)
    except ValueError as exc:
        st.error(str(exc))
        st.stop()
    st.query_params["ids"] = ",".join(map(str, ids))
    return ids


def column(study: StudyRow, cand: CandidateRow, space: Space, drawn: Presentation | None) -> None:
    st.page_link(state.PAGES["candidate"], label=f"Candidate {cand.id}", query_params={"id": str(cand.id)})
    st.caption(f"study {study.name} · {cand.origin}" + (f" ({cand.seed_name})" if cand.seed_name else ""))
    st.code(layers.formula(space, cand.genome, "text"), language=None, wrap_lines=True)
    if isinstance(drawn, Graph):
        st.graphviz_chart(drawn.dot)
    elif isinstance(drawn, Table):
        st.dataframe(pd.DataFrame(drawn.rows), hide_index=True, key=f"{space.kind}_{cand.id}")


def formulas(chosen: list[tuple[StudyRow, CandidateRow]], spaces: dict[int, Space]) -> None:
    """Each LaTeX formula at the page's full width (a column's quarter clips a long one)."""
    for study, cand in chosen:
        latex = layers.formula(spaces[study.id], cand.genome, "latex")
        if latex:
            st.markdown(f"**c{cand.id}**")
            st.latex(latex)


def curve_series(
    chosen: list[tuple[StudyRow, CandidateRow]], spaces: dict[int, Space], drawn: dict[int, Presentation | None]
) -> list[tuple[str, Curve, str]]:
    """Every candidate drawn as a curve, each in its own dash, then the references of their spaces (each name
    once) for scale."""
    series: list[tuple[str, Curve, str]] = []
    references: dict[str, Curve] = {}
    for study, cand in chosen:
        curve = drawn[cand.id]
        if isinstance(curve, Curve):
            series.append((f"c{cand.id}", curve, DASHES[len(series) % len(DASHES)]))
            reference = layers.reference_curve(spaces[study.id])
            if reference is not None:
                references.setdefault(*reference)
    return series + [(name, reference_curve, "dot") for name, reference_curve in references.items()]


def same_curves(series: list[tuple[str, Curve, str]]) -> list[list[str]]:
    """Groups of labels whose curves are the same (f and f' within float noise): one line hides the other."""
    groups: list[list[tuple[str, Curve]]] = []
    for label, curve, _ in series:
        for group in groups:
            first = group[0][1]
            if np.allclose(first.y, curve.y, equal_nan=True) and np.allclose(first.dy, curve.dy, equal_nan=True):
                group.append((label, curve))
                break
        else:
            groups.append([(label, curve)])
    return [[label for label, _ in group] for group in groups if len(group) > 1]


def metric_table(chosen: list[tuple[StudyRow, CandidateRow]]) -> pd.DataFrame:
    evaluations = {
        e.candidate_id: e for e in queries.evaluations_of(state.store(), [c.id for _, c in chosen], "search")
    }
    columns = {}
    for _, cand in chosen:
        ev = evaluations.get(cand.id)
        values: dict[str, object] = {"status": ev.status if ev else None, "stage": ev.stage if ev else None}
        if ev is not None:
            values.update({f"objective {k}": compact(v) for k, v in sorted(ev.objectives.items())})
            numeric = {k: v for k, v in ev.metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
            values.update({k: compact(v) for k, v in sorted(numeric.items())})
        columns[f"c{cand.id}"] = values
    return pd.DataFrame(columns).fillna("-").astype(str)


st.title("Compare")
ids = pick_ids()
if not MIN_CANDIDATES <= len(ids) <= MAX_CANDIDATES:
    st.info(f"Enter {MIN_CANDIDATES} to {MAX_CANDIDATES} candidate ids, e.g. `12, 40`.")
    st.stop()
found = queries.candidates_by_id(state.store(), ids)
missing = [i for i in ids if i not in found]
if missing:
    st.error(f"No candidate with id {', '.join(map(str, missing))} in this store.")
    st.stop()
studies = {s.id: s for s in state.studies()}
chosen = [(studies[found[i].study_id], found[i]) for i in ids]
spaces = {study.id: layers.space_of(study) for study, _ in chosen}
drawn = {cand.id: layers.presentation(spaces[study.id], cand.genome) for study, cand in chosen}
for (study, cand), col in zip(chosen, st.columns(len(chosen)), strict=True):
    with col:
        column(study, cand, spaces[study.id], drawn[cand.id])
formulas(chosen, spaces)
curves = curve_series(chosen, spaces, drawn)
if curves:
    st.plotly_chart(charts.curves(curves), key="compare_plot", width="stretch")
    for group in same_curves(curves):
        st.caption(f"{' and '.join(group)} draw the same curve: the thinner line runs over the thicker one.")
st.subheader("Objectives and metrics")
st.dataframe(metric_table(chosen), key="compare_metrics")
