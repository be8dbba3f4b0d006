"""S-KAN style selectable layer: every output node mixes all candidate families, then keeps the best one.

Train it like any layer: the node's output is ``sum_f softmax(logits_j / T)_f * y_f`` over per-family branches
that share the normalization, the base branch and the bias. ``harden()`` then keeps, per node, the family with
the largest selection weight and drops the others, returning a compact ``KANLayer`` (one family left) or
``MixedKANLayer``. The kept weight is folded into the spline weights, so hardening only removes terms of the sum.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spaces.kan.bases import BASES
from spaces.kan.layer import InputNorm, KANLayer, MixedKANLayer


class SelectableKANLayer(nn.Module):
    """Per-node softmax mixture over ``families`` with learnable selection logits (out, F) and temperature T."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        families: list[str],
        grid_size: int = 5,
        order: int = 3,
        degree: int = 3,
        base_branch: bool = True,
        normalize: str = "none",
        grid_range: tuple[float, float] | None = None,
        temperature: float = 1.0,
    ):
        super().__init__()
        if len(set(families)) != len(families) or not families:
            raise ValueError(f"families must be distinct and non-empty, got {families}")
        self.in_features = in_features
        self.out_features = out_features
        self.families = list(families)
        self.grid_size = grid_size
        self.order = order
        self.degree = degree
        self.normalize = normalize
        self.temperature = temperature
        self.norm = InputNorm(in_features, normalize)
        self.grid_range = grid_range if grid_range is not None else self.norm.grid_range
        self.branches = nn.ModuleDict()
        for f in self.families:
            k = degree if "degree" in BASES[f].uses else order
            self.branches[f] = KANLayer(
                in_features, out_features, f, grid_size, k, False, "none", self.grid_range, bias=False
            )
        self.logits = nn.Parameter(torch.zeros(out_features, len(self.families)))
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features)) if base_branch else None
        self.bias = nn.Parameter(torch.zeros(out_features))
        if self.base_weight is not None:
            bound = 1 / math.sqrt(in_features)
            nn.init.uniform_(self.base_weight, -bound, bound)

    def selection(self) -> torch.Tensor:
        """Selection weights (out, F): softmax of the logits at the current temperature."""
        return torch.softmax(self.logits / self.temperature, dim=-1)

    def selection_entropy(self) -> torch.Tensor:
        """Mean entropy of the nodes' selection weights; a small multiple added to the loss makes nodes commit."""
        p = self.selection()
        return -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        p = self.selection()
        y = self.bias
        if self.base_weight is not None:
            y = y + F.linear(F.silu(x), self.base_weight)
        i = 0
        for branch in self.branches.values():
            y = y + p[:, i] * branch(x)
            i += 1
        return y

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02, grid_size: int | None = None) -> None:
        """``KANLayer.update_grid`` for every branch, on the shared normalization's output."""
        x = self.norm(x)
        for branch in self.branches.values():
            branch.update_grid(x, grid_eps, grid_size)
        if grid_size is not None:
            self.grid_size = grid_size

    def selected(self) -> list[str]:
        """The family each output node keeps (largest selection weight)."""
        return [self.families[int(i)] for i in self.logits.argmax(dim=-1)]

    @torch.no_grad()
    def harden(self) -> nn.Module:
        """Compact layer with only the selected family per node; equal to this layer minus the dropped terms."""
        nodes = self.selected()
        p = self.selection()
        base = self.base_weight is not None
        if len(set(nodes)) == 1:
            f = nodes[0]
            k = self.degree if "degree" in BASES[f].uses else self.order
            hard = KANLayer(
                self.in_features, self.out_features, f, self.grid_size, k, base, self.normalize, self.grid_range
            )
            parts = {f: hard}
        else:
            hard = MixedKANLayer(
                self.in_features,
                self.out_features,
                nodes,
                self.grid_size,
                self.order,
                self.degree,
                base,
                self.normalize,
                self.grid_range,
            )
            parts = dict(hard.parts.items())
        hard.norm.load_state_dict(self.norm.state_dict())
        for f, part in parts.items():
            rows = torch.tensor([j for j, n in enumerate(nodes) if n == f])
            col = self.families.index(f)
            branch = self.branches[f]
            part.basis.load_state_dict(branch.basis.state_dict())
            part.spline_weight.copy_(branch.spline_weight[rows] * p[rows, col : col + 1])
            part.bias.copy_(self.bias[rows])
            if self.base_weight is not None:
                part.base_weight.copy_(self.base_weight[rows])
        return hard
