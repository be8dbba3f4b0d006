"""Fast KAN layers: normalize, expand each input into K basis values, one matmul with an (out, in*K) weight.

``KANLayer`` is one family; ``MixedKANLayer`` is the compact result of hardening a selectable layer (each output
node keeps the one family it selected). Both accept any leading batch dimensions ``(B, ..., in)``.
``update_grid`` moves a layer's grid to where its inputs lie and keeps its function (adaptive grids, grid
extension). Like the bases, these classes use only torch and are copied verbatim into exported modules.
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
    ``grid_range`` defaults to the range the normalization keeps inputs in; ``update_grid`` sets it from data.
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
        self.grid_size = grid_size
        self.order = order
        self.norm = InputNorm(in_features, normalize)
        lo, hi = grid_range if grid_range is not None else self.norm.grid_range
        self.basis = BASES[family](in_features, grid_size, order, lo, hi)
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features * self.basis.num_basis))
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features)) if base_branch else None
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fan-in uniform init. With a base branch the splines start at a tenth of that (pykan starts them as
        small noise too), so the layer begins near W_b silu(x) and training shapes the splines: most LBFGS fits
        of the Feynman equations end lower that way (BENCHMARKS.md)."""
        scale = 0.1 if self.base_weight is not None else 1.0
        bound = scale / math.sqrt(self.spline_weight.shape[1])
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

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02, grid_size: int | None = None) -> None:
        """Put the grid where ``x`` (rows of this layer's inputs) lies, keeping each edge's function.

        The new grid blends the samples' quantiles with the uniform grid over their range (``grid_from_samples``).
        A new ``grid_size`` instead extends the grid, coarse to fine: the new points follow the old grid's shape
        (``interpolate_grid``), so a B-spline grid grown to a multiple of its size keeps every knot and the refit
        is exact. The spline weights become the least-squares fit of the old edge functions on ``x``; the base
        branch and bias stay. A new size replaces the basis and the spline weight, so build the optimizer after.
        Families without a grid (chebyshev, legendre, mlp) are left as they are.
        """
        if getattr(self.basis, "grid_points", 0) == 0:
            return
        x = self.norm(x.reshape(-1, self.in_features))
        k = self.basis.num_basis
        phi = self.basis(x).transpose(0, 1)  # (in, N, K)
        weight = self.spline_weight.to(phi.dtype).view(self.out_features, self.in_features, k)
        target = phi @ weight.permute(1, 2, 0)  # (in, N, out): each edge's spline part on the samples
        if grid_size is not None and grid_size != self.grid_size:
            previous = self.basis
            self.basis = BASES[self.family](self.in_features, grid_size, self.order, -1.0, 1.0)
            tensors = dict([*previous.named_parameters(), *previous.named_buffers()])  # as model.to() left them
            for name, t in [*self.basis.named_parameters(), *self.basis.named_buffers()]:
                t.data = t.data.to(tensors[name].device, tensors[name].dtype)
            self.grid_size = grid_size
            self.basis.set_grid(self.interpolate_grid(previous.points(), self.basis.grid_points))
        else:
            self.basis.set_grid(self.grid_from_samples(x, self.basis.grid_points, grid_eps))
        weight = self.least_squares(self.basis(x).transpose(0, 1), target)  # (in, K', out)
        weight = weight.permute(2, 0, 1).reshape(self.out_features, -1)
        if weight.shape == self.spline_weight.shape:
            self.spline_weight.copy_(weight)
        else:
            self.spline_weight = nn.Parameter(weight.to(self.spline_weight))

    @staticmethod
    def grid_from_samples(x: torch.Tensor, points: int, grid_eps: float) -> torch.Tensor:
        """(in, points) grid per column of ``x`` (N, in): grid_eps * uniform + (1 - grid_eps) * quantiles.

        The quantiles are the sorted samples at ``points`` evenly spaced ranks (the first and the last sample
        included), the uniform grid spans the same range (pykan's ``update_grid_from_samples``). grid_eps > 0
        keeps the points strictly increasing; a constant column gets the grid [value - 1, value + 1].
        """
        if not 0 < grid_eps <= 1:
            raise ValueError(f"grid_eps must be in (0, 1], got {grid_eps}")
        xs = torch.sort(x.detach(), dim=0).values
        n = xs.shape[0]
        ranks = [n * i // (points - 1) for i in range(points - 1)] + [n - 1]
        quantiles = xs[ranks].t()
        lo, hi = quantiles[:, :1], quantiles[:, -1:]
        flat = (hi - lo) <= 1e-6 * (1 + lo.abs())
        lo, hi = torch.where(flat, lo - 1, lo), torch.where(flat, hi + 1, hi)
        steps = torch.linspace(0, 1, points, dtype=x.dtype, device=x.device)
        uniform = lo + (hi - lo) * steps
        return torch.where(flat, uniform, grid_eps * uniform + (1 - grid_eps) * quantiles)

    @staticmethod
    def interpolate_grid(points: torch.Tensor, n: int) -> torch.Tensor:
        """(in, n) points on the piecewise-linear curve through ``points`` (in, m), at evenly spaced positions:
        a finer grid of the same shape, holding every old point when n - 1 is a multiple of m - 1."""
        m = points.shape[1]
        pos = torch.linspace(0, m - 1, n, dtype=points.dtype, device=points.device)
        left = pos.floor().long().clamp(0, m - 2)
        frac = pos - left
        return points[:, left] * (1 - frac) + points[:, left + 1] * frac

    @staticmethod
    def least_squares(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per input i, the W_i minimising |a_i W_i - b_i|: a (in, N, K), b (in, N, out) -> (in, K, out).

        Normal equations in float64 with a tiny ridge, so a basis function no sample reaches gets weight 0 and
        it runs the same on every device.
        """
        a64, b64 = a.double(), b.double()
        gram = a64.transpose(1, 2) @ a64
        ridge = 1e-12 * gram.diagonal(dim1=1, dim2=2).amax(-1).clamp_min(1e-30)
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        return torch.linalg.solve(gram + ridge[:, None, None] * eye, a64.transpose(1, 2) @ b64).to(a.dtype)


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
        self.grid_size = grid_size
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

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02, grid_size: int | None = None) -> None:
        """``KANLayer.update_grid`` for every part, on the shared normalization's output."""
        x = self.norm(x)
        for part in self.parts.values():
            part.update_grid(x, grid_eps, grid_size)
        if grid_size is not None:
            self.grid_size = grid_size
