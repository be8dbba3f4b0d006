"""Transfer: the study's top candidates and its baselines re-trained on networks of other families.

The search proxies are small MLPs and CNNs; a layer found there may fail elsewhere (EvoNorm's lesson). Each chosen
candidate is trained with several seeds on every proxy of the transfer suite (``evaluators.transfer_tasks``:
ResNets with post- and pre-activation blocks, a small transformer LM) on train + validation and scored on the
test split. Every run is stored (purpose "transfer", one evaluation per proxy and seed) and reused when the same
command runs again; ``search.transfer_results`` reads them back and compares.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from evaluators.config import EvaluatorConfig, Objective, ProxyConfig
from evaluators.transfer_tasks import NoTransferSuite, transfer_suite
from evaluators.vocabulary import Status
from search.config import ConfigError, StudyConfig, parse_config
from search.dispatch import Job
from search.results import baselines, scored_candidates, top_k
from search.retrain import queue_test_run, ray_for, run_queued, seed_values
from search.store import CandidateRow, Store, StudyRow
from search.transfer_results import PURPOSE, CandidateRuns, baseline_names, objective_of, transfer_runs
from spaces import get_space

#: A run is cut after this many seconds per training step (or the study's timeout, if longer): generous, as the
#: suite's steps take a few hundredths of a second on one CPU thread.
SECONDS_PER_STEP = 0.75


def transfer(
    store: Store,
    study_name: str,
    *,
    top: int,
    seeds: int,
    console: Console,
    steps_scale: float = 1.0,
    baseline_names: list[str] | None = None,
    workers: int | None = None,
    runs_dir: str | Path = "runs",
) -> tuple[list[CandidateRuns], dict[str, int]]:
    """Train the best ``top`` searched candidates and the baselines on every transfer proxy with ``seeds`` seeds.

    Returns the runs per candidate and the steps per proxy, for ``search.transfer_results.print_comparison``.
    """
    study = store.get_study(study_name)
    config = parse_config(study.config, f"stored config of study {study_name!r}")
    try:
        suite = transfer_suite(get_space(config.space.kind, **config.space.options), steps_scale)
    except NoTransferSuite as exc:
        raise ConfigError(str(exc)) from None
    chosen = _searched(store, study, top) + _baselines(store, study, baseline_names)
    seeds_used = seed_values(seeds)
    with ray_for(config, Path(runs_dir)):
        for proxy in suite:
            jobs = _queue(store, study, chosen, proxy, seeds_used)
            timeout = max(config.evaluator.timeout_seconds, SECONDS_PER_STEP * proxy.steps)
            run_queued(
                store, _single_proxy(config, proxy), jobs, description=f"transfer {proxy.name}",
                timeout_seconds=timeout, console=console, workers=workers,
            )  # fmt: skip
    steps = {proxy.name: proxy.steps for proxy in suite}
    store.log_event(
        study.id,
        PURPOSE,
        f"transferred {len(chosen)} candidates to {', '.join(steps)} with {seeds} seeds",
        steps=steps,
        candidates=[c.id for c in chosen],
        at=time.time(),
    )
    return transfer_runs(store, study, steps=steps, seeds=seeds_used, candidates=chosen)


def _searched(store: Store, study: StudyRow, top: int) -> list[CandidateRow]:
    """The best ``top`` candidates the search found (baselines excluded: they come in their own list)."""
    found = [s for s in scored_candidates(store, study) if s.candidate.origin != "seed"]
    return [s.candidate for s in top_k(found, top)]


def _baselines(store: Store, study: StudyRow, names: list[str] | None) -> list[CandidateRow]:
    seeds = {c.seed_name: c for c, _ in baselines(store, study) if c.duplicate_of is None and c.seed_name}
    return [seeds[n] for n in baseline_names(list(seeds), names, f"study {study.name!r}")]


def _queue(
    store: Store, study: StudyRow, chosen: list[CandidateRow], proxy: ProxyConfig, seeds: list[int]
) -> list[Job]:
    """A job per candidate and seed not yet stored for this proxy and steps; a run that diverged is kept (the same
    seed diverges again), a failed one (timeout, lost worker) runs again."""
    done = {
        (c.id, e.seed)
        for c, e in store.evaluations(study.id, purpose=PURPOSE)
        if e.metrics.get("proxy") == proxy.name
        and e.steps == proxy.steps
        and e.status in (Status.DONE, Status.REJECTED)
    }
    return [
        queue_test_run(
            store, study, cand, purpose=PURPOSE, seed=seed, steps=proxy.steps, metrics={"proxy": proxy.name}
        )
        for seed in seeds
        for cand in chosen
        if (cand.id, seed) not in done
    ]


def _single_proxy(config: StudyConfig, proxy: ProxyConfig) -> StudyConfig:
    """The study's config with an evaluator that trains only ``proxy`` (same device, threads and plug-ins)."""
    evaluator = EvaluatorConfig(
        kind="proxy",
        proxies=[proxy],
        objectives=[Objective(name=objective_of(proxy.name))],
        device=config.evaluator.device,
        amp=config.evaluator.amp,
        threads=config.evaluator.threads,
        timeout_seconds=config.evaluator.timeout_seconds,
    )
    return config.model_copy(update={"evaluator": evaluator})
