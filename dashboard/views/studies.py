"""Studies: one row per study with its progress, best objectives, throughput and rejection rate."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import queries, state
from dashboard.numbers import compact
from evaluators.vocabulary import FINISHED, Status
from search.lease import leases, shown_status
from search.store import utcnow


def study_rows() -> pd.DataFrame:
    store, url, now = state.store(), state.db_url(), utcnow()
    counts = state.status_counts_by_study(url)
    held = leases(store)
    labels = state.study_labels(url)
    rows = []
    for study in state.studies():
        c = counts.get(study.id, {})
        tags, note = labels.get(study.id, ([], ""))
        finished = sum(c.get(s, 0) for s in FINISHED)
        best = state.best_objectives(url, study.id)
        hours = queries.active_seconds(store, study, now) / 3600
        rows.append(
            {
                "study": study.name,
                "tags": tags,
                "status": shown_status(study, held.get(study.id), now),
                "space": study.space,
                "algorithm": study.algorithm,
                "finished": finished,
                "budget": study.budget_evaluations,
                "progress": finished / study.budget_evaluations if study.budget_evaluations else None,
                "best": ", ".join(f"{k} {compact(v)}" for k, v in best.items()),
                "evaluations/hour": round(finished / hours, 1) if hours > 0 else None,
                "rejection rate": c.get(Status.REJECTED, 0) / finished if finished else None,
                str(Status.FAILED): c.get(Status.FAILED, 0),
                "duplicates": c.get(Status.DUPLICATE, 0),
                "workers": queries.worker_count(store, study.id),
                "started": study.started_at,
                "ended": study.finished_at,
                "note": note,
            }
        )
    return pd.DataFrame(rows)


st.title("Studies")
frame = study_rows()
if frame.empty:
    st.info("No studies in this store yet. Start one with `layerforge launch configs/quickstart.yaml`.")
    st.stop()
event = st.dataframe(
    frame,
    hide_index=True,
    key="studies_table",
    on_select="rerun",
    selection_mode="single-row",
    column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
        "rejection rate": st.column_config.NumberColumn("rejection rate", format="percent"),
        "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm"),
        "ended": st.column_config.DatetimeColumn("ended", format="YYYY-MM-DD HH:mm"),
        "tags": st.column_config.ListColumn("tags"),
        "note": st.column_config.TextColumn("note", width="large"),
    },
)
st.caption("Select a row to open the study. Times are UTC.")
if event.selection.rows:
    st.switch_page(state.PAGES["study"], query_params={"study": frame["study"].iloc[event.selection.rows[0]]})
for name in frame["study"]:
    st.page_link(state.PAGES["study"], label=f"Open {name}", query_params={"study": name})
