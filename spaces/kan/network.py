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

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02, grid_size: int | None = None) -> None:
        """Refit every layer's grid to its inputs on the samples ``x``, first layer first (each layer sees its
        inputs as the updated layers before it produce them); see ``KANLayer.update_grid``."""
        for layer in self.layers:
            layer.update_grid(x, grid_eps, grid_size)
            x = layer(x)
