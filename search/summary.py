"""The end-of-study report: top candidates, baselines, where the compute went, throughput, export.

The search's tables show validation-split numbers, labelled as what selection saw; the final table shows only
test-split numbers (from `layerforge rerank`), which nothing selects on.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from evaluators.vocabulary import FINISHED, Stage
from search.lease import leases, shown_status
from search.objectives import objectives_of
from search.results import (
    FinalResult,
    Scored,
    baselines,
    final_results,
    mean_std,
    pareto_front,
    rejection_funnel,
    scored_candidates,
    test_names,
    top_k,
)
from search.store import Store, StudyRow

PARETO_ROWS = 20  # the front table shows at most this many members, best first by the first objective
SELECTION = "validation split: what selection saw, not a final result"


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def evaluations_per_minute(store: Store, study: StudyRow) -> float:
    counts = store.count_by_status(study.id)
    finished = sum(counts.get(status, 0) for status in FINISHED)
    return finished / (study.active_seconds / 60) if study.active_seconds else 0.0


def _candidate_table(title: str, rows: list[Scored], names: list[str]) -> Table:
    """One row per candidate: id (and baseline name), formula, objectives."""
    table = Table(title=title)
    table.add_column("id", justify="right")
    table.add_column("formula")
    for n in names:
        table.add_column(n, justify="right")
    for s in rows:
        label = _label(s.candidate.id, s.candidate.seed_name)
        table.add_row(label, s.candidate.formula, *(_fmt(s.evaluation.objectives.get(n)) for n in names))
    return table


def _label(candidate_id: int, seed_name: str | None) -> str:
    return f"{candidate_id} ({seed_name})" if seed_name else str(candidate_id)


def _final_table(study: StudyRow, results: list[FinalResult]) -> Table:
    """Test-split mean ± std over seeds per candidate and training budget, best first."""
    names = test_names(study)
    table = Table(title="Final results: test split (never selected on), mean ± std over seeds")
    for col in ("id", "formula", "steps", *names):
        table.add_column(col, justify="left" if col == "formula" else "right")
    for r in results:
        cells = []
        for n in names:
            mean, std = mean_std(r.values.get(n, []))
            cells.append(f"{mean:.4f} ± {std:.4f} (n={len(r.values.get(n, []))})")
        steps = "search" if r.steps is None else str(r.steps)
        table.add_row(_label(r.candidate.id, r.candidate.seed_name), r.candidate.formula, steps, *cells)
    return table


def _funnel_table(store: Store, study: StudyRow) -> tuple[Table, str]:
    """The rejection funnel in cascade order, and a line for evaluations that ended outside it."""
    stages, outside = rejection_funnel(store, study)
    full = next((s for s in stages if s.stage == Stage.FULL), None)
    table = Table(
        title="Rejection funnel, cheapest stage first",
        caption="stopped: rejected, failed or a duplicate there; x full: seconds each / one full training",
    )
    for col in ("stage", "reached", "stopped", "%", "seconds", "s each", "x full"):
        table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    for s in stages:
        ratio = s.seconds_each / full.seconds_each if full and full.seconds_each else None
        table.add_row(
            s.stage,
            str(s.reached),
            str(s.stopped),
            f"{100 * s.stopped / s.reached:.1f}" if s.reached else "-",
            f"{s.seconds:.1f}",
            f"{s.seconds_each:.3g}",
            "-" if ratio is None else f"{ratio:.2g}",
        )
    note = ", ".join(f"{stage} {n}" for stage, n in sorted(outside.items()))
    return table, (f"ended outside the cascade: {note}" if note else "")


def print_summary(
    console: Console, store: Store, study: StudyRow, export_manifest: Path | None = None, top: int = 5
) -> None:
    study = store.get_study(study.name)
    objectives = objectives_of(study)
    names = [o.name for o in objectives]
    scored = scored_candidates(store, study)

    title = f"Top {top} of study {study.name!r} by {names[0]} ({SELECTION})"
    console.print(_candidate_table(title, top_k(scored, top), names))

    if len(objectives) > 1:
        front = pareto_front(scored)
        shown = f", best {PARETO_ROWS} shown" if len(front) > PARETO_ROWS else ""
        title = f"Pareto front over {', '.join(names)}: {len(front)} of {len(scored)} candidates{shown} ({SELECTION})"
        console.print(_candidate_table(title, front[:PARETO_ROWS], names))

    base = Table(title=f"Baselines evaluated in the same study ({SELECTION})")
    base.add_column("seed")
    base.add_column("status")
    for n in names:
        base.add_column(n, justify="right")
    for cand, ev in baselines(store, study):
        base.add_row(cand.seed_name or "", ev.status, *(_fmt(ev.objectives.get(n)) for n in names))
    console.print(base)

    final = final_results(store, study)
    if final:
        console.print(_final_table(study, final))
    else:
        console.print(
            f"No test-split results yet: `layerforge rerank {study.name} --top K --seeds S` trains the top candidates "
            "and the baselines on train + validation and scores them on the test split, which nothing selects on."
        )

    funnel, outside = _funnel_table(store, study)
    console.print(funnel)
    if outside:
        console.print(outside)

    counts = store.count_by_status(study.id)
    console.print(
        "status: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f" | {evaluations_per_minute(store, study):.1f} evaluations/minute over {study.active_seconds / 60:.1f} min"
        + f" | study {shown_status(study, leases(store).get(study.id))}"
    )
    if export_manifest is not None:
        console.print(f"exported the best layers to {export_manifest.parent} (manifest: {export_manifest})")
