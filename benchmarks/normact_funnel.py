"""Rejection funnel of a norm-act study's cascade on randomly sampled genomes, against one full proxy training.

Genomes drawn by the study's ``space.sample`` go through the stages a study runs, in its order: the driver's
canonical dedupe and functional fingerprint (a duplicate reuses a stored outcome), then the worker's static
check, numeric probe, stability test and quality gate (``ProxyEvaluator.evaluate(full=False)``, the same code a
worker runs). Printed per stage: how many genomes reached it, the fraction it rejected, and its seconds per genome
as a multiple of one full training of a candidate on all K proxies (timed on the study's baselines).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/normact_funnel.py --genomes 500 --processes 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import statistics
import time
from typing import Any

import numpy as np
import torch

from evaluators import ProxyEvaluator
from evaluators.fingerprint import fingerprint
from evaluators.outcome import Outcome
from evaluators.vocabulary import CASCADE, Stage, Status
from search.config import StudyConfig, load_config
from spaces import Genome, get_space

_evaluator: ProxyEvaluator | None = None  # one per pool process, holding its datasets


def _start_worker(config_path: str) -> None:
    global _evaluator
    torch.set_num_threads(1)
    config = load_config(config_path)
    _evaluator = ProxyEvaluator(get_space(config.space.kind, **config.space.options), config.evaluator, "cpu")


def _screen(genome: Genome) -> dict[str, Any]:
    return _evaluator.evaluate(genome, full=False).to_dict()


def driver_stages(config: StudyConfig, genomes: list[Genome]) -> tuple[list[Genome], dict[str, Any]]:
    """Canonical dedupe, then fingerprint dedupe, timed per genome as the runner does; the unique genomes remain."""
    space = get_space(config.space.kind, **config.space.options)
    keys: set[str] = set()
    prints: set[str] = set()
    unique: list[Genome] = []
    seconds = {Stage.DEDUPE: 0.0, Stage.FINGERPRINT: 0.0}
    stopped = {Stage.DEDUPE: 0, Stage.FINGERPRINT: 0}
    for genome in genomes:
        start = time.perf_counter()
        key = space.key(genome)
        seconds[Stage.DEDUPE] += time.perf_counter() - start
        if key in keys:
            stopped[Stage.DEDUPE] += 1
            continue
        keys.add(key)
        start = time.perf_counter()
        print_ = fingerprint(space, genome, config.evaluator.fingerprint)
        seconds[Stage.FINGERPRINT] += time.perf_counter() - start
        if print_ in prints:
            stopped[Stage.FINGERPRINT] += 1
            continue
        prints.add(print_)
        unique.append(genome)
    return unique, {"seconds": seconds, "stopped": stopped}


def full_training_seconds(count: int) -> list[float]:
    """Seconds of the full stage (every proxy, the study's steps) for the first ``count`` baselines."""
    seeds = list(_evaluator.space.seeds().values())[:count]
    outcomes = [_evaluator.evaluate(genome, cascade=False) for genome in seeds]
    return [o.stage_seconds[Stage.FULL] for o in outcomes if o.status == Status.DONE]


def funnel_rows(total: int, driver: dict[str, Any], outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Per stage in cascade order: reached, stopped (rejected, failed or duplicate) and summed seconds."""
    seconds = dict(driver["seconds"])
    stopped = dict(driver["stopped"])
    for outcome in outcomes:
        for stage, value in outcome.stage_seconds.items():
            seconds[stage] = seconds.get(stage, 0.0) + value
        if outcome.status != Status.DONE:
            stopped[outcome.stage] = stopped.get(outcome.stage, 0) + 1
    rows, reached = [], total
    for stage in CASCADE[:-1]:
        if stage not in seconds:
            continue
        rows.append({"stage": stage, "reached": reached, "stopped": stopped.get(stage, 0), "seconds": seconds[stage]})
        reached -= stopped.get(stage, 0)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/normact_cpu.yaml")
    parser.add_argument("--genomes", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1, help="worker processes for the cascade")
    parser.add_argument("--full", type=int, default=3, help="baselines whose full training is timed")
    args = parser.parse_args()

    config = load_config(args.config)
    space = get_space(config.space.kind, **config.space.options)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    genomes = [space.sample(rng) for _ in range(args.genomes)]
    unique, driver = driver_stages(config, genomes)
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.processes, initializer=_start_worker, initargs=(args.config,)) as pool:
        outcomes = [Outcome.from_dict(d) for d in pool.imap(_screen, unique, chunksize=4)]
        full = pool.apply(full_training_seconds, (args.full,))
    wall = time.perf_counter() - started
    full_each = statistics.fmean(full)
    proxies = len(config.evaluator.proxies)

    rejection = config.evaluator.rejection
    print(
        f"{args.genomes} genomes sampled from {config.space.kind} {config.space.options} (seed {args.seed}); "
        f"{proxies} proxies ({', '.join(p.name for p in config.evaluator.proxies)}); stability "
        f"{rejection.stability.ascent_steps} ascent steps, threshold {rejection.stability.threshold:g}; "
        f"quality gate {rejection.quality_gate.steps} steps per proxy, min val_acc "
        f"{rejection.quality_gate.min_val_acc}; {args.processes} process(es), torch {torch.__version__}, 1 thread"
    )
    print(
        f"one full training (all {proxies} proxies, {config.evaluator.proxies[0].steps} steps each): "
        f"{full_each:.2f} s (mean of {len(full)} baselines: {', '.join(f'{s:.2f}' for s in full)})"
    )
    header = f"{'stage':<14} {'reached':>8} {Status.REJECTED:>9} {'% of reached':>13} {'% of all':>9}"
    print(header + f" {'s total':>9} {'ms / genome':>12} {'x full':>8}")
    for row in funnel_rows(args.genomes, driver, outcomes):
        per_genome = row["seconds"] / row["reached"] if row["reached"] else 0.0
        share = 100 * row["stopped"] / row["reached"] if row["reached"] else 0.0
        print(
            f"{row['stage']:<14} {row['reached']:>8} {row['stopped']:>9} {share:>12.1f}% "
            f"{100 * row['stopped'] / args.genomes:>8.1f}% {row['seconds']:>9.1f} {1000 * per_genome:>12.1f} "
            f"{per_genome / full_each:>8.4f}"
        )
    passed = sum(o.status == Status.DONE for o in outcomes)
    print(f"passed every stage (on to full training): {passed} of {args.genomes} ({100 * passed / args.genomes:.1f}%)")
    failed = [o for o in outcomes if o.status == Status.FAILED]
    reasons: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.status != Status.DONE:
            kind = re.split(r" on | = | up to | \d", outcome.reason)[0]  # the reason without its figures
            reasons[kind] = reasons.get(kind, 0) + 1
    print("reasons: " + "; ".join(f"{k} x{v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])))
    screened = sum(sum(o.stage_seconds.values()) for o in outcomes) + sum(driver["seconds"].values())
    print(
        f"cascade seconds per sampled genome: {screened / args.genomes:.2f} s = "
        f"{screened / args.genomes / full_each:.3f} x one full training; failed (exceptions): {len(failed)}; "
        f"wall {wall:.0f} s"
    )


if __name__ == "__main__":
    main()
