"""Small proxy architectures with candidate slots, sized to train in seconds on one CPU thread.

Every place the candidate layer goes is a ``CandidateSlot`` holding its own ``space.build(...)`` instance,
so learnable parameters are per layer and training can find the slots to record activation diagnostics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from evaluators.registry import Dataset, register_arch
from spaces import Genome, Space


class CandidateSlot(nn.Module):
    """One use of the candidate layer inside a proxy model; training hooks these for activation diagnostics.

    ``layout`` says where the units of the slot's output are: "nchw" (dim 1: features or channels) or
    "nlc" (the last dim: the channels of (N, L, C) tokens).
    """

    def __init__(self, layer: nn.Module, layout: str = "nchw"):
        super().__init__()
        self.layer = layer
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def candidate_slots(model: nn.Module) -> list[CandidateSlot]:
    return [module for module in model.modules() if isinstance(module, CandidateSlot)]


def _slot(space: Space, genome: Genome, channels: int) -> CandidateSlot:
    return CandidateSlot(space.build(genome, channels=channels))


def _widths(name: str, values: Sequence[int]) -> list[int]:
    widths = [int(v) for v in values]
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {list(values)}")
    return widths


@register_arch("mlp")
def build_mlp(space: Space, genome: Genome, dataset: Dataset, *, hidden: Sequence[int] = (64, 64)) -> nn.Module:
    """Flatten -> [Linear -> candidate] per hidden width -> Linear head."""
    widths = _widths("mlp hidden", hidden)
    in_features = 1
    for size in dataset.input_shape:
        in_features *= size
    layers: list[nn.Module] = [nn.Flatten()]
    for width in widths:
        layers += [nn.Linear(in_features, width), _slot(space, genome, width)]
        in_features = width
    layers.append(nn.Linear(in_features, dataset.output_size))
    return nn.Sequential(*layers)


@register_arch("cnn1d")
def build_cnn1d(
    space: Space,
    genome: Genome,
    dataset: Dataset,
    *,
    channels: Sequence[int] = (32, 32, 32),
    kernel_size: int = 5,
) -> nn.Module:
    """[Conv1d -> candidate -> MaxPool(2)] per channel count -> Linear head, for 1-D signals (B, L) or (B, C, L)."""
    widths = _widths("cnn1d channels", channels)
    shape = dataset.input_shape
    if len(shape) not in (1, 2):
        raise ValueError(f"cnn1d needs 1-D signals shaped (L,) or (C, L), got input shape {shape}")
    in_channels, length = (1, shape[0]) if len(shape) == 1 else shape
    if length < 2 ** len(widths):
        raise ValueError(f"cnn1d: signal length {length} is too short for {len(widths)} pooling layers")
    layers: list[nn.Module] = [nn.Unflatten(1, (1, length))] if len(shape) == 1 else []
    for width in widths:
        layers += [
            nn.Conv1d(in_channels, width, kernel_size, padding=kernel_size // 2),
            _slot(space, genome, width),
            nn.MaxPool1d(2),
        ]
        in_channels, length = width, length // 2
    layers += [nn.Flatten(), nn.Linear(in_channels * length, dataset.output_size)]
    return nn.Sequential(*layers)
