"""Re-ranking: the top candidates and the baselines re-trained with several seeds and a longer budget.

The search's single noisy runs, scored on the validation split it selected on, are not the final word: these
runs train on train + validation and score on the test split, which nothing selects on. They are stored
(purpose "rerank", objectives under their ``test_*`` names) and compared with error bars.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from scipy import stats

from evaluators.config import Objective
from evaluators.outcome import Outcome
from evaluators.splits import TEST, on_split
from evaluators.vocabulary import Status
from search.config import parse_config
from search.dispatch import Dispatcher, Job
from search.objectives import objectives_of, oriented
from search.results import baselines, mean_std, scored_candidates, test_runs, top_k
from search.store import CandidateRow, Store, StudyRow, utcnow
from search.workers import make_pool, start_ray_for, stop_ray
from spaces import get_space


@dataclass
class RerankRow:
    candidate: CandidateRow
    label: str
    values: dict[str, list[float]]  # test-split objective (``test_acc@mlp``) -> one value per seed


class _RerankSource:
    def __init__(self, store: Store, study: StudyRow, jobs: list[Job], progress: Progress, task: Any):
        self.store, self.study, self.jobs = store, study, list(jobs)
        self.progress, self.task = progress, task

    def next_job(self, in_flight: int) -> Job | None:
        return self.jobs.pop(0) if self.jobs else None

    def on_dispatch(self, job: Job, worker: str) -> None:
        self.store.update_evaluation(
            job.evaluation_id, status=Status.RUNNING, worker=worker, attempt=job.attempt, started_at=utcnow()
        )

    def on_result(self, job: Job, result: dict[str, Any]) -> None:
        outcome = Outcome.from_dict(result["outcome"])
        self.store.update_evaluation(
            job.evaluation_id,
            status=outcome.status,
            stage=outcome.stage,
            reason=outcome.reason,
            objectives=outcome.finite_objectives(),
            seconds=outcome.seconds,
            worker=result["worker"],
            finished_at=utcnow(),
        )
        self.progress.advance(self.task)

    def on_failure(self, job: Job, stage: str, reason: str) -> None:
        self.store.update_evaluation(
            job.evaluation_id, status=Status.FAILED, stage=stage, reason=reason, finished_at=utcnow()
        )
        self.progress.advance(self.task)

    def stopping(self) -> bool:
        return False

    def on_tick(self) -> None:
        pass


def rerank(
    store: Store,
    study_name: str,
    *,
    top: int,
    seeds: int,
    steps: int | None,
    console: Console,
    workers: int | None = None,
    runs_dir: str | Path = "runs",
) -> list[RerankRow]:
    study = store.get_study(study_name)
    config = parse_config(study.config, f"stored config of study {study_name!r}")
    chosen = [s.candidate for s in top_k(scored_candidates(store, study), top)]
    chosen_ids = {c.id for c in chosen}
    chosen += [c for c, _ in baselines(store, study) if c.id not in chosen_ids and c.duplicate_of is None]
    seed_values = [1000 + i for i in range(seeds)]

    done = _existing(store, study, steps)
    jobs = []
    for cand in chosen:
        for seed in seed_values:
            if (cand.id, seed) in done:
                continue
            ev_id = store.add_evaluation(
                study.id, cand.id, purpose="rerank", status=Status.PENDING, seed=seed, steps=steps
            )
            payload = {"genome": cand.genome, "seed": seed, "steps": steps, "cascade": False, "split": TEST}
            jobs.append(Job(ev_id, payload))
    if jobs:
        started_ray = start_ray_for(config, Path(runs_dir))
        pool = make_pool(config, get_space(config.space.kind, **config.space.options), workers)
        try:
            pool.start()
            with Progress(console=console) as progress:
                task = progress.add_task(f"rerank {study_name}", total=len(jobs))
                timeout = config.evaluator.timeout_seconds * max(1.0, (steps or 1) / _search_steps(config))
                Dispatcher(pool, timeout, config.resources.max_attempts).run(
                    _RerankSource(store, study, jobs, progress, task)
                )
        finally:
            pool.shutdown()
            if started_ray:
                stop_ray()
    store.log_event(
        study.id,
        "rerank",
        f"re-ranked {len(chosen)} candidates with {seeds} seeds",
        steps=steps,
        candidates=[c.id for c in chosen],
        at=time.time(),
    )
    return collect(store, study, chosen, seed_values, steps)


def _search_steps(config: Any) -> int:
    return max((p.steps for p in config.evaluator.proxies), default=1)


def _existing(store: Store, study: StudyRow, steps: int | None) -> set[tuple[int, int]]:
    """(candidate, seed) pairs already scored on the test split with these steps (earlier runs are reused)."""
    return {(c.id, e.seed) for c, e in test_runs(store, study) if e.steps == steps}


def collect(
    store: Store, study: StudyRow, chosen: list[CandidateRow], seed_values: list[int], steps: int | None
) -> list[RerankRow]:
    by_candidate: dict[int, dict[str, list[float]]] = {c.id: {} for c in chosen}
    for cand, ev in test_runs(store, study):
        if cand.id in by_candidate and ev.steps == steps and ev.seed in seed_values:
            for name, value in ev.objectives.items():
                by_candidate[cand.id].setdefault(name, []).append(value)
    return [RerankRow(c, c.seed_name or f"c{c.id}", by_candidate[c.id]) for c in chosen]


def compare(rows: list[RerankRow], study: StudyRow, baseline_name: str | None = None) -> list[str]:
    """Plain-language verdicts on the test split: does the best candidate beat the baseline beyond the seed noise
    (Welch's t-test)?

    The baseline is the seed named ``baseline_name``, by default the study's first seed (relu, bn_relu, ...).
    """
    seeds = sorted((r for r in rows if r.candidate.origin == "seed"), key=lambda r: r.candidate.id)
    baseline = next((r for r in seeds if baseline_name in (None, r.candidate.seed_name)), None)
    searched = [r for r in rows if r.candidate.origin != "seed"]
    if baseline is None or not searched:
        return [f"no {baseline_name or 'seed'!r} baseline or no searched candidate to compare"]
    baseline_name = baseline.label
    lines = []
    for obj in objectives_of(study):
        name = on_split(obj.name, TEST)
        base = baseline.values.get(name, [])
        best = max(searched, key=lambda r: _oriented_mean(r.values.get(name, []), obj))
        vals = best.values.get(name, [])
        if len(vals) < 2 or len(base) < 2:
            lines.append(f"{name}: too few seeds for a test")
            continue
        (m1, s1), (m0, s0) = mean_std(vals), mean_std(base)
        p = stats.ttest_ind(vals, base, equal_var=False).pvalue
        better = oriented(m1, obj) > oriented(m0, obj)
        verdict = ("beats" if better else "is worse than") if p < 0.05 else "is not distinguishable from"
        lines.append(
            f"{name}: best searched {best.label} {m1:.4f} ± {s1:.4f} {verdict} "
            f"{baseline_name} {m0:.4f} ± {s0:.4f} (Welch p = {p:.3g}, n = {len(vals)}/{len(base)})"
        )
    return lines


def _oriented_mean(values: list[float], objective: Objective) -> float:
    """The mean turned so that larger is better; a candidate with no runs ranks last."""
    mean = mean_std(values)[0]
    return -math.inf if math.isnan(mean) else oriented(mean, objective)
