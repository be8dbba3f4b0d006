"""Candidate: formula, the layer drawn, lineage, metrics per proxy, re-ranking, and the exported module."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, layers, queries, state
from dashboard.numbers import COLUMN_FORMAT, compact
from evaluators.splits import LABELS, TEST, labelled, on_split, split_of
from evaluators.vocabulary import Status
from search.export import warnings_of
from search.objectives import objectives_of
from search.results import mean_std, versus_best_baseline
from search.store import CandidateRow, EvaluationRow, StoreError, StudyRow
from spaces import Curve, GenomeError, Graph, Space, Table


def pick_candidate() -> int | None:
    wanted = state.query_id("id")
    chosen = st.number_input(
        "Candidate id", min_value=1, max_value=state.INT32_MAX, value=wanted, step=1, key="candidate_id"
    )
    if chosen is None:
        st.info("Enter a candidate id, or open one from a study's Pareto front or candidates table.")
        return None
    st.query_params["id"] = str(int(chosen))
    return int(chosen)


def search_evaluation(candidate_id: int) -> EvaluationRow | None:
    rows = queries.evaluations_of(state.store(), [candidate_id], "search")
    return rows[-1] if rows else None


def header(study: StudyRow, cand: CandidateRow, ev: EvaluationRow | None) -> None:
    st.title(f"Candidate {cand.id}" + (f" ({cand.seed_name})" if cand.seed_name else ""))
    st.page_link(state.PAGES["study"], label=f"study {study.name}", query_params={"study": study.name})
    facts = {
        "status": ev.status if ev else "-",
        "stage": (ev.stage or "-") if ev else "-",
        "origin": cand.origin,
        "generation": f"{cand.generation:,}",
        "worker seconds": compact(ev.seconds if ev else None),
    }
    st.markdown(" · ".join(f"{name} **{value}**" for name, value in facts.items()))  # words never cut off
    if ev and ev.reason:
        st.warning(ev.reason)
    for warning in warnings_of(ev.metrics if ev else {}):
        st.warning(f"kept with a warning: {warning}")
    if cand.duplicate_of:
        st.page_link(
            state.PAGES["candidate"],
            label=f"duplicate of {cand.duplicate_of}",
            query_params={"id": str(cand.duplicate_of)},
        )
    if ev and ev.objectives:
        st.write(" · ".join(f"**{labelled(k)}** {compact(v)}" for k, v in sorted(ev.objectives.items())))


def layer_view(study: StudyRow, cand: CandidateRow) -> None:
    space = layers.space_of(study)
    st.subheader("Formula")
    st.code(layers.formula(space, cand.genome, "text"), language=None, wrap_lines=True)
    latex = layers.formula(space, cand.genome, "latex")
    if latex:
        st.latex(latex)
    try:
        space.validate(cand.genome)
    except GenomeError as exc:
        st.warning(f"This genome does not validate, so it cannot be drawn: {exc}")
        return
    drawn = space.present(cand.genome)
    if isinstance(drawn, Curve):
        curve_plot(space, cand, drawn)
    elif isinstance(drawn, Graph):
        st.subheader("Graph")
        st.graphviz_chart(drawn.dot)
    elif isinstance(drawn, Table):
        st.subheader("Layers")
        st.dataframe(pd.DataFrame(drawn.rows), hide_index=True, key=f"{space.kind}_layers")


def curve_plot(space: Space, cand: CandidateRow, curve: Curve) -> None:
    """The candidate's f and f', the space's reference for scale, and the parent it was varied from."""
    series = [(f"c{cand.id}", curve, "solid")]
    reference = layers.reference_curve(space)
    if reference is not None:
        series.append((*reference, "dot"))
    parent = layers.first_parent(state.store(), cand)
    if parent is not None:
        drawn = layers.presentation(space, parent.genome)
        if isinstance(drawn, Curve):
            series.append((f"parent c{parent.id}", drawn, "dash"))
    st.plotly_chart(charts.curves(series), key="activation_plot", width="stretch")


def lineage(study: StudyRow, cand: CandidateRow) -> None:
    st.subheader("Lineage")
    chain = queries.ancestors(state.store(), cand)
    if not chain:
        st.caption(f"No ancestors: this candidate came from {cand.origin}.")
        return
    evaluations = {e.candidate_id: e for e in queries.evaluations_of(state.store(), [c.id for c in chain], "search")}
    names = [o["name"] for o in study.objectives]
    rows = []
    for c in chain:
        ev = evaluations.get(c.id)
        row = {
            "candidate": c.id,
            "generation": c.generation,
            "origin": c.origin,
            "mutation": c.mutation_op,
            "status": ev.status if ev else None,
            "formula": c.formula,
        }
        row.update({n: (ev.objectives.get(n) if ev else None) for n in names})
        rows.append(row)
    st.caption(f"Produced by **{cand.mutation_op or cand.origin}** from {', '.join(f'c{p}' for p in cand.parents)}.")
    number = st.column_config.NumberColumn(format=COLUMN_FORMAT)
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="lineage_table", column_config=dict.fromkeys(names, number))


