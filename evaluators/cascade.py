"""The rejection stages, cheapest first: each either passes (returning metrics) or raises ``Rejected``.

They are generic over spaces: they only use ``validate``, ``static_problems``, ``probe`` and the proxy
models, so a new space gets the whole cascade for free.
"""

from __future__ import annotations

import math

import torch

from evaluators.config import NumericProbe, ProxyConfig, QualityGate, StabilityCheck
from evaluators.registry import Dataset
from evaluators.training import build_model, seeded, task_loss
from spaces import Genome, GenomeError, Space

# |d output / d x| at or below this counts as flat (no learning signal through the candidate there).
FLAT_GRADIENT = 1e-6
PROJECTION_SEED = 0  # seeds the fixed random signs the probe's output is projected on


class Rejected(Exception):
    """The candidate failed a stage; the message is the recorded reason."""


def one_line(exc: BaseException) -> str:
    """The reason recorded for a failed evaluation: exception type and the first line of its message."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def check_static(space: Space, genome: Genome) -> dict[str, float]:
    """Whitelist validation and the space's own reasons to reject without running anything."""
    try:
        space.validate(genome)
    except GenomeError as exc:
        raise Rejected(f"invalid genome: {exc}") from None
    problems = space.static_problems(genome)
    if problems:
        raise Rejected("; ".join(problems))
    return {}


def _where(mask: torch.Tensor, grid: torch.Tensor) -> str:
    """Which probe points a mask marks: an x range for elementwise probes, a count otherwise."""
    count = int(mask.sum())
    if mask.shape == grid.shape:
        xs = grid[mask]
        return f"{count} of {grid.numel()} points, x in [{xs.min().item():.4g}, {xs.max().item():.4g}]"
    return f"{count} of {mask.numel()} values"


def random_signs(shape: torch.Size) -> torch.Tensor:
    """Fixed random +-1 weights: the probe differentiates ``sum(signs * y)`` rather than ``sum(y)``.

    For an elementwise layer this changes no gradient's magnitude, but a normalization's outputs sum to a
    constant, so ``sum(y)`` has a zero gradient although every output depends on x.
    """
    generator = torch.Generator().manual_seed(PROJECTION_SEED)
    return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1


def check_numeric_probe(space: Space, genome: Genome, config: NumericProbe) -> dict[str, float]:
    """Outputs and input gradients on a grid: finite, bounded, and not flat almost everywhere."""
    grid = torch.linspace(config.low, config.high, config.points)
    with seeded(0, torch.device("cpu")):
        module, inputs = space.probe(genome, grid)
        inputs = inputs.detach().clone().requires_grad_(True)
        output = module(inputs)
    values = output.detach()
    finite = torch.isfinite(values)
    if not finite.all():
        raise Rejected(f"numeric probe: non-finite output on {_where(~finite, grid)}")
    largest = values.abs().max().item()
    if largest > config.max_abs_output:
        too_big = values.abs() > config.max_abs_output
        raise Rejected(
            f"numeric probe: |output| up to {largest:.3g} exceeds {config.max_abs_output:.3g} "
            f"on {_where(too_big, grid)}"
        )
    if not output.requires_grad:
        raise Rejected("numeric probe: output does not depend on the input (no gradient)")
    projected = (output * random_signs(output.shape).to(output.dtype)).sum()
    (gradient,) = torch.autograd.grad(projected, inputs, allow_unused=True)
    if gradient is None:
        raise Rejected("numeric probe: output does not depend on the input (no gradient)")
    finite = torch.isfinite(gradient)
    if not finite.all():
        raise Rejected(f"numeric probe: non-finite gradient on {_where(~finite, grid)}")
    flat = gradient.abs() <= FLAT_GRADIENT
    flat_fraction = flat.float().mean().item()
    if flat_fraction > config.max_flat_fraction:
        raise Rejected(
            f"numeric probe: gradient ~0 on {flat_fraction:.1%} of the grid [{config.low:g}, {config.high:g}] "
            f"(limit {config.max_flat_fraction:.0%}; {_where(flat, grid)})"
        )
    return {"probe_flat_fraction": flat_fraction, "probe_max_abs_output": largest}


def check_stability(
    space: Space,
    genome: Genome,
    dataset: Dataset,
    proxy: ProxyConfig,
    config: StabilityCheck,
    *,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    """Sign-gradient ascent on an input perturbation that maximises the parameter-gradient norm at init.

    A candidate whose gradients explode under a few standard deviations of input shift would make training
    fragile; this finds that in a handful of forward/backward passes instead of a full training run.
    Where an op has no second derivative (e.g. hardsigmoid) the ascent follows the loss gradient instead.
    """
    with seeded(seed, device):
        model = build_model(space, genome, dataset, proxy, device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    x = dataset.x_train[: proxy.batch_size]
    y = dataset.y_train[: proxy.batch_size]
    delta = torch.zeros_like(x, requires_grad=True)
    second_order = True
    worst = 0.0
    for step in range(config.ascent_steps + 1):
        loss = task_loss(dataset, model(x + delta), y)
        grads = torch.autograd.grad(loss, params, create_graph=second_order, retain_graph=True, allow_unused=True)
        norm = torch.sqrt(sum((g.square().sum() for g in grads if g is not None), torch.zeros((), device=device)))
        value = norm.item()
        if not math.isfinite(value):
            raise Rejected(f"stability: parameter-gradient norm became {value} after {step} ascent steps")
        if value > config.threshold:
            raise Rejected(
                f"stability: parameter-gradient norm {value:.3g} exceeds {config.threshold:.3g} "
                f"after {step} ascent steps of size {config.step_size:g}"
            )
        worst = max(worst, value)
        if step == config.ascent_steps:
            break
        direction = None
        if second_order and norm.requires_grad:
            try:
                (direction,) = torch.autograd.grad(norm, delta, retain_graph=True, allow_unused=True)
            except RuntimeError:
                second_order = False
        if direction is None:
            (direction,) = torch.autograd.grad(loss, delta, allow_unused=True)
        if direction is None:
            break
        with torch.no_grad():
            delta += config.step_size * direction.sign()
    return {"stability_grad_norm": worst}


def gate_threshold(dataset: Dataset, config: QualityGate) -> float:
    """The validation accuracy a classification proxy must reach to pass the gate."""
    if config.min_val_acc is not None:
        return config.min_val_acc
    return config.min_chance_multiple / dataset.num_classes


def gate_proxy(proxy: ProxyConfig, config: QualityGate) -> ProxyConfig:
    """The proxy as the quality gate trains it: its settings with the gate's own lr warm-up."""
    return proxy.model_copy(update={"warmup_fraction": config.warmup_fraction})


def check_quality_gate(name: str, dataset: Dataset, metrics: dict[str, float], config: QualityGate) -> None:
    """A short training must get clearly above chance (classification) or stay finite (regression)."""
    if dataset.task == "classification":
        threshold = gate_threshold(dataset, config)
        accuracy = metrics["val_acc"]
        if not accuracy >= threshold:
            raise Rejected(
                f"quality gate: val_acc@{name} = {accuracy:.3f} after {config.steps} steps is below {threshold:.3f}"
            )
    elif not math.isfinite(metrics["val_loss"]):
        raise Rejected(f"quality gate: val_loss@{name} is {metrics['val_loss']} after {config.steps} steps")


def check_finite_objectives(objectives: dict[str, float]) -> None:
    bad = [f"{name}={value}" for name, value in objectives.items() if not math.isfinite(value)]
    if bad:
        raise Rejected(f"non-finite objectives: {', '.join(bad)}")
