"""MNIST-1D with the proxies' optimizer settings over time: old (Adam lr 3e-3, batch 128), lr 1e-2 and batch 100
without warm-up, and the new defaults (the same with a linear lr warm-up over the first 5% of the steps); and
two alternatives to the defaults, checked on validation: weight decay 1e-3 and a cosine lr decay after the warm-up.

Side by side, with the same seeds (ReLU; softplus where the warm-up matters): the MNIST-1D paper's models
(MLP [100, 100] and 1-D CNN [32, 32, 32]) at 6,000 steps, scored on the official test split after training on the
official training set (train + validation, as `layerforge rerank` does), and the quickstart's two MNIST-1D proxies at
their own steps, scored on validation (what the search sees) and on test. Then the quickstart's cost per evaluation
(the whole cascade and all three proxies) with the old settings and with the new ones (new optimizer settings and
the placement stage), which sets how many evaluations fit in its time budget.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/proxy_defaults.py --seeds 3 --processes 2 \
        --settings "no warm-up,new"
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import torch

from evaluators import ProxyEvaluator
from evaluators.config import ProxyConfig
from evaluators.registry import get_dataset
from evaluators.training import train_proxy
from search.config import load_config
from spaces import get_space

OLD = {"lr": 3e-3, "batch_size": 128, "warmup_fraction": 0.0}
NO_WARMUP = {"lr": 1e-2, "batch_size": 100, "warmup_fraction": 0.0}
NEW = {name: ProxyConfig.model_fields[name].default for name in OLD}
WEIGHT_DECAY = {**NEW, "weight_decay": 1e-3}  # Adam's L2 term, as a proxy's `weight_decay: 0.001` sets it
COSINE = {**NEW, "lr_schedule": "cosine"}  # after the warm-up, cosine decay to zero instead of a constant lr
SETTINGS = {"old": OLD, "no warm-up": NO_WARMUP, "new": NEW, "weight decay 1e-3": WEIGHT_DECAY, "cosine": COSINE}
MODELS = {  # name: (arch, options, steps, splits, activation)
    "paper MLP [100, 100]": ("mlp", {"hidden": [100, 100]}, 6000, ("val", "test"), "relu"),
    "paper CNN [32, 32, 32]": ("cnn1d", {"channels": [32, 32, 32]}, 6000, ("val", "test"), "relu"),
    "quickstart mlp [64, 64]": ("mlp", {"hidden": [64, 64]}, 2000, ("val", "test"), "relu"),
    "quickstart cnn1d": ("cnn1d", {"channels": [32, 32, 32]}, 1000, ("val", "test"), "relu"),
    "quickstart cnn1d softplus": ("cnn1d", {"channels": [32, 32, 32]}, 1000, ("val",), "softplus"),
}


def _accuracy(job: tuple[str, str, str, int]) -> tuple[str, str, str, int, float]:
    model, setting, split, seed = job
    torch.set_num_threads(1)
    arch, options, steps, _, activation = MODELS[model]
    proxy = ProxyConfig(name="p", arch=arch, dataset="mnist1d", arch_options=options, **SETTINGS[setting])
    space = get_space("activation")
    metrics = train_proxy(
        space, space.seeds()[activation], get_dataset("mnist1d")(), proxy, seed=seed, steps=steps,
        device=torch.device("cpu"), split=split,
    )  # fmt: skip
    return model, setting, split, seed, metrics[f"{split}_acc"]


def accuracies(seeds: int, processes: int, settings: list[str], models: list[str]) -> None:
    jobs = [
        (model, setting, split, seed)
        for model, (_, _, _, splits, _) in MODELS.items()
        if model in models
        for split in splits
        for seed in range(seeds)
        for setting in settings
    ]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_accuracy, jobs, chunksize=1)
    print(f"MNIST-1D, {seeds} seeds; Adam " + "; ".join(f"{name}: {SETTINGS[name]}" for name in settings))
    print(f"{'model':26s} {'steps':>5s} {'split':>5s}" + "".join(f"{name:>16s}" for name in settings))
    for model, (_, _, steps, splits, _) in MODELS.items():
        for split in splits if model in models else ():
            cells = []
            for setting in settings:
                values = [a for m, s, sp, _, a in results if (m, s, sp) == (model, setting, split)]
                cells.append(f"{100 * statistics.fmean(values):6.2f} ± {100 * statistics.stdev(values):5.2f}")
            print(f"{model:26s} {steps:5d} {split:>5s}" + "".join(f"{cell:>16s}" for cell in cells))


def quickstart_cost(repeats: int) -> None:
    """Seconds per evaluation of the quickstart's baselines that pass every stage, old settings against new."""
    torch.set_num_threads(1)
    new = load_config("configs/quickstart.yaml")
    old = new.model_copy(deep=True)
    for proxy in old.evaluator.proxies:
        proxy.lr, proxy.batch_size, proxy.warmup_fraction = OLD["lr"], OLD["batch_size"], OLD["warmup_fraction"]
    old.evaluator.rejection.placement.enabled = False
    space = get_space(new.space.kind, **new.space.options)
    evaluators = {name: ProxyEvaluator(space, cfg.evaluator, "cpu") for name, cfg in (("old", old), ("new", new))}
    seconds: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(repeats):
        for name in ("relu", "gelu", "silu"):
            for setting, evaluator in evaluators.items():  # alternating, so both see the same machine load
                start = time.perf_counter()
                outcome = evaluator.evaluate(space.seeds()[name])
                assert outcome.status == "done", outcome.reason
                seconds[setting].append(time.perf_counter() - start)
    for setting, values in seconds.items():
        each = statistics.median(values)
        print(f"quickstart {setting}: {each:.2f} s per evaluation (median of {len(values)}), {60 / each:.1f}/minute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--cost-repeats", type=int, default=2, help="quickstart cost rounds (0: none)")
    parser.add_argument("--cost-only", action="store_true", help="skip the accuracies")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    parser.add_argument("--models", default=";".join(MODELS), help=f"semicolon-separated, of: {'; '.join(MODELS)}")
    args = parser.parse_args()
    if not args.cost_only:
        accuracies(args.seeds, args.processes, args.settings.split(","), args.models.split(";"))
    if args.cost_repeats > 0:
        quickstart_cost(args.cost_repeats)


if __name__ == "__main__":
    main()
