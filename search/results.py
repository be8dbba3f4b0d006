"""Ranking finished candidates: best by objective, Pareto fronts, baselines. Shared by summary, export, rerank.

Search evaluations carry validation-split objectives (what selection saw); re-ranking runs carry the same
objectives on the test split (``test_*`` names, ``evaluators.splits``), the only numbers reported as final.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.splits import TEST, on_split
from evaluators.vocabulary import CASCADE, OUTSIDE_CASCADE, Status
from search.objectives import objectives_of, oriented, pareto_mask, signed_values
from search.store import CandidateRow, EvaluationRow, Store, StudyRow


@dataclass
class Scored:
    candidate: CandidateRow
    evaluation: EvaluationRow
    values: tuple[float, ...]  # oriented: larger is better


def scored_candidates(store: Store, study: StudyRow) -> list[Scored]:
    """Every original candidate whose search evaluation finished with all objectives."""
    objectives = objectives_of(study)
    out = []
    for cand, ev in store.history(study.id):
        if ev.status != Status.DONE or cand.duplicate_of is not None:
            continue
        values = signed_values(ev.objectives, objectives)
        if values is not None:
            out.append(Scored(cand, ev, values))
    return out


def top_k(scored: list[Scored], k: int) -> list[Scored]:
    """Best first by the first objective, ties broken by the rest, then by age."""
    return sorted(scored, key=lambda s: (tuple(-v for v in s.values), s.candidate.id))[:k]


def pareto_front(scored: list[Scored]) -> list[Scored]:
    """The non-dominated candidates over all objectives, best first as in ``top_k``."""
    if not scored:
        return []
    on_front = pareto_mask(np.array([s.values for s in scored]))
    front = [s for s, keep in zip(scored, on_front, strict=True) if keep]
    return top_k(front, len(front))


def baselines(store: Store, study: StudyRow) -> list[tuple[CandidateRow, EvaluationRow]]:
    """Seed genomes (ReLU, GELU, ...) with their search evaluation, in injection order."""
    rows = [(c, e) for c, e in store.history(study.id) if c.origin == "seed"]
    return sorted(rows, key=lambda ce: ce[0].id)


def test_names(study: StudyRow) -> list[str]:
    """The study's objectives as measured on the test split (``val_acc@mlp`` -> ``test_acc@mlp``)."""
    return [on_split(o.name, TEST) for o in objectives_of(study)]


def test_runs(store: Store, study: StudyRow) -> list[tuple[CandidateRow, EvaluationRow]]:
    """Finished re-ranking runs scored on the test split, oldest first.

    Re-ranking runs from before splits carry validation names (they were scored on the split search selected
    on): they are left out, never reported as test results.
    """
    names = test_names(study)
    return [
        (c, e)
        for c, e in store.evaluations(study.id, purpose="rerank")
        if e.status == Status.DONE and all(name in e.objectives for name in names)
    ]


@dataclass
class FinalResult:
    """One candidate's test-split results at one training budget: objective -> one value per seed."""

    candidate: CandidateRow
    steps: int | None  # None: the study's own steps
    values: dict[str, list[float]]


def final_results(store: Store, study: StudyRow) -> list[FinalResult]:
    """Every candidate with test-split runs, per training budget, best first by the first objective's mean."""
    grouped: dict[tuple[int, int | None], FinalResult] = {}
    for cand, ev in test_runs(store, study):
        result = grouped.setdefault((cand.id, ev.steps), FinalResult(cand, ev.steps, {}))
        for name, value in ev.objectives.items():
            result.values.setdefault(name, []).append(value)
    first = objectives_of(study)[0]
    name = on_split(first.name, TEST)
    return sorted(grouped.values(), key=lambda r: (-oriented(mean_std(r.values[name])[0], first), r.candidate.id))


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass
class FunnelStage:
    stage: str
    reached: int  # evaluations that got this far
    stopped: int  # of those, rejected, failed or found to be a duplicate here
    seconds: float  # time spent in this stage, summed over every evaluation that ran it

    @property
    def seconds_each(self) -> float:
        return self.seconds / self.reached if self.reached else 0.0


def rejection_funnel(store: Store, study: StudyRow) -> tuple[list[FunnelStage], dict[str, int]]:
    """The cascade stages the study used, with how many evaluations reached and stopped at each and their seconds.

    Evaluations that ended outside the cascade (timeout, lost worker) are counted apart, by stage.
    """
    ended_at: list[float] = []  # index of the stage each evaluation ended at
    seconds: dict[str, float] = {}
    used: set[str] = set()
    outside: dict[str, int] = {}
    for _, ev in store.history(study.id):
        for stage, value in (ev.stage_seconds or {}).items():
            seconds[stage] = seconds.get(stage, 0.0) + value
        if ev.stage not in CASCADE:
            outside[ev.stage or "?"] = outside.get(ev.stage or "?", 0) + 1
            continue
        index = CASCADE.index(ev.stage)
        ended_at.append(index + 0.5 if ev.status == Status.DONE else index)  # done: passed the last stage too
        used.update(ev.stage_seconds or {})
        used.add(ev.stage)
    stages = [
        FunnelStage(
            stage,
            reached=sum(end >= index for end in ended_at),
            stopped=sum(end == index for end in ended_at),
            seconds=seconds.get(stage, 0.0),
        )
        for index, stage in enumerate(CASCADE)
        if stage in used
    ]
    return stages, outside


def stage_funnel(store: Store, study: StudyRow) -> list[dict[str, Any]]:
    """Counts and worker seconds per (status, stage), in cascade order."""
    order = [*CASCADE, *OUTSIDE_CASCADE]
    rows = [
        {"status": st, "stage": stage, "count": n, "seconds": sec}
        for (st, stage), (n, sec) in store.count_by_stage(study.id).items()
    ]
    return sorted(rows, key=lambda r: (order.index(r["stage"]) if r["stage"] in order else len(order), r["status"]))
