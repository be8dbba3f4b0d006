"""Seeded proxy training and evaluation, with activation diagnostics from the candidate slots.

Everything random (initialisation, the candidate's own parameters, batch order) draws from a seeded RNG
scoped to one call, so the same seed gives the same metrics and the worker's global RNG is left alone.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from evaluators.archs import candidate_slots
from evaluators.config import ProxyConfig
from evaluators.fitting import NonFiniteLoss, fit, recipe_for  # noqa: F401 (NonFiniteLoss: callers catch it from here)
from evaluators.registry import Dataset, get_arch
from evaluators.splits import VAL, Split
from spaces import Genome, Space

DIAGNOSTIC_BATCH = 512
LATENCY_BATCH = 256
LATENCY_REPEATS = 5
_EVAL_CHUNK = 2048
CURVE_POINTS = 10  # points of the stored learning curve
_TASK_METRICS = {"classification": ("acc", "loss"), "regression": ("rmse", "loss")}  # prefixed with the split
_COMMON_METRICS = ("train_loss", "train_seconds", "steps", "params", "act_params", "latency_ms")
_DIAGNOSTICS = ("act_zero_fraction", "act_dead_fraction", "act_max_ratio")


def metric_names(task: str, split: Split = VAL) -> tuple[str, ...]:
    """What ``train_proxy`` reports for a dataset of this task, so objective names can be checked up front."""
    return tuple(f"{split}_{metric}" for metric in _TASK_METRICS[task]) + _COMMON_METRICS + _DIAGNOSTICS


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Fork torch's RNG (CPU and, when used, CUDA), seeded, so a call is reproducible and leaves no trace."""
    cuda_devices = (
        [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield


def build_model(space: Space, genome: Genome, dataset: Dataset, proxy: ProxyConfig, device: torch.device) -> nn.Module:
    """The proxy architecture with the candidate in every slot; call inside ``seeded`` for a fixed init."""
    return get_arch(proxy.arch)(space, genome, dataset, **proxy.arch_options).to(device)


def task_loss(dataset: Dataset, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classification, mean squared error for regression."""
    if dataset.task == "classification":
        return F.cross_entropy(output, target)
    return F.mse_loss(output.reshape(target.shape), target)


def train_proxy(
    space: Space,
    genome: Genome,
    dataset: Dataset,
    proxy: ProxyConfig,
    *,
    seed: int,
    steps: int,
    device: torch.device,
    amp: bool = False,
    split: Split = VAL,
) -> dict[str, float]:
    """Build, train for ``steps`` iterations of the proxy's recipe (Adam unless the proxy or the genome picks
    another, see ``evaluators.fitting``) and evaluate one proxy; raises NonFiniteLoss on divergence.

    ``split`` is where it is scored (``Dataset.fitting`` says what it trains on); the activation diagnostics and
    the latency always run on validation inputs. ``amp`` trains under bfloat16 autocast on CUDA (faster, less
    memory); scoring stays float32.
    """
    recipe = recipe_for(proxy, genome)
    with seeded(seed, device):
        model = build_model(space, genome, dataset, proxy, device)
        start = time.perf_counter()
        losses = fit(
            model,
            dataset.fitting(split),
            lambda output, target: task_loss(dataset, output, target),
            recipe,
            steps=steps,
            lr=proxy.lr,
            batch_size=proxy.batch_size,
            weight_decay=proxy.weight_decay,
            seed=seed,
            amp=amp,
            lr_schedule=proxy.lr_schedule,
            warmup_fraction=proxy.warmup_fraction,
        )
        train_seconds = time.perf_counter() - start
        metrics = evaluate_model(model, dataset, split)
        metrics.update(activation_diagnostics(model, dataset.x_val[:DIAGNOSTIC_BATCH]))
        metrics["latency_ms"] = forward_latency_ms(model, dataset.x_val[:LATENCY_BATCH])
    metrics.update(loss_metrics(losses))
    metrics.update(
        train_seconds=train_seconds,
        steps=float(steps),
        params=float(sum(p.numel() for p in model.parameters())),
        act_params=float(sum(p.numel() for slot in candidate_slots(model) for p in slot.parameters())),
    )
    return metrics


def loss_metrics(losses: list[float]) -> dict[str, Any]:
    """``train_loss``: the mean over the last tenth of the steps (less noisy than the last step);
    ``train_loss_curve``: the mean loss over each tenth of the run, in order, the learning curve the dashboard draws
    (fewer points for a run of fewer steps). A list, so the numeric views of metrics leave it out."""
    count = len(losses)
    tail = losses[-max(1, count // 10) :]
    points = min(CURVE_POINTS, count)
    chunks = [losses[i * count // points : (i + 1) * count // points] for i in range(points)]
    return {"train_loss": sum(tail) / len(tail), "train_loss_curve": [sum(c) / len(c) for c in chunks]}


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, split: Split = VAL) -> dict[str, float]:
    """Loss plus accuracy (classification) or RMSE (regression) on ``split``, in eval mode, named ``{split}_*``."""
    model.eval()
    inputs, targets = dataset.scored_on(split)
    total_loss, correct, count = 0.0, 0, 0
    for begin in range(0, len(inputs), _EVAL_CHUNK):
        x = inputs[begin : begin + _EVAL_CHUNK]
        y = targets[begin : begin + _EVAL_CHUNK]
        output = model(x)
        total_loss += task_loss(dataset, output, y).item() * len(x)
        if dataset.task == "classification":
            correct += int((output.argmax(dim=1) == y).sum())
        count += len(x)
    loss = total_loss / count
    if dataset.task == "classification":
        return {f"{split}_loss": loss, f"{split}_acc": correct / count}
    return {f"{split}_loss": loss, f"{split}_rmse": math.sqrt(loss) if loss >= 0 else math.nan}


@torch.no_grad()
def forward_latency_ms(model: nn.Module, x: torch.Tensor, repeats: int = LATENCY_REPEATS) -> float:
    """Median eval-mode forward time on one fixed batch, after a warm-up call (the latency objective)."""
    model.eval()
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    model(x)
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        model(x)
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _units(activation: torch.Tensor, layout: str) -> torch.Tensor:
    """(units, samples): a unit is a feature of a 2-D output, a channel of a larger one.

    Channels are dim 1 in layout "nchw" and the last dim of (N, L, C) tokens in layout "nlc".
    """
    if activation.dim() <= 2:
        return activation.reshape(len(activation), -1).T
    if layout == "nlc":
        return activation.reshape(-1, activation.shape[-1]).T
    return activation.transpose(0, 1).reshape(activation.shape[1], -1)


@torch.no_grad()
def activation_diagnostics(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Sparsity, dead units and massive activations of the candidate slots on one validation batch.

    ``act_zero_fraction``: share of exact zeros; ``act_dead_fraction``: share of units constant over the batch;
    ``act_max_ratio``: max |a| / median of the non-zero |a| (zeros excluded so sparse activations stay finite).
    All are 0 for a model without slots.
    """
    outputs: list[tuple[torch.Tensor, str]] = []
    hooks = [
        slot.register_forward_hook(
            lambda module, _inputs, output: outputs.append((output.detach().float(), module.layout))
        )
        for slot in candidate_slots(model)
    ]
    model.eval()
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    zeros = elements = dead = units = 0
    max_ratio = 0.0
    for activation, layout in outputs:
        zeros += int((activation == 0).sum())
        elements += activation.numel()
        per_unit = _units(activation, layout)
        spread = per_unit.amax(dim=1) - per_unit.amin(dim=1)
        scale = per_unit.abs().amax(dim=1).clamp_min(1.0)
        dead += int((spread <= 1e-6 * scale).sum())
        units += len(per_unit)
        magnitude = activation.abs().flatten()
        nonzero = magnitude[magnitude > 0]
        if len(nonzero):
            max_ratio = max(max_ratio, float(nonzero.max() / nonzero.median()))
    return {
        "act_zero_fraction": zeros / max(elements, 1),
        "act_dead_fraction": dead / max(units, 1),
        "act_max_ratio": max_ratio,
    }