def metrics(ev: EvaluationRow | None) -> None:
    """Metrics measured on one proxy as a metric x proxy table; those of the whole candidate (summed or averaged
    over proxies, or measured once) in a list of their own, rather than a mostly empty column."""
    st.subheader("Metrics per proxy")
    table = layers.metrics_by_proxy(ev.metrics if ev else {})
    if not table:
        st.caption("No metrics recorded.")
        return
    per_proxy = {m: v for m, v in table.items() if set(v) != {layers.NO_PROXY}}
    overall = {m: v[layers.NO_PROXY] for m, v in table.items() if layers.NO_PROXY in v}
    number = st.column_config.NumberColumn(format=COLUMN_FORMAT)
    if per_proxy:
        frame = pd.DataFrame.from_dict(per_proxy, orient="index").sort_index()
        frame = frame.drop(columns=layers.NO_PROXY, errors="ignore")
        st.dataframe(frame, key="metrics_table", column_config={c: number for c in frame.columns})
    if overall:
        st.caption("Over all proxies")
        st.dataframe(
            pd.Series(overall, name="value").sort_index().to_frame(),
            key="overall_metrics",
            column_config={"value": number},
        )


def training_curves(ev: EvaluationRow | None) -> None:
    """The search run's learning curve on each proxy it trained on (runs stored before curves were kept have none)."""
    metrics = ev.metrics if ev else {}
    curves = {
        key.partition("@")[2]: (values, float(metrics.get(f"steps@{key.partition('@')[2]}", len(values))))
        for key, values in metrics.items()
        if key.startswith("train_loss_curve@") and isinstance(values, list) and values
    }
    if curves:
        st.plotly_chart(charts.training_curves(curves), key="training_curves", width="stretch")


def rerank(study: StudyRow, cand: CandidateRow) -> None:
    """The candidate's re-ranking runs beside every re-ranked baseline's, and each objective's verdict against
    the baseline with the best mean on it (the comparison `layerforge rerank` prints)."""
    store = state.store()
    seeds = {c.id: c.seed_name for c in queries.seed_candidates(store, study.id) if c.id != cand.id}
    ids = [cand.id, *seeds]
    done = [e for e in queries.evaluations_of(store, ids, "rerank") if e.status == Status.DONE]
    if not any(e.candidate_id == cand.id for e in done):
        return
    st.subheader("Re-ranking")
    st.caption(
        "Test-split rows: trained on train + validation, scored on data no selection read (the final results). "
        "Validation rows: re-ranking runs from before splits, scored on the split the search selected on."
    )
    rows = []
    for cid in ids:
        label = f"c{cid}" if cid == cand.id else seeds[cid]
        for steps in sorted({e.steps or 0 for e in done if e.candidate_id == cid}):
            runs = [e for e in done if e.candidate_id == cid and (e.steps or 0) == steps]
            for name in sorted({k for e in runs for k in e.objectives}):
                mean, std = mean_std([e.objectives[name] for e in runs if name in e.objectives])
                rows.append(
                    {
                        "label": label,
                        "steps": str(steps) if steps else "search",
                        "objective": name,
                        "split": LABELS.get(split_of(name), "-"),
                        "mean": mean,
                        "std": std,
                        "n": sum(name in e.objectives for e in runs),
                    }
                )
    frame = pd.DataFrame(rows)
    for line in _versus_best_baselines(study, cand, seeds, done):
        st.markdown(f"- {line}")
    st.plotly_chart(charts.rerank_bars(frame), key="rerank_chart", width="stretch")
    number = st.column_config.NumberColumn(format=COLUMN_FORMAT)
    st.dataframe(frame, hide_index=True, key="rerank_table", column_config={"mean": number, "std": number})


def _versus_best_baselines(
    study: StudyRow, cand: CandidateRow, seeds: dict[int, str | None], done: list[EvaluationRow]
) -> list[str]:
    """One sentence per test-split objective, at the candidate's longest re-ranking budget."""
    steps = max(e.steps or 0 for e in done if e.candidate_id == cand.id)
    runs = [e for e in done if (e.steps or 0) == steps]
    lines = []
    for objective in objectives_of(study):
        name = on_split(objective.name, TEST)
        values = {e.seed: e.objectives[name] for e in runs if e.candidate_id == cand.id and name in e.objectives}
        baselines = {
            str(label): {e.seed: e.objectives[name] for e in runs if e.candidate_id == cid and name in e.objectives}
            for cid, label in seeds.items()
        }
        comparison = versus_best_baseline(values, baselines, objective.direction)
        if values and comparison is not None:
            lines.append(comparison.sentence(f"c{cand.id}", name))
    return lines


def download(cand: CandidateRow) -> None:
    try:
        file_name, source = state.exported_module(state.db_url(), cand.id)
    except Exception as exc:  # noqa: BLE001 - a genome the space cannot export is shown, not fatal
        st.error(f"Cannot export this candidate: {exc}")
        return
    st.download_button(f"Download {file_name}", source, file_name=file_name, mime="text/x-python", key="download")
    with st.expander("Exported module"):
        st.code(source, language="python")


candidate_id = pick_candidate()
if candidate_id is None:
    st.stop()
try:
    candidate = state.store().get_candidate(candidate_id)
except StoreError as exc:
    st.error(str(exc))
    st.stop()
owner = next(s for s in state.studies() if s.id == candidate.study_id)
evaluation = search_evaluation(candidate.id)
header(owner, candidate, evaluation)
layer_view(owner, candidate)
st.page_link(
    state.PAGES["compare"],
    label="Compare with its parent" if candidate.parents else "Compare",
    query_params={"ids": ",".join(str(i) for i in [candidate.id, *candidate.parents[:1]])},
)
download(candidate)
lineage(owner, candidate)
metrics(evaluation)
training_curves(evaluation)
rerank(owner, candidate)
