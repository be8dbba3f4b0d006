"""Train K candidates on one proxy at once, as one stacked model (``evaluators.stacked``), with the metrics that
``train_proxy`` gives each of them alone.

Exactness: each member is built under its own seed exactly as ``train_proxy`` builds it, draws its mini-batches
from its own ``torch.Generator(seed)`` in the same order, and the loss is the sum of the members' mean losses, so
one Adam over the stacked tensors (Adam is elementwise) takes the steps K separate Adams take. A member whose loss
goes NaN or infinite is masked out of the sum from that step on and reported as ``NonFiniteLoss``; the others
train on unchanged. Whatever the stack cannot express (another architecture, LBFGS, KAN grid updates, members
with different recipes) trains one at a time through ``train_proxy``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
from torch import nn

from evaluators.archs import candidate_slots
from evaluators.config import ProxyConfig, Recipe
from evaluators.fitting import LossFn, NonFiniteLoss, lr_factor, recipe_for
from evaluators.registry import Dataset
from evaluators.splits import VAL, Split
from evaluators.stacked import NotStackable, StackedModel
from evaluators.training import (
    DIAGNOSTIC_BATCH,
    LATENCY_BATCH,
    activation_diagnostics,
    build_model,
    evaluate_model,
    forward_latency_ms,
    loss_metrics,
    seeded,
    task_loss,
    train_proxy,
)
from spaces import Genome, Space

Result = dict[str, float] | Exception  # a member's metrics, or why it has none


def train_together(
    space: Space,
    genomes: Sequence[Genome],
    dataset: Dataset,
    proxy: ProxyConfig,
    *,
    seeds: Sequence[int],
    steps: int,
    device: torch.device,
    stack: int,
    amp: bool = False,
    split: Split = VAL,
) -> list[Result]:
    """One result per genome: ``train_proxy``'s metrics, or the exception that stopped that member alone
    (``NonFiniteLoss``, a ``GenomeError`` from building it, ...).

    Members train in stacks of up to ``stack`` (1: one at a time, exactly ``train_proxy``); a stack's training
    time is shared out evenly among its members (``train_seconds``).
    """
    results: list[Result] = []
    for begin in range(0, len(genomes), stack):
        group, group_seeds = genomes[begin : begin + stack], seeds[begin : begin + stack]
        results += _train_group(space, group, dataset, proxy, group_seeds, steps, device, amp, split)
    return results


def _train_group(
    space: Space,
    genomes: Sequence[Genome],
    dataset: Dataset,
    proxy: ProxyConfig,
    seeds: Sequence[int],
    steps: int,
    device: torch.device,
    amp: bool,
    split: Split,
) -> list[Result]:
    """Train one group as a stack; where it cannot stack, or the stack breaks, each member trains alone.
    Every member's metrics say how many trained in its stack (``stacked``, 1 when alone)."""
    recipes = [_recipe(proxy, genome) for genome in genomes]
    if len(genomes) > 1 and all(_stackable_recipe(r) for r in recipes) and len({r.lr for r in recipes}) == 1:
        try:
            return _train_stacked(space, genomes, dataset, proxy, recipes[0], seeds, steps, device, amp, split)
        except (NotStackable, RuntimeError):  # no batched form, or one member broke the stack: each trains alone
            pass
    results = [
        _alone(space, genome, dataset, proxy, seed=seed, steps=steps, device=device, amp=amp, split=split)
        for genome, seed in zip(genomes, seeds, strict=True)
    ]
    return [result if isinstance(result, Exception) else {**result, "stacked": 1.0} for result in results]


def _recipe(proxy: ProxyConfig, genome: Genome) -> Recipe | None:
    try:
        return recipe_for(proxy, genome)
    except ValueError:
        return None  # train_proxy raises it again, for that member alone


def _stackable_recipe(recipe: Recipe | None) -> bool:
    return recipe is not None and recipe.optimizer == "adam" and not recipe.grid_updates


