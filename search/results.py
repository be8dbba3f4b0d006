"""Ranking finished candidates: best by objective, Pareto fronts, baselines, and a candidate against the best
baseline. Shared by summary, export and rerank.

Search evaluations carry validation-split objectives (what selection saw); re-ranking runs carry the same
objectives on the test split (``test_*`` names, ``evaluators.splits``), the only numbers reported as final.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

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


def top_k(scored: list[Scored], k: int, by: int = 0) -> list[Scored]:
    """Best first by objective number ``by`` (the first by default), ties broken by the others in order, then by
    age."""

    def key(s: Scored) -> tuple[tuple[float, ...], int]:
        values = (s.values[by], *s.values[:by], *s.values[by + 1 :])
        return tuple(-v for v in values), s.candidate.id

    return sorted(scored, key=key)[:k]


def pareto_front(scored: list[Scored]) -> list[Scored]:
    """The non-dominated candidates over all objectives, best first as in ``top_k``."""
    if not scored:
        return []
    on_front = pareto_mask(np.array([s.values for s in scored]))
    front = [s for s, keep in zip(scored, on_front, strict=True) if keep]
    return top_k(front, len(front))


def crowding_distances(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each row of ``points`` (n x k): the extremes of every objective get
    infinity, the others the summed normalized gap between their neighbours. Larger: less crowded."""
    n = len(points)
    distance = np.zeros(n)
    for column in points.T:
        order = np.argsort(column, kind="stable")
        span = column[order[-1]] - column[order[0]]
        distance[order[[0, -1]]] = np.inf
        if span > 0 and n > 2:
            distance[order[1:-1]] += (column[order[2:]] - column[order[:-2]]) / span
    return distance


def pareto_top(scored: list[Scored], k: int, by: int | None = None) -> list[Scored]:
    """Up to ``k`` members of the Pareto front: the best ``k`` by objective number ``by``, or without ``by`` the
    ``k`` least crowded (the front's extremes first, then the members that spread it most). Best first as in
    ``top_k``."""
    front = pareto_front(scored)
    if by is not None:
        return top_k(front, k, by)
    if len(front) <= k:
        return front
    distance = crowding_distances(np.array([s.values for s in front]))
    spread = sorted(range(len(front)), key=lambda i: (-distance[i], i))[:k]
    return [front[i] for i in sorted(spread)]


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
    seeds: list[int]  # the seed of each run, in the order of every objective's values

    def by_seed(self, name: str) -> dict[int, float]:
        return dict(zip(self.seeds, self.values.get(name, []), strict=False))


def final_results(store: Store, study: StudyRow) -> list[FinalResult]:
    """Every candidate with test-split runs, per training budget, best first by the first objective's mean."""
    grouped: dict[tuple[int, int | None], FinalResult] = {}
    for cand, ev in test_runs(store, study):
        result = grouped.setdefault((cand.id, ev.steps), FinalResult(cand, ev.steps, {}, []))
        result.seeds.append(ev.seed)
        for name, value in ev.objectives.items():
            result.values.setdefault(name, []).append(value)
    first = objectives_of(study)[0]
    name = on_split(first.name, TEST)
    return sorted(grouped.values(), key=lambda r: (-oriented(mean_std(r.values[name])[0], first), r.candidate.id))


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


MIN_SEEDS = 3  # a comparison over fewer runs on either side says that its test is weak
SIGNIFICANCE = 0.05  # paired p below this: one side beats the other beyond the seed noise


@dataclass(frozen=True)
class PairedDifference:
    """Runs against reference runs over the seeds both finished (the same seed shares the data order and the
    initialization's random stream): mean difference and two-sided paired t-test p. ``p_value`` is None below 2
    pairs or when every difference is the same non-zero number (no spread to test), and 1 when every difference
    is zero (the same results: nothing to tell apart)."""

    delta: float | None
    p_value: float | None
    pairs: int


def paired_difference(values: Mapping[int, float], reference: Mapping[int, float]) -> PairedDifference:
    """``values`` and ``reference`` map a seed to its run's value."""
    shared = sorted(set(values) & set(reference))
    if not shared:
        return PairedDifference(None, None, 0)
    differences = [values[s] - reference[s] for s in shared]
    p_value = None
    if len(shared) >= 2 and max(differences) - min(differences) > 1e-12:
        p_value = float(stats.ttest_rel([values[s] for s in shared], [reference[s] for s in shared]).pvalue)
    elif len(shared) >= 2 and max(map(abs, differences)) <= 1e-12:
        p_value = 1.0
    return PairedDifference(statistics.fmean(differences), p_value, len(shared))


@dataclass(frozen=True)
class BaselineComparison:
    """A candidate's runs on one metric against the runs of the baseline with the best mean on that metric."""

    baseline: str
    values: list[float]
    baseline_values: list[float]
    paired: PairedDifference  # over the seeds both finished
    better: bool  # the candidate's mean is the better one, by the metric's direction

    @property
    def p_value(self) -> float | None:
        return self.paired.p_value

    @property
    def verdict(self) -> str:
        if self.p_value is None:
            return "cannot be tested against"
        if self.p_value < SIGNIFICANCE:
            return "beats" if self.better else "is worse than"
        return "is not distinguishable from"

    def sentence(self, candidate: str, metric: str) -> str:
        """``test_acc@mlp: c42 0.9120 ± 0.0040 beats the best baseline, gelu 0.9010 ± 0.0030 (paired p = ...)``."""
        if not self.values:
            return f"{metric}: {candidate} has no finished run to compare with the best baseline, {self.baseline}"
        (mean, std), (base_mean, base_std) = mean_std(self.values), mean_std(self.baseline_values)
        runs = f"{self.paired.pairs} paired seeds"
        test = runs if self.p_value is None else f"paired t-test p = {self.p_value:.3g}, {runs}"
        line = (
            f"{metric}: {candidate} {mean:.4f} ± {std:.4f} {self.verdict} the best baseline, "
            f"{self.baseline} {base_mean:.4f} ± {base_std:.4f} ({test})"
        )
        if self.paired.pairs < MIN_SEEDS:
            line += f"; warning: fewer than {MIN_SEEDS} seeds is too few to trust, rerun with {MIN_SEEDS} or more"
        return line


def versus_best_baseline(
    values: Mapping[int, float], baselines: Mapping[str, Mapping[int, float]], direction: str = "max"
) -> BaselineComparison | None:
    """``values`` (seed -> value) against the baseline whose mean is best on this metric (``direction``: "max" or
    "min"), by a paired t-test over the seeds both ran; None when no baseline has a run. ``baselines`` maps a
    baseline's name to its runs (seed -> value)."""
    sign = 1.0 if direction == "max" else -1.0
    measured = {name: runs for name, runs in baselines.items() if runs}
    if not measured:
        return None
    best = max(measured, key=lambda name: sign * statistics.fmean(measured[name].values()))
    base = measured[best]
    better = bool(values) and sign * statistics.fmean(values.values()) > sign * statistics.fmean(base.values())
    return BaselineComparison(best, list(values.values()), list(base.values()), paired_difference(values, base), better)


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
