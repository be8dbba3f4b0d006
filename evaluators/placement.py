"""Placement robustness: does the layer keep a deep residual stack finite and bounded at initialization?

An activation on the sum of a residual block, as in ResNet's post-activation BasicBlock
``act(x + bn(conv(act(bn(conv(x))))))``, is applied to the stream again at every block: an x^2-like layer
compounds and diverges, where the same layer inside a pre-activation block ``x + conv(act(bn(conv(act(bn(x))))))``
(or a transformer's FFN) is harmless. The proxies are shallow and have no such stream, so training on them does
not show it. This stage builds both blocks ``blocks`` deep with the candidate in every slot, runs one forward and
one backward pass in train mode, and measures how much the activations' and the input gradient's RMS grow over
the stack. A norm-act candidate takes each (norm, activation) pair's place: there is no BatchNorm before it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from evaluators.cascade import Rejected
from evaluators.config import PlacementCheck
from evaluators.training import seeded
from spaces import Genome, Space

BLOCKS = {
    "post": "post-activation block act(x + bn(conv(act(bn(conv(x))))))",
    "pre": "pre-activation block x + conv(act(bn(conv(act(bn(x))))))",
}


def applies_to(space: Space) -> bool:
    """Only layers that sit in a network's slots: a task-sized genome (a KAN) is a whole network."""
    return not space.task_sized


def candidate_is_norm(space: Space, config: PlacementCheck) -> bool:
    if config.norm == "auto":
        return space.normalizes
    return config.norm == "candidate"


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions of ``channels`` channels with a candidate after each norm, in either arrangement."""

    def __init__(self, make_candidate: Callable[[], nn.Module], channels: int, batchnorm: bool, post: bool):
        super().__init__()
        self.post = post
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels) if batchnorm else nn.Identity()
        self.norm2 = nn.BatchNorm2d(channels) if batchnorm else nn.Identity()
        self.act1, self.act2 = make_candidate(), make_candidate()
        for conv in (self.conv1, self.conv2):  # torchvision's ResNet initialization
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post:
            return self.act2(x + self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x))))))
        return x + self.conv2(self.act2(self.norm2(self.conv1(self.act1(self.norm1(x))))))


def _rms(t: torch.Tensor) -> float:
    return t.detach().double().square().mean().sqrt().item()


def _growth(name: str, values: list[float], reference: float, limit: float, blocks: int) -> tuple[float, str | None]:
    """Largest RMS over ``values`` relative to ``reference``, and the problem with it, if any."""
    bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
    if bad is not None:
        return math.inf, f"{name} non-finite" + (f" from block {bad + 1} of {blocks}" if len(values) > 1 else "")
    growth = max(values) / reference
    if growth > limit:
        return growth, f"{name} grow {growth:.3g}x over {blocks} blocks (limit {limit:g}x)"
    return growth, None


def _measure(
    space: Space, genome: Genome, config: PlacementCheck, post: bool, *, seed: int, device: torch.device
) -> tuple[dict[str, float], list[str]]:
    batchnorm = not candidate_is_norm(space, config)
    shape = (config.batch, config.channels, config.size, config.size)
    with seeded(seed, device):
        blocks = [
            ResidualBlock(lambda: space.build(genome, channels=config.channels), config.channels, batchnorm, post)
            for _ in range(config.blocks)
        ]
        stack = nn.Sequential(*blocks).to(device).train()
        x = torch.randn(shape, device=device, requires_grad=True)
        cotangent = torch.randn(shape, device=device)
    h, rms = x, []
    for block in stack:
        h = block(h)
        rms.append(_rms(h))
    act_growth, problem = _growth("activations", rms, _rms(x), config.max_activation_growth, config.blocks)
    problems = [problem] if problem else []
    grad_growth = math.inf  # not measured through non-finite activations
    if math.isfinite(act_growth) and h.requires_grad:
        (gradient,) = torch.autograd.grad(h, x, grad_outputs=cotangent, allow_unused=True)
        gradient_rms = 0.0 if gradient is None else _rms(gradient)
        limit = config.max_gradient_growth
        grad_growth, problem = _growth("input gradients", [gradient_rms], _rms(cotangent), limit, config.blocks)
        problems += [problem] if problem else []
    form = "post" if post else "pre"
    return {f"placement_{form}_act_growth": act_growth, f"placement_{form}_grad_growth": grad_growth}, problems


def check_placement(
    space: Space, genome: Genome, config: PlacementCheck, *, seed: int, device: torch.device
) -> dict[str, Any]:
    """Both blocks ``config.blocks`` deep at initialization; raises ``Rejected`` with the reason, or in "warn" mode
    returns the reason under ``metrics["warnings"]``. Metrics: ``placement_{post,pre}_{act,grad}_growth``."""
    metrics: dict[str, Any] = {}
    reasons = []
    for form, description in BLOCKS.items():
        measured, problems = _measure(space, genome, config, form == "post", seed=seed, device=device)
        metrics.update(measured)
        if problems:
            reasons.append(f"{description}: {', '.join(problems)}")
    if reasons:
        message = f"placement: {'; '.join(reasons)}"
        if config.on_fail == "reject":
            raise Rejected(message)
        metrics["warnings"] = [message]
    return metrics
