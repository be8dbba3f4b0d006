"""A KAN network is a stack of KAN layers; the genome fixes each layer's family, grid, order and width."""

from __future__ import annotations

import torch
from torch import nn


class KANNetwork(nn.Module):
    """Applies its layers in turn; any leading batch dimensions pass through."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
