"""The end-of-study report: top candidates, baselines, where the compute went, throughput, export.

The search's tables show validation-split numbers, labelled as what selection saw; the final table shows only
test-split numbers (from `layerforge rerank`), which nothing selects on.
"""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from evaluators.splits import TEST, on_split
from evaluators.vocabulary import Stage, StudyStatus
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
    versus_best_baseline,
)
from search.store import Store, StudyLabelRow, StudyRow
from search.study_admin import finished_evaluations
from search.study_run import EXHAUSTED

PARETO_ROWS = 20  # the front table shows at most this many members, best first by the first objective
SELECTION = "validation split: what selection saw, not a final result"


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def batching_line(store: Store, study: StudyRow) -> str:
    """How many candidates the workers trained per batch and, per proxy, how many shared one stacked model
    (``evaluator.candidates_per_batch``); "" for a study that trained one candidate at a time."""
    done = [e.metrics for _, e in store.evaluations(study.id) if e.status == "done" and e.metrics.get("batch_members")]
    if not done:
        return ""
    sizes = [m["batch_members"] for m in done]
    proxies = sorted({key.split("@", 1)[1] for m in done for key in m if key.startswith("stacked@")})
    stacks = ", ".join(
        f"{name} {sum(stacked) / len(stacked):.1f}"
        for name in proxies
        if (stacked := [m[f"stacked@{name}"] for m in done if f"stacked@{name}" in m])
    )
    return (
        f"batched training: {sum(sizes) / len(sizes):.1f} candidates trained together per batch on average "
        f"(largest {max(sizes):.0f}); per stacked model: {stacks}"
    )


def evaluations_per_minute(store: Store, study: StudyRow) -> float:
    finished = finished_evaluations(store, study)
    return finished / (study.active_seconds / 60) if study.active_seconds else 0.0


NO_NEW_LAYERS = "no new layers proposed"


def stopped_by(store: Store, study: StudyRow, shown: StudyStatus, finished: int) -> str:
    """What stopped a study: the budget it spent (``evaluations 110/110``, ``minutes 8.5/8.5``), ``interrupted``
    for one whose driver died, or what else stops a run; "" while it runs or before it started."""
    if shown == StudyStatus.INTERRUPTED:
        return "interrupted"
    if shown not in (StudyStatus.FINISHED, StudyStatus.STOPPED):
        return ""
    spent = (study.active_seconds or 0.0) / 60
    if study.budget_evaluations is not None and finished >= study.budget_evaluations:
        return f"evaluations {finished}/{study.budget_evaluations}"
    if study.budget_minutes is not None and spent >= study.budget_minutes:
        return f"minutes {spent:.1f}/{study.budget_minutes:.1f}"
    if shown == StudyStatus.FINISHED:
        return NO_NEW_LAYERS if store.latest_event(study.id, (EXHAUSTED,)) is not None else "budget"
    latest = store.latest_event(study.id, ("budget", StudyStatus.STOPPED))
    extended = latest is not None and latest.kind == "budget"
    return "budget extended, not resumed yet" if extended else "Ctrl-C or an error"


def _used(used: float | int, budget: float | int | None, fmt: str) -> str:
    """``89/110``; ``89/-`` without that budget."""
    return f"{used:{fmt}}/" + ("-" if budget is None else f"{budget:{fmt}}")


def labels_text(labels: StudyLabelRow | None) -> str:
    """``tags: a, b | note: ...``, or "" for a study without either."""
    if labels is None:
        return ""
    parts = [f"tags: {', '.join(labels.tags)}"] if labels.tags else []
    parts += [f"note: {labels.note}"] if labels.note else []
    return " | ".join(parts)


def _short_labels(labels: StudyLabelRow | None) -> str:
    """``a, b (the note)`` for a table cell."""
    if labels is None:
        return ""
    return ", ".join(labels.tags) + (f" ({labels.note})" if labels.note and labels.tags else labels.note)


NAME_WIDTH = 26  # on a narrow console, study names up to this long (a quickstart's) stay on one line
WIDE = 120  # on a console at least this wide the list also shows each study's space, algorithm and creation time


