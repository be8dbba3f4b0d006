"""The end-of-study report: top candidates, baselines, where the compute went, throughput, export."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from search.results import baselines, objectives_of, pareto_front, scored_candidates, stage_funnel, top_k
from search.store import Store, StudyRow


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def evaluations_per_minute(store: Store, study: StudyRow) -> float:
    counts = store.count_by_status(study.id)
    finished = sum(n for s, n in counts.items() if s in ("done", "rejected", "failed"))
    return finished / (study.active_seconds / 60) if study.active_seconds else 0.0


def print_summary(
    console: Console, store: Store, study: StudyRow, export_manifest: Path | None = None, top: int = 5
) -> None:
    study = store.get_study(study.name)
    objectives = objectives_of(study)
    names = [o.name for o in objectives]
    scored = scored_candidates(store, study)

    table = Table(title=f"Top {top} of study {study.name!r} (by {names[0]})")
    table.add_column("id", justify="right")
    table.add_column("formula")
    for n in names:
        table.add_column(n, justify="right")
    for s in top_k(scored, top):
        table.add_row(str(s.candidate.id), s.candidate.formula, *(_fmt(s.evaluation.objectives.get(n)) for n in names))
    console.print(table)

    if len(objectives) > 1:
        front = pareto_front(scored)
        console.print(
            f"Pareto front over {', '.join(names)}: {len(front)} candidates: "
            + ", ".join(f"c{s.candidate.id}" for s in front[:20])
        )

    base = Table(title="Baselines evaluated in the same study")
    base.add_column("seed")
    base.add_column("status")
    for n in names:
        base.add_column(n, justify="right")
    for cand, ev in baselines(store, study):
        base.add_row(cand.seed_name or "", ev.status, *(_fmt(ev.objectives.get(n)) for n in names))
    console.print(base)

    funnel = Table(title="Evaluations by status and stage")
    for col in ("status", "stage", "count", "worker seconds"):
        funnel.add_column(col, justify="right" if col in ("count", "worker seconds") else "left")
    for row in stage_funnel(store, study):
        funnel.add_row(row["status"], row["stage"], str(row["count"]), f"{row['seconds']:.1f}")
    console.print(funnel)

    counts = store.count_by_status(study.id)
    console.print(
        "status: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f" | {evaluations_per_minute(store, study):.1f} evaluations/minute over {study.active_seconds / 60:.1f} min"
        + f" | study {study.status}"
    )
    if export_manifest is not None:
        console.print(f"exported the best layers to {export_manifest.parent} (manifest: {export_manifest})")
