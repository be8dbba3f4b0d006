"""ReLU on MNIST-1D with the proxies' old optimizer settings (Adam lr 3e-3, batch 128) and the new defaults.

Side by side, with the same seeds: the MNIST-1D paper's models (MLP [100, 100] and 1-D CNN [32, 32, 32]) at 6,000
steps, scored on the official test split after training on the official training set (train + validation, as
`layerforge rerank` does), and the quickstart's two MNIST-1D proxies at their own steps, scored on validation (what
the search sees) and on test. Then the quickstart's cost per evaluation (the whole cascade and all three proxies)
with its old settings and with the new ones (new optimizer settings and the placement stage), which sets how many
evaluations fit in its time budget.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/proxy_defaults.py --seeds 3 --processes 2
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

OLD = {"lr": 3e-3, "batch_size": 128}
NEW = {"lr": ProxyConfig.model_fields["lr"].default, "batch_size": ProxyConfig.model_fields["batch_size"].default}
MODELS = {  # name: (arch, options, steps, splits)
    "paper MLP [100, 100]": ("mlp", {"hidden": [100, 100]}, 6000, ("test",)),
    "paper CNN [32, 32, 32]": ("cnn1d", {"channels": [32, 32, 32]}, 6000, ("test",)),
    "quickstart mlp [64, 64]": ("mlp", {"hidden": [64, 64]}, 2000, ("val", "test")),
    "quickstart cnn1d": ("cnn1d", {"channels": [32, 32, 32]}, 1000, ("val", "test")),
}


def _accuracy(job: tuple[str, str, str, int]) -> tuple[str, str, str, int, float]:
    model, setting, split, seed = job
    torch.set_num_threads(1)
    arch, options, steps, _ = MODELS[model]
    settings = OLD if setting == "old" else NEW
    proxy = ProxyConfig(name="p", arch=arch, dataset="mnist1d", arch_options=options, **settings)
    space = get_space("activation")
    metrics = train_proxy(
        space, space.seeds()["relu"], get_dataset("mnist1d")(), proxy, seed=seed, steps=steps,
        device=torch.device("cpu"), split=split,
    )  # fmt: skip
    return model, setting, split, seed, metrics[f"{split}_acc"]


def accuracies(seeds: int, processes: int) -> None:
    jobs = [
        (model, setting, split, seed)
        for model, (_, _, _, splits) in MODELS.items()
        for split in splits
        for seed in range(seeds)
        for setting in ("old", "new")
    ]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_accuracy, jobs, chunksize=1)
    print(f"ReLU on MNIST-1D, {seeds} seeds; old: Adam lr {OLD['lr']:g} batch {OLD['batch_size']}, "
          f"new defaults: lr {NEW['lr']:g} batch {NEW['batch_size']}")  # fmt: skip
    print(f"{'model':26s} {'steps':>5s} {'split':>5s} {'old':>15s} {'new':>15s}")
    for model, (_, _, steps, splits) in MODELS.items():
        for split in splits:
            cells = []
            for setting in ("old", "new"):
                values = [a for m, s, sp, _, a in results if (m, s, sp) == (model, setting, split)]
                cells.append(f"{100 * statistics.fmean(values):6.2f} ± {100 * statistics.stdev(values):4.2f}")
            print(f"{model:26s} {steps:5d} {split:>5s} {cells[0]:>15s} {cells[1]:>15s}")


def quickstart_cost(repeats: int) -> None:
    """Seconds per evaluation of the quickstart's baselines that pass every stage, old settings against new."""
    torch.set_num_threads(1)
    new = load_config("configs/quickstart.yaml")
    old = new.model_copy(deep=True)
    for proxy in old.evaluator.proxies:
        proxy.lr, proxy.batch_size = OLD["lr"], OLD["batch_size"]
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
    parser.add_argument("--cost-repeats", type=int, default=2, help="rounds of the quickstart cost comparison")
    parser.add_argument("--cost-only", action="store_true", help="skip the accuracies")
    args = parser.parse_args()
    if not args.cost_only:
        accuracies(args.seeds, args.processes)
    quickstart_cost(args.cost_repeats)


if __name__ == "__main__":
    main()