def studies_table(store: Store, width: int = WIDE) -> Table:
    """Every study in the store: status and what stopped it, evaluations and minutes against the budget, tags and
    note; on a console ``WIDE`` columns or wider also space, algorithm and creation time.

    On a narrower one the table is sized to fit (Rich would otherwise cut wrapped cells): no status or number is
    cut at 80 columns; a long name, what stopped a study and the tags wrap instead.
    """
    wide = width >= WIDE
    held, labels = leases(store), store.labels()
    rows = []
    for s in store.list_studies():
        shown = shown_status(s, held.get(s.id))
        finished = finished_evaluations(store, s)
        cells = [
            s.name,
            shown,
            stopped_by(store, s, shown, finished),
            _used(finished, s.budget_evaluations, "d"),
            _used((s.active_seconds or 0.0) / 60, s.budget_minutes, ".1f"),
        ]
        if wide:
            cells += [f"{s.space} / {s.algorithm}", s.created_at.strftime("%Y-%m-%d %H:%M")]
        rows.append([*cells, _short_labels(labels.get(s.id))])
    headers = ["name", "status", "stopped by", "finished", "minutes"]
    headers += ["space / algorithm", "created"] if wide else []
    headers.append("tags / note")
    natural = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    if wide:
        for header in headers:
            justify = "right" if header in ("finished", "minutes") else "left"
            table.add_column(header, justify=justify, no_wrap=header != "tags / note")
    else:
        fixed = [min(natural[0], NAME_WIDTH), len(StudyStatus.INTERRUPTED), len("evaluations"), *natural[3:5]]
        left = width - sum(fixed) - 2 * len(fixed)  # two spaces between columns
        table.add_column("name", overflow="fold", max_width=fixed[0])
        table.add_column("status", no_wrap=True)
        table.add_column("stopped by", max_width=fixed[2])
        table.add_column("finished", justify="right", no_wrap=True)
        table.add_column("minutes", justify="right", no_wrap=True)
        table.add_column("tags / note", max_width=max(left, 6))
    for row in rows:
        table.add_row(*row)
    return table


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


def final_verdict(study: StudyRow, results: list[FinalResult]) -> list[str]:
    """The study's answer on the test split: does any searched layer beat the best baseline on some objective
    beyond the seed noise (paired p < 0.05 against the baseline best on that objective, at the same budget)?"""
    wins, compared = [], 0
    for steps in sorted({r.steps for r in results}, key=lambda s: -1 if s is None else s):  # the search's first
        at_budget = [r for r in results if r.steps == steps]
        seeded = [r for r in at_budget if r.candidate.origin == "seed"]
        for objective in objectives_of(study):
            name = on_split(objective.name, TEST)
            runs = {r.candidate.seed_name or str(r.candidate.id): r.by_seed(name) for r in seeded}
            for r in (r for r in at_budget if r.candidate.origin != "seed"):
                comparison = versus_best_baseline(r.by_seed(name), runs, objective.direction)
                if comparison is None or comparison.p_value is None:
                    continue
                compared += 1
                if comparison.verdict == "beats":
                    wins.append(comparison.sentence(f"c{r.candidate.id}", name))
    if not compared:
        return ["Verdict: no searched layer and baseline have test-split runs (2+ seeds) at one budget to compare yet."]
    if wins:
        return ["Verdict (test split): a searched layer beats the best baseline beyond the seed noise:", *wins]
    return [
        f"Verdict (test split): no searched layer beats the best baseline on any objective beyond the seed noise "
        f"(paired p < 0.05 needed; {compared} comparisons made)."
    ]


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
        for line in final_verdict(study, final):
            console.print(line, markup=False, highlight=False)
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
    shown = shown_status(study, leases(store).get(study.id))
    by = stopped_by(store, study, shown, finished_evaluations(store, study))
    console.print(
        "status: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f" | {evaluations_per_minute(store, study):.1f} evaluations/minute over {study.active_seconds / 60:.1f} min"
        + f" | study {shown}"
    )
    batching = batching_line(store, study)
    if batching:
        console.print(batching, markup=False, highlight=False)
    if by:
        console.print(f"stopped by: {by}", markup=False, highlight=False)
    if by == NO_NEW_LAYERS:
        console.print(store.latest_event(study.id, (EXHAUSTED,)).message, markup=False, highlight=False)
    labels = labels_text(store.labels().get(study.id))
    if labels:
        console.print(labels, markup=False, highlight=False)
    if export_manifest is not None:
        console.print(f"exported the best layers to {export_manifest.parent} (manifest: {export_manifest})")
