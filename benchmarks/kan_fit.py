"""KAN fits side by side with pykan 0.2.8: ten Feynman equations and exp(sin(pi x) + y^2), test RMSE and seconds.

    PYTHONPATH=. .venv/bin/python benchmarks/kan_fit.py [--seeds 0 1 2] [--pykan-steps 100] [--steps 2000]
    PYTHONPATH=. .venv/bin/python benchmarks/kan_fit.py --families     # the per-family table (fixed grid)

Needs pykan (``.venv/bin/pip install pykan==0.2.8``, the ``bench`` extra). Both run in float64 on one thread,
one task and seed after the other, pykan then LayerForge, so they see the same machine load.

Data: 1,000 train / 1,000 test points per task (data seed 0): the Feynman equations of ``evaluators.feynman``
(``BENCHMARK``, inputs uniform on the equation's ranges) and ``fit_exp_sin`` (U[-1, 1]^2).
Model: widths [d, 5, 1], grid 5, spline order 3, base branch, for both. pykan: ``KAN(width, grid=5, k=3,
seed=s)`` trained by its own ``fit(opt="LBFGS", steps=P)`` (its defaults: 20 LBFGS iterations per step, grid
update from the samples every 5 steps during the first 50). LayerForge: the same network as a KanSpace
genome, trained by the proxies' recipe code (``evaluators.fitting``): full-batch LBFGS, strong Wolfe,
memory 30 (pykan's 10), ``--steps`` iterations (the default matches pykan's 100 x 20), grid updates
(grid_eps 0.02, like pykan's) at the same points of the schedule as pykan's.
Seconds: CPU time of the training call alone (``time.process_time``), mean over the seeds; RMSE: median.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time

import torch

from evaluators.config import Recipe
from evaluators.feynman import BENCHMARK, feynman_data
from evaluators.fitting import fit
from evaluators.registry import Dataset, get_dataset
from spaces.kan import BASES, KANLayer, KANNetwork, KanSpace

PYKAN_PUBLISHED = 1.8e-2


def task_data(name: str) -> Dataset:
    """float64 train/test split of a Feynman equation or of ``fit_exp_sin``."""
    if name == "exp_sin":
        data = get_dataset("fit_exp_sin")(seed=0)
        x, y = torch.cat([data.x_train, data.x_test]).double(), torch.cat([data.y_train, data.y_test]).double()
    else:
        x, y = feynman_data(name, 2000, torch.Generator().manual_seed(0))
    return Dataset(x[:1000], y[:1000], x[1000:], y[1000:], task="regression", name=name)


def rmse(model: torch.nn.Module, data: Dataset) -> float:
    with torch.no_grad():
        return ((model(data.x_val) - data.y_val) ** 2).mean().sqrt().item()


def run_pykan(data: Dataset, seed: int, steps: int) -> tuple[float, float]:
    from kan import KAN  # benchmark-only dependency: pip install pykan==0.2.8

    model = KAN(width=[data.x_train.shape[1], 5, 1], grid=5, k=3, seed=seed, auto_save=False)
    split = {"train_input": data.x_train, "train_label": data.y_train}
    split |= {"test_input": data.x_val, "test_label": data.y_val}
    start = time.process_time()
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
        model.fit(split, opt="LBFGS", steps=steps, log=steps)
    return rmse(model, data), time.process_time() - start


def run_layerforge(data: Dataset, seed: int, steps: int, pykan_steps: int) -> tuple[float, float]:
    layer = {"family": "bspline", "grid": 5, "order": 3, "base": True, "norm": "none"}
    genome = {"space": "kan", "v": 1, "hidden": [5], "layers": [layer, layer]}
    torch.manual_seed(seed)
    model = KanSpace().build(genome, in_features=data.x_train.shape[1], out_features=1).double()
    per_step = steps / pykan_steps  # pykan's grid updates: before its steps 0, 5, .., 45
    updates = [round(s * per_step) for s in range(0, min(50, pykan_steps), 5)]
    recipe = Recipe(optimizer="lbfgs", grid_updates=sorted(set(updates)), grid_eps=0.02)
    start = time.process_time()
    fit(model, data, torch.nn.functional.mse_loss, recipe, steps=steps, lr=1.0, batch_size=0, weight_decay=0, seed=seed)
    return rmse(model, data), time.process_time() - start


def compare(args: argparse.Namespace) -> None:
    tasks = [*args.tasks, "exp_sin"]
    print(
        f"widths [d, 5, 1], grid 5, order 3, float64, 1 thread; pykan fit(LBFGS, steps={args.pykan_steps}); "
        f"LayerForge LBFGS {args.steps} iterations; seeds {args.seeds}; torch {torch.__version__}; "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| task | d | pykan RMSE | LayerForge RMSE | RMSE ours / pykan | pykan s | LayerForge s | time ours/pykan |")
    print("|---|---|---|---|---|---|---|---|")
    wins = 0
    totals = {"pykan": 0.0, "ours": 0.0}
    for task in tasks:
        data = task_data(task)
        runs: dict[str, list[tuple[float, float]]] = {"pykan": [], "ours": []}
        for seed in args.seeds:
            runs["pykan"].append(run_pykan(data, seed, args.pykan_steps))
            runs["ours"].append(run_layerforge(data, seed, args.steps, args.pykan_steps))
        err = {k: statistics.median(r for r, _ in v) for k, v in runs.items()}
        sec = {k: statistics.mean(s for _, s in v) for k, v in runs.items()}
        totals = {k: totals[k] + sum(s for _, s in runs[k]) for k in totals}
        ratio = err["ours"] / err["pykan"]
        wins += task != "exp_sin" and ratio <= 1.5
        print(
            f"| {task} | {data.x_train.shape[1]} | {err['pykan']:.2e} | {err['ours']:.2e} | {ratio:.2f} "
            f"| {sec['pykan']:.1f} | {sec['ours']:.1f} | {sec['ours'] / sec['pykan']:.2f} |",
            flush=True,
        )
    feynman = len(tasks) - 1
    print(f"\nFeynman equations with LayerForge's median RMSE within 1.5x of pykan's or better: {wins} of {feynman}")
    print(
        f"total training CPU seconds: pykan {totals['pykan']:.0f}, LayerForge {totals['ours']:.0f} "
        f"({totals['ours'] / totals['pykan']:.2f}x); load average at the end {os.getloadavg()[0]:.1f}"
    )


def fit_rmse(family: str, grid: int, order: int, steps: int, seed: int) -> float:
    data = get_dataset("fit_exp_sin")(seed=0)
    x, y = data.x_train.double(), data.y_train.double()
    torch.manual_seed(seed)
    k = grid + order - 1 if "degree" in BASES[family].uses else order
    model = KANNetwork([KANLayer(2, 5, family, grid, k), KANLayer(5, 1, family, grid, k)]).double()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=20, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    with torch.no_grad():
        return ((model(data.x_test.double()) - data.y_test.double()) ** 2).mean().sqrt().item()


def per_family(args: argparse.Namespace) -> None:
    """Every family on exp(sin(pi x) + y^2), fixed grid on [-1, 1], LBFGS ``--family-steps`` x 20 iterations."""
    runs = [("bspline", 3), *((f, 5) for f in BASES)]
    print(f"exp(sin(pi x) + y^2), widths [2, 5, 1], LBFGS {args.family_steps}x20 iterations, seeds {args.seeds}\n")
    print("| family | grid | test RMSE (median) | best | worst | median / pykan's 1.8e-2 (grid 3) | seconds per run |")
    print("|---|---|---|---|---|---|---|")
    for family, grid in runs:
        start = time.perf_counter()
        rmses = [fit_rmse(family, grid, 3, args.family_steps, seed) for seed in args.seeds]
        per_run = (time.perf_counter() - start) / len(rmses)
        med = statistics.median(rmses)
        print(
            f"| {family} | {grid} | {med:.2e} | {min(rmses):.2e} | {max(rmses):.2e} "
            f"| {med / PYKAN_PUBLISHED:.2g} | {per_run:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="*", default=list(BENCHMARK), help="Feynman equations (exp_sin always runs)")
    parser.add_argument("--pykan-steps", type=int, default=100, help="pykan fit steps (20 LBFGS iterations each)")
    parser.add_argument("--steps", type=int, default=2000, help="LayerForge LBFGS iterations")
    parser.add_argument("--families", action="store_true", help="per-family table instead of the pykan comparison")
    parser.add_argument("--family-steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.families:
        per_family(args)
        return
    torch.set_default_dtype(torch.float64)  # pykan builds its tensors in the default dtype
    compare(args)


if __name__ == "__main__":
    main()
