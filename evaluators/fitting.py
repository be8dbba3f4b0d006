"""Proxy training loops: Adam on mini-batches or full-batch LBFGS, with KAN grid updates on a schedule.

A ``Recipe`` (in the proxy config, or named by the genome's ``recipe`` field) picks the loop. Both record
the training loss of every loss evaluation and raise ``NonFiniteLoss`` on a NaN or infinite one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from evaluators.config import ProxyConfig, Recipe
from evaluators.registry import Dataset
from spaces import Genome
from spaces.kan import KANNetwork

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

GRID_SAMPLES = 4096  # training rows a grid update sees (a seeded random subset of larger sets)


class NonFiniteLoss(ArithmeticError):
    """Training produced a NaN or infinite loss; the candidate is rejected, not the worker."""


def recipe_for(proxy: ProxyConfig, genome: Genome) -> Recipe:
    """The genome's named recipe when it has one (KAN space option ``recipes``), else the proxy's own."""
    name = genome.get("recipe")
    if name is None:
        return proxy.recipe
    if name not in proxy.recipes:
        known = ", ".join(sorted(proxy.recipes)) or "none"
        raise ValueError(
            f"the genome trains with recipe {name!r}, but proxy {proxy.name!r} defines recipes: {known}; "
            "add it under the proxy's recipes"
        )
    return proxy.recipes[name]


def update_kan_grids(model: nn.Module, x: torch.Tensor, grid_eps: float, grid_size: int | None) -> None:
    """Refit the grids of every KAN network inside ``model`` to the inputs that ``x`` gives it."""
    inputs: dict[KANNetwork, torch.Tensor] = {}
    nets = [m for m in model.modules() if isinstance(m, KANNetwork)]
    if not nets:
        raise ValueError("grid updates need a KAN model (arch 'kan'); drop grid_updates from this proxy's recipe")
    hooks = [net.register_forward_pre_hook(lambda m, args: inputs.setdefault(m, args[0])) for net in nets]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    for net in nets:
        net.update_grid(inputs[net], grid_eps, grid_size)


def fit(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    recipe: Recipe,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    amp: bool = False,
    lr_schedule: str = "constant",
    warmup_fraction: float = 0.0,
) -> list[float]:
    """Train ``model`` in place for ``steps`` iterations of the recipe's optimizer; returns the losses.

    ``lr``, ``batch_size`` and ``weight_decay`` are the proxy's, for Adam (a recipe's own lr wins); LBFGS takes
    the whole training set and the recipe's lr (1.0 by default). ``lr_schedule`` and ``warmup_fraction`` shape
    Adam's lr over the steps (``lr_factor``). ``amp`` (bfloat16 autocast on CUDA) applies
    to Adam only: LBFGS's line search needs float32 or better.
    """
    model.train()
    schedule = dict(zip(recipe.grid_updates, recipe.grid_sizes or [None] * len(recipe.grid_updates), strict=True))
    grid_rows = _grid_rows(dataset, seed)

    def update_grids(step: int) -> None:
        update_kan_grids(model, grid_rows, recipe.grid_eps, schedule[step])

    if recipe.optimizer == "lbfgs":
        return _lbfgs(model, dataset, loss_fn, recipe, steps, schedule, update_grids)
    lr = recipe.lr or lr
    factors = [lr_factor(step, steps, lr_schedule, warmup_fraction) for step in range(1, steps + 1)]
    return _adam(model, dataset, loss_fn, lr, weight_decay, factors, batch_size, seed, amp, schedule, update_grids)


def lr_factor(step: int, steps: int, schedule: str, warmup_fraction: float) -> float:
    """The multiple of the base lr at 1-based ``step``: a linear warm-up over ``warmup_fraction`` of the steps
    (it keeps activations like softplus from diverging in the first Adam steps at a high lr), then constant or
    a cosine decay towards zero at ``steps``."""
    warmup_steps = round(warmup_fraction * steps)
    if step <= warmup_steps:
        return step / (warmup_steps + 1)
    if schedule == "cosine":
        progress = (step - warmup_steps - 1) / max(1, steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def _grid_rows(dataset: Dataset, seed: int) -> torch.Tensor:
    x = dataset.x_train
    if len(x) <= GRID_SAMPLES:
        return x
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x[order[:GRID_SAMPLES].to(x.device)]


def _checked(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise NonFiniteLoss(f"training loss became {value} at {where}")
    return value


def _adam(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    lr: float,
    weight_decay: float,
    lr_factors: list[float],
    batch_size: int,
    seed: int,
    amp: bool,
    schedule: dict[int, int | None],
    update_grids: Callable[[int], None],
) -> list[float]:
    x, y = dataset.x_train, dataset.y_train
    # bfloat16 has float32's range, so no loss scaling is needed; CPU runs the same config in float32.
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and x.device.type == "cuda")
    n = len(x)
    batch_size = min(batch_size, n)
    order_rng = torch.Generator().manual_seed(seed)
    order, position = torch.randperm(n, generator=order_rng), 0
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    steps = len(lr_factors)
    for step, factor in enumerate(lr_factors, start=1):
        if step - 1 in schedule:  # a grid update may replace parameters: a fresh optimizer follows it
            update_grids(step - 1)
            optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        if position + batch_size > n:
            order, position = torch.randperm(n, generator=order_rng), 0
        index = order[position : position + batch_size].to(x.device)
        position += batch_size
        with autocast:
            loss = loss_fn(model(x[index]), y[index])
        losses.append(_checked(loss.item(), f"step {step} of {steps}"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = lr * factor
        optimizer.step()
    return losses


def _lbfgs(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: LossFn,
    recipe: Recipe,
    steps: int,
    schedule: dict[int, int | None],
    update_grids: Callable[[int], None],
) -> list[float]:
    """Full-batch LBFGS with strong Wolfe line search, restarted (fresh memory) after each grid update.

    It minimises the loss times N / var(y) (regression) or times N (classification): the same minimum, but
    torch's LBFGS drops curvature pairs with y.s <= 1e-10, which stalls fits whose MSE is far below the
    targets' variance unless the loss is on that scale.
    """
    x, y = dataset.x_train, dataset.y_train
    scale = len(x) / (max(y.float().var().item(), 1e-12) if dataset.task == "regression" else 1.0)
    losses: list[float] = []

    def closure() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        losses.append(_checked(loss.item(), f"loss evaluation {len(losses) + 1} (LBFGS, {steps} steps)"))
        scaled = loss * scale
        scaled.backward()
        return scaled

    bounds = sorted({0, steps, *(s for s in schedule if s < steps)})
    for begin, end in zip(bounds, bounds[1:], strict=False):
        if begin in schedule:
            update_grids(begin)
        optimizer = torch.optim.LBFGS(
            model.parameters(),
            lr=recipe.lr or 1.0,
            max_iter=end - begin,
            history_size=recipe.history_size,
            tolerance_grad=1e-32,
            tolerance_change=1e-32,
            line_search_fn="strong_wolfe",
        )
        optimizer.step(closure)
    return losses
