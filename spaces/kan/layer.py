"""Fast KAN layers: normalize, expand each input into K basis values, one matmul with an (out, in*K) weight.

``KANLayer`` is one family; ``MixedKANLayer`` is the compact result of hardening a selectable layer (each output
node keeps the one family it selected). Both accept any leading batch dimensions ``(B, ..., in)``.
Like the bases, these classes use only torch and are copied verbatim into exported modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spaces.kan.bases import BASES

NORMS = ("none", "layernorm", "tanh")


class InputNorm(nn.Module):
    """Keeps inputs where the grid is: "layernorm" standardizes (grid [-2, 2]), "tanh" squashes into (-1, 1).

    With "none" the grid is [-1, 1] and inputs outside it get each family's documented out-of-grid behaviour.
    """

    def __init__(self, in_features: int, mode: str = "none"):
        super().__init__()
        if mode not in ("none", "layernorm", "tanh"):
            raise ValueError(f"unknown normalization {mode!r}; use 'none', 'layernorm' or 'tanh'")
        self.ln = nn.LayerNorm(in_features) if mode == "layernorm" else nn.Identity()
        self.squash = mode == "tanh"
        self.grid_range = (-2.0, 2.0) if mode == "layernorm" else (-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln(x)
        if self.squash:
            x = torch.tanh(x)
        return x


class KANLayer(nn.Module):
    """y = W_s @ phi(norm(x)) [+ W_b @ silu(norm(x))] + b, phi the family's basis flattened to in*K values.

    ``order`` is the spline order (bspline, relu, afkan_*) or the polynomial degree (chebyshev, legendre).
    ``grid_range`` defaults to the range the normalization keeps inputs in.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        family: str = "bspline",
        grid_size: int = 5,
        order: int = 3,
        base_branch: bool = True,
        normalize: str = "none",
        grid_range: tuple[float, float] | None = None,
        bias: bool = True,
    ):
        super().__init__()
        if family not in BASES:
            raise ValueError(f"unknown KAN family {family!r}; known: {', '.join(BASES)}")
        self.in_features = in_features
        self.out_features = out_features
        self.family = family
        self.norm = InputNorm(in_features, normalize)
        lo, hi = grid_range if grid_range is not None else self.norm.grid_range
        self.basis = BASES[family](in_features, grid_size, order, lo, hi)
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features * self.basis.num_basis))
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features)) if base_branch else None
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.spline_weight.shape[1])
        nn.init.uniform_(self.spline_weight, -bound, bound)
        if self.base_weight is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.base_weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        y = F.linear(self.basis(x).flatten(-2), self.spline_weight, self.bias)
        if self.base_weight is not None:
            y = y + F.linear(F.silu(x), self.base_weight)
        return y


class MixedKANLayer(nn.Module):
    """Output node j uses family ``nodes[j]``: one KANLayer per family present, outputs put back in node order.

    The normalization is shared; each part keeps the base branch and bias of its own nodes.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        nodes: list[str],
        grid_size: int = 5,
        order: int = 3,
        degree: int = 3,
        base_branch: bool = True,
        normalize: str = "none",
        grid_range: tuple[float, float] | None = None,
    ):
        super().__init__()
        if len(nodes) != out_features:
            raise ValueError(f"nodes names {len(nodes)} families for {out_features} output nodes")
        self.in_features = in_features
        self.out_features = out_features
        self.nodes = list(nodes)
        self.norm = InputNorm(in_features, normalize)
        lo, hi = grid_range if grid_range is not None else self.norm.grid_range
        families = sorted(set(nodes))
        rows = [j for f in families for j, n in enumerate(nodes) if n == f]
        self.parts = nn.ModuleDict()
        for f in families:
            k = degree if "degree" in BASES[f].uses else order
            count = nodes.count(f)
            self.parts[f] = KANLayer(in_features, count, f, grid_size, k, base_branch, "none", (lo, hi))
        self.register_buffer("perm", torch.argsort(torch.tensor(rows)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        ys = [part(x) for part in self.parts.values()]
        return torch.cat(ys, dim=-1).index_select(-1, self.perm)