def _alone(space: Space, genome: Genome, dataset: Dataset, proxy: ProxyConfig, **kwargs) -> Result:
    try:
        return train_proxy(space, genome, dataset, proxy, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the member's own outcome; the proxy evaluator classifies it
        return exc


def _train_stacked(
    space: Space,
    genomes: Sequence[Genome],
    dataset: Dataset,
    proxy: ProxyConfig,
    recipe: Recipe,
    seeds: Sequence[int],
    steps: int,
    device: torch.device,
    amp: bool,
    split: Split,
) -> list[Result]:
    results: list[Result | None] = [None] * len(genomes)
    models: dict[int, nn.Module] = {}
    for index, (genome, seed) in enumerate(zip(genomes, seeds, strict=True)):
        try:
            with seeded(seed, device):
                models[index] = build_model(space, genome, dataset, proxy, device)
        except Exception as exc:  # noqa: BLE001 - this member does not build; the others go on
            results[index] = exc
    members = list(models)
    if len(members) < 2:
        raise NotStackable("fewer than two members built")
    stacked = StackedModel([models[i] for i in members])
    start = time.perf_counter()
    losses, failures = fit_stacked(
        stacked,
        dataset.fitting(split),
        [seeds[i] for i in members],
        steps=steps,
        lr=recipe.lr or proxy.lr,
        batch_size=proxy.batch_size,
        weight_decay=proxy.weight_decay,
        lr_schedule=proxy.lr_schedule,
        warmup_fraction=proxy.warmup_fraction,
        amp=amp,
        loss_fn=lambda output, target: task_loss(dataset, output, target),
    )
    stacked.write_back()
    train_seconds = (time.perf_counter() - start) / len(members)
    for position, index in enumerate(members):
        if position in failures:
            results[index] = failures[position]
            continue
        metrics = _scored(models[index], dataset, split)
        metrics.update(loss_metrics(losses[position]))
        metrics.update(
            train_seconds=train_seconds,
            steps=float(steps),
            params=float(sum(p.numel() for p in models[index].parameters())),
            act_params=float(sum(p.numel() for slot in candidate_slots(models[index]) for p in slot.parameters())),
            stacked=float(len(members)),
        )
        results[index] = metrics
    return [result for result in results if result is not None]


def _scored(model: nn.Module, dataset: Dataset, split: Split) -> dict[str, float]:
    """What ``train_proxy`` measures after training, on the member's own model."""
    metrics = evaluate_model(model, dataset, split)
    metrics.update(activation_diagnostics(model, dataset.x_val[:DIAGNOSTIC_BATCH]))
    metrics["latency_ms"] = forward_latency_ms(model, dataset.x_val[:LATENCY_BATCH])
    return metrics


def fit_stacked(
    model: StackedModel,
    dataset: Dataset,
    seeds: Sequence[int],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    lr_schedule: str = "constant",
    warmup_fraction: float = 0.0,
    amp: bool = False,
    loss_fn: LossFn,
) -> tuple[list[list[float]], dict[int, NonFiniteLoss]]:
    """Adam on the stacked model, each member on its own mini-batches; returns each member's losses and the
    members whose loss went non-finite (by position), with the error ``fit`` would have raised for it."""
    model.train()
    x, y = dataset.x_train, dataset.y_train
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and x.device.type == "cuda")
    n, count = len(x), len(seeds)
    batch_size = min(batch_size, n)
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    orders, position = [torch.randperm(n, generator=g) for g in generators], 0
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    alive = torch.ones(count, dtype=torch.bool, device=x.device)
    losses: list[list[float]] = [[] for _ in range(count)]
    failures: dict[int, NonFiniteLoss] = {}
    for step in range(1, steps + 1):
        if position + batch_size > n:
            orders, position = [torch.randperm(n, generator=g) for g in generators], 0
        index = torch.stack([order[position : position + batch_size] for order in orders]).to(x.device)
        position += batch_size
        with autocast:
            output, target = model(x[index]), y[index]
            # Each member's loss exactly as ``fit`` computes it alone (a batched reduction rounds differently).
            per_member = torch.stack([loss_fn(output[k], target[k]) for k in range(count)]).float()
        for member, value in enumerate(per_member.tolist()):
            if member in failures:
                continue
            if not math.isfinite(value):
                failures[member] = NonFiniteLoss(f"training loss became {value} at step {step} of {steps}")
                alive[member] = False
            else:
                losses[member].append(value)
        if len(failures) == count:
            break
        optimizer.zero_grad(set_to_none=True)
        # Summed, not averaged: each member's gradient is that of its own loss, as when it trains alone.
        torch.where(alive, per_member, torch.zeros_like(per_member)).sum().backward()
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_factor(step, steps, lr_schedule, warmup_fraction)
        optimizer.step()
    return losses, failures
