"""The placement stage on well-known layers and x^2-like ones: verdict, growth over the stacks, cost per candidate.

For each layer: how much the activations' and the input gradient's RMS grow over 20 post-activation and 20
pre-activation residual blocks at initialization (the largest over ``--seeds`` seeds), the verdict with the
default limits, and the CPU milliseconds of one check. Then the seconds of every stage of a quickstart evaluation
(configs/quickstart.yaml, baselines that pass every stage), so the stage's cost reads against a full training.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/placement_check.py
"""

from __future__ import annotations

import argparse
import functools
import statistics

import torch
from timing import interleaved_cpu_ms

from evaluators import ProxyEvaluator
from evaluators.config import PlacementCheck
from evaluators.placement import check_placement
from search.config import load_config
from spaces import get_space

FORMULAS = [
    "x + x^2",
    "max(0.92*x*bessel_i0e(x), x + x^2)",
    "relu(x)^2",
    "x + 0.05*x^2",
    "x*2",
    "x*1.2",
    "sin(x)",
    "sin(5*x)",
    "abs(x)",
]

GROWTHS = [f"placement_{form}_{what}_growth" for form in ("post", "pre") for what in ("act", "grad")]


def growth_table(seeds: int, repeats: int) -> None:
    cpu = torch.device("cpu")
    config = PlacementCheck(enabled=True, on_fail="warn")
    activation, normact = get_space("activation"), get_space("normact")
    layers = [(n, activation, g) for n, g in activation.seeds().items()]
    layers += [(f, activation, activation.parse(f)) for f in FORMULAS]
    layers += [(n, normact, g) for n, g in normact.seeds().items()]
    print(f"limits: activations {config.max_activation_growth:g}x, input gradients {config.max_gradient_growth:g}x")
    print(f"{'layer':38s} {'post act':>9s} {'post grad':>9s} {'pre act':>9s} {'pre grad':>9s}  verdict   ms/check")
    for name, space, genome in layers:
        worst: dict[str, float] = {}
        warned = False
        for seed in range(seeds):
            metrics = check_placement(space, genome, config, seed=seed, device=cpu)
            warned |= "warnings" in metrics
            for key, value in metrics.items():
                if key.endswith("growth"):
                    worst[key] = max(worst.get(key, 0.0), value)
        check = functools.partial(check_placement, space, genome, config, seed=0, device=cpu)
        cost = interleaved_cpu_ms({name: check}, warmup=1, repeats=repeats)[name][1]
        cells = [f"{worst[key]:9.3g}" for key in GROWTHS]
        print(f"{name:38s} {' '.join(cells)}  {'REJECT' if warned else 'pass':7s} {cost:8.1f}")


def stage_costs(repeats: int) -> None:
    config = load_config("configs/quickstart.yaml")
    space = get_space(config.space.kind, **config.space.options)
    evaluator = ProxyEvaluator(space, config.evaluator, "cpu")
    seconds: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name in ("relu", "gelu", "silu"):
            outcome = evaluator.evaluate(space.seeds()[name])
            for stage, value in outcome.stage_seconds.items():
                seconds.setdefault(stage, []).append(value)
    full = statistics.median(seconds["full"])
    print(f"\nquickstart stages (median of {repeats * 3} evaluations of relu, gelu, silu):")
    for stage, values in seconds.items():
        each = statistics.median(values)
        print(f"  {stage:14s} {1000 * each:9.1f} ms  {each / full:8.4f} x full")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="initializations per layer (the worst is shown)")
    parser.add_argument("--repeats", type=int, default=5, help="timed checks per layer")
    args = parser.parse_args()
    torch.set_num_threads(1)
    growth_table(args.seeds, args.repeats)
    stage_costs(2)


if __name__ == "__main__":
    main()
