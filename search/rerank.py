"""Re-ranking: the top candidates and the baselines re-trained with several seeds and a longer budget.

The search's single noisy runs, scored on the validation split it selected on, are not the final word: these
runs train on train + validation and score on the test split, which nothing selects on. They are stored
(purpose "rerank", objectives under their ``test_*`` names) and compared with error bars.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from evaluators.splits import TEST, on_split
from search.config import parse_config
from search.objectives import objectives_of
from search.results import baselines, scored_candidates, test_runs, top_k, versus_best_baseline
from search.retrain import queue_test_run, ray_for, run_queued, seed_values
from search.store import CandidateRow, Store, StudyRow


@dataclass
class RerankRow:
    candidate: CandidateRow
    label: str
    values: dict[str, list[float]]  # test-split objective (``test_acc@mlp``) -> one value per seed
    seeds: list[int]  # the seed of each run, in the order of every objective's values

    def by_seed(self, name: str) -> dict[int, float]:
        return dict(zip(self.seeds, self.values.get(name, []), strict=False))


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
    seeds_used = seed_values(seeds)

    done = _existing(store, study, steps)
    jobs = [
        queue_test_run(store, study, cand, purpose="rerank", seed=seed, steps=steps)
        for cand in chosen
        for seed in seeds_used
        if (cand.id, seed) not in done
    ]
    if jobs:
        timeout = config.evaluator.timeout_seconds * max(1.0, (steps or 1) / _search_steps(config))
        with ray_for(config, Path(runs_dir)):
            run_queued(
                store, config, jobs, description=f"rerank {study_name}", timeout_seconds=timeout,
                console=console, workers=workers,
            )  # fmt: skip
    store.log_event(
        study.id,
        "rerank",
        f"re-ranked {len(chosen)} candidates with {seeds} seeds",
        steps=steps,
        candidates=[c.id for c in chosen],
        at=time.time(),
    )
    return collect(store, study, chosen, seeds_used, steps)


def _search_steps(config: Any) -> int:
    return max((p.steps for p in config.evaluator.proxies), default=1)


def _existing(store: Store, study: StudyRow, steps: int | None) -> set[tuple[int, int]]:
    """(candidate, seed) pairs already scored on the test split with these steps (earlier runs are reused)."""
    return {(c.id, e.seed) for c, e in test_runs(store, study) if e.steps == steps}


def collect(
    store: Store, study: StudyRow, chosen: list[CandidateRow], seed_values: list[int], steps: int | None
) -> list[RerankRow]:
    rows = {c.id: RerankRow(c, c.seed_name or f"c{c.id}", {}, []) for c in chosen}
    for cand, ev in test_runs(store, study):
        if cand.id in rows and ev.steps == steps and ev.seed in seed_values:
            rows[cand.id].seeds.append(ev.seed)
            for name, value in ev.objectives.items():
                rows[cand.id].values.setdefault(name, []).append(value)
    return list(rows.values())


def compare(rows: list[RerankRow], study: StudyRow) -> list[str]:
    """Plain-language verdicts on the test split: each searched candidate against the best baseline on each
    objective (the baseline whose mean is best there, named), beyond the seed noise (paired t-test over seeds)."""
    seeded = [r for r in rows if r.candidate.origin == "seed"]
    searched = [r for r in rows if r.candidate.origin != "seed"]
    if not seeded or not searched:
        return ["no baseline or no searched candidate among the re-ranked ones to compare"]
    lines = []
    for obj in objectives_of(study):
        name = on_split(obj.name, TEST)
        runs = {r.label: r.by_seed(name) for r in seeded}
        for r in searched:
            comparison = versus_best_baseline(r.by_seed(name), runs, obj.direction)
            lines.append(
                f"{name}: no baseline finished a run to compare {r.label} with"
                if comparison is None
                else comparison.sentence(r.label, name)
            )
    return lines
