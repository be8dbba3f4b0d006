"""Can a norm-act study's proxies tell its baselines apart? Test-split accuracy of each baseline over seeds.

Each of the study's baselines (BN-ReLU, GN-ReLU, LN-GELU, EvoNorm-B0, EvoNorm-S0) is trained with several seeds on
every proxy of the config, exactly as ``layerforge rerank`` does it (train + validation, scored on the test split,
seeds 1000, 1001, ...). Printed per objective: mean ± std per baseline, the spread of the means (best - worst) as a
multiple of the seed noise (the pooled and the largest per-baseline std), and Welch's t-test of each batch-independent
layer against BN-ReLU, which is where EvoNorm's small-batch claim is checked.

    OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/normact_baselines.py --seeds 5 --processes 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from typing import Any

import torch
from scipy import stats

from evaluators import ProxyEvaluator
from evaluators.splits import TEST, on_split
from evaluators.vocabulary import Status
from search.config import load_config
from spaces import get_space

BATCH_INDEPENDENT = ("gn_relu", "evonorm_s0")  # no batch statistic: EvoNorm's small-batch winners
_evaluator: ProxyEvaluator | None = None  # one per pool process, holding its datasets


def _start_worker(config_path: str) -> None:
    global _evaluator
    torch.set_num_threads(1)
    config = load_config(config_path)
    _evaluator = ProxyEvaluator(get_space(config.space.kind, **config.space.options), config.evaluator, "cpu")


def _train(job: tuple[str, int]) -> tuple[str, int, dict[str, Any]]:
    name, seed = job
    genome = _evaluator.space.seeds()[name]
    return name, seed, _evaluator.evaluate(genome, seed=seed, cascade=False, split=TEST).to_dict()


def spread_over_noise(values: dict[str, list[float]]) -> tuple[float, float, float]:
    """(spread of the means, pooled std, largest std) over the baselines' per-seed values."""
    means = [statistics.fmean(v) for v in values.values()]
    variances = [statistics.variance(v) for v in values.values()]
    return max(means) - min(means), statistics.fmean(variances) ** 0.5, max(variances) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/normact_cpu.yaml")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 for a standard deviation")

    config = load_config(args.config)
    layers = [s for s in config.space.seeds if s in get_space(config.space.kind, **config.space.options).seeds()]
    objectives = [on_split(o.name, TEST) for o in config.evaluator.objectives]
    seeds = [1000 + i for i in range(args.seeds)]  # rerank's seeds: its baseline rows repeat these runs
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    results = []
    with context.Pool(args.processes, initializer=_start_worker, initargs=(args.config,)) as pool:
        for name, seed, outcome in pool.imap_unordered(_train, [(name, seed) for seed in seeds for name in layers]):
            found = {o: round(outcome["objectives"].get(o, float("nan")), 4) for o in objectives}
            print(f"{time.perf_counter() - started:6.0f} s  {name} seed {seed}: {found}", flush=True)
            results.append((name, seed, outcome))
    wall = time.perf_counter() - started

    values: dict[str, dict[str, list[float]]] = {o: {name: [] for name in layers} for o in objectives}
    for name, seed, outcome in results:
        if outcome["status"] != Status.DONE:
            print(f"{name} seed {seed}: {outcome['status']} at {outcome['stage']}: {outcome['reason']}")
            continue
        for objective in objectives:
            values[objective][name].append(outcome["objectives"][objective])

    proxies = ", ".join(
        f"{p.name}: {p.arch} {p.arch_options} on {p.dataset} {p.dataset_options}, {p.steps} steps at batch "
        f"{p.batch_size}, lr {p.lr} {p.lr_schedule}"
        for p in config.evaluator.proxies
    )
    print(f"{args.config}: {proxies}")
    print(f"{len(layers)} baselines x {args.seeds} seeds ({seeds[0]}..{seeds[-1]}), test split, train + validation")
    print(f"{args.processes} processes, torch {torch.__version__}, 1 thread each; wall {wall:.0f} s")
    for objective in objectives:
        runs = {name: v for name, v in values[objective].items() if len(v) >= 2}
        print(f"\n{objective}")
        for name, v in runs.items():
            print(f"  {name:<12} {statistics.fmean(v):.4f} ± {statistics.stdev(v):.4f}  (n={len(v)})")
        if len(runs) < 2:
            continue
        spread, pooled, largest = spread_over_noise(runs)
        ratios = f"{spread / pooled:.1f}x the pooled std {pooled:.4f}, {spread / largest:.1f}x the largest"
        print(f"  spread of the means {spread:.4f} = {ratios}")
        if "bn_relu" in runs:
            for name in (n for n in BATCH_INDEPENDENT if n in runs):
                p = stats.ttest_ind(runs[name], runs["bn_relu"], equal_var=False).pvalue
                gap = statistics.fmean(runs[name]) - statistics.fmean(runs["bn_relu"])
                print(f"  {name} - bn_relu: {gap:+.4f} (Welch p = {p:.3g})")


if __name__ == "__main__":
    main()
