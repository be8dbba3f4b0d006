"""Study: live progress, best-so-far curves, Pareto front, candidates, rejection funnel, workers."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import analysis, charts, queries, state, widgets
from dashboard.numbers import COLUMN_FORMAT, compact
from evaluators.vocabulary import FINAL, FINISHED, IN_FLIGHT, Status, StudyStatus
from search.objectives import objectives_of, sign
from search.store import StudyRow, utcnow

SORT_HELP = "Objectives sort best first, id newest first, seconds slowest first; reverse flips the order."


def live_panel(study: StudyRow) -> None:
    """Everything that moves while the study runs; re-run on its own every few seconds."""
    study = state.study_named(study.name) or study
    log = state.evaluation_log(study)
    counts = state.status_counts_by_study(state.db_url()).get(study.id, {})
    finished = sum(counts.get(s, 0) for s in FINISHED)
    hours = queries.active_seconds(state.store(), study, utcnow()) / 3600
    budget = f" / {study.budget_evaluations:,}" if study.budget_evaluations else ""
    first, second = st.columns(4), st.columns(4)  # two rows of four: every tile wide enough for its value
    first[0].metric("status", str(queries.study_status(state.store(), study, utcnow())))
    first[1].metric("finished", f"{finished:,}{budget}")
    first[2].metric("in flight", counts.get(Status.RUNNING, 0) + counts.get(Status.PENDING, 0))
    first[3].metric("evaluations/hour", compact(finished / hours) if hours > 0 else "-")
    for col, status in zip(second, (*FINISHED, Status.DUPLICATE), strict=True):
        col.metric(str(status), f"{counts.get(status, 0):,}")
    if study.budget_evaluations:
        st.progress(min(1.0, finished / study.budget_evaluations))

    objectives = objectives_of(study)
    done = analysis.scored(log, objectives)
    if done.empty:
        st.info(
            "No candidate has finished with all objectives yet"
            + (": every one so far failed or was rejected." if finished else ".")
        )
        return
    x = st.radio("Best so far against", ["evaluation", "minutes"], horizontal=True, key="curve_x")
    start = pd.Timestamp(study.started_at) if study.started_at else None
    st.plotly_chart(charts.best_so_far(done, objectives, x, start), key="best_curve", width="stretch")

    front = analysis.pareto_front(done, objectives)
    axes = [o.name for o in objectives] + ["seconds"]
    left, right = st.columns(2)
    x_axis = left.selectbox("x axis", axes, index=len(axes) - 1 if len(objectives) == 1 else 0, key="pareto_x")
    y_axis = right.selectbox("y axis", axes, index=0 if len(objectives) == 1 else 1, key="pareto_y")
    cloud = analysis.sample(done, charts.MAX_CLOUD_POINTS)
    seeds = done[done["candidate"].isin(queries.seed_ids(state.store(), study.id))]
    shown = sorted(set(cloud["candidate"]) | set(front["candidate"]) | set(seeds["candidate"]))
    labels = queries.labels(state.store(), [int(i) for i in shown])
    figure = charts.pareto_scatter(cloud, front, seeds, labels, x_axis, y_axis, len(done))
    widgets.chart_opening_candidates(figure, "pareto")
    st.plotly_chart(charts.distributions(done, objectives), key="distributions", width="stretch")


def candidates_tab(study: StudyRow) -> None:
    """One page of candidates, sorted in SQL: by default best first by the first objective (newest first while the
    study runs, to watch it live); the objective columns come first and stay pinned while the wide ones scroll."""
    objectives = objectives_of(study)
    names = tuple(o.name for o in objectives)
    url = state.db_url()
    c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
    statuses = c1.multiselect("status", [str(s) for s in (*FINAL, *IN_FLIGHT)], key="tbl_status")
    stages = c2.multiselect("stage", state.distinct_stages(url, study.id), key="tbl_stage")
    keys = [*names, "id", "seconds"]
    live = study.status == StudyStatus.RUNNING
    sort = c3.selectbox("sort by", keys, index=keys.index("id") if live else 0, key="tbl_sort", help=SORT_HELP)
    reverse = c4.toggle("reverse", value=False, key="tbl_reverse")
    f1, f2, f3, f4 = st.columns([2, 1, 1, 1])
    objective = f1.selectbox("filter objective", ["(none)", *names], key="tbl_obj")
    low = f2.number_input("min", value=None, key="tbl_min", format="%.4g")
    high = f3.number_input("max", value=None, key="tbl_max", format="%.4g")
    page_size = 50
    page = int(f4.number_input("page", min_value=1, value=1, step=1, key="tbl_page")) - 1
    best_high = next((sign(o) > 0 for o in objectives if o.name == sort), True)  # id, seconds: newest, slowest
    tq = queries.TableQuery(
        statuses=tuple(statuses),
        stages=tuple(stages),
        objective=None if objective == "(none)" else objective,
        min_value=low,
        max_value=high,
        sort=sort,
        descending=best_high != reverse,
        page=page,
        page_size=page_size,
    )
    rows, total = state.candidate_table(url, study.id, names, tq)
    first = page * page_size
    st.caption(
        f"{total:,} candidates match; showing {min(first + 1, total):,}-{min(first + len(rows), total):,} "
        f"(page {page + 1} of {max(1, -(-total // page_size)):,}). Select a row to open the candidate."
    )
    number = st.column_config.NumberColumn(format=COLUMN_FORMAT)
    event = st.dataframe(
        rows,
        hide_index=True,
        key="candidates_table",
        on_select="rerun",
        selection_mode="single-row",
        height=420,
        column_config={
            "candidate": st.column_config.NumberColumn("candidate", pinned=True),
            **{name: st.column_config.NumberColumn(name, format=COLUMN_FORMAT, pinned=True) for name in names},
            "seconds": number,
            "formula": st.column_config.TextColumn("formula", width="large"),
        },
    )
    if event.selection.rows:
        state.open_candidate(int(rows["candidate"].iloc[event.selection.rows[0]]))


def funnel_tab(study: StudyRow) -> None:
    url = state.db_url()
    stages = state.stage_rows(url, study.id)
    if not stages:
        st.info("No evaluation has finished yet.")
        return
    st.plotly_chart(charts.funnel(stages), key="funnel", width="stretch")
    st.dataframe(
        pd.DataFrame(stages),
        hide_index=True,
        key="funnel_table",
        column_config={"seconds": st.column_config.NumberColumn("worker seconds", format=COLUMN_FORMAT)},
    )
    st.subheader("By reason")
    reasons = state.reason_funnel(url, study.id)
    if reasons.empty:
        st.caption("Nothing was rejected, failed or deduplicated.")
    else:
        st.dataframe(
            reasons,
            hide_index=True,
            key="reason_table",
            column_config={
                "reason": st.column_config.TextColumn("reason", help="numbers folded to #, so similar reasons merge"),
                "values": st.column_config.TextColumn("values of #", help="the range each # took, in order"),
                "seconds": st.column_config.NumberColumn("worker seconds", format=COLUMN_FORMAT),
                "example": st.column_config.TextColumn("most frequent reason", width="large"),
            },
        )


def workers_tab(study: StudyRow) -> None:
    url = state.db_url()
    usage = state.worker_usage(url, study.id)
    if usage.empty:
        st.info("No evaluation has run on a worker yet.")
        return
    st.dataframe(
        usage,
        hide_index=True,
        key="worker_table",
        column_config={
            "utilization": st.column_config.ProgressColumn(
                "utilization", min_value=0.0, max_value=1.0, format="percent"
            ),
            "busy_seconds": st.column_config.NumberColumn("busy seconds", format="%.1f"),
        },
    )
    runs = state.recent_runs(url, study.id)
    st.plotly_chart(charts.worker_timeline(runs, pd.Timestamp(utcnow())), key="timeline", width="stretch")


st.title("Study")
chosen = widgets.pick_study()
if chosen is None:
    st.stop()
widgets.study_caption(chosen)
st.page_link(
    state.PAGES["explore"],
    label="Explore: history of every evaluation, parallel coordinates, slices, parts of the best",
    icon=":material/insights:",
    query_params={"study": chosen.name},
)
live = st.fragment(live_panel, run_every=state.REFRESH_SECONDS if chosen.status == StudyStatus.RUNNING else None)
live(chosen)
candidates, funnel, workers = st.tabs(["Candidates", "Rejection funnel", "Workers"])
with candidates:
    candidates_tab(chosen)
with funnel:
    funnel_tab(chosen)
with workers:
    workers_tab(chosen)
