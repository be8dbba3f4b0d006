"""AF-KAN basis families: silu spans with learnable ends, memory-lean through a chunked custom backward pass.

Like every basis, the classes use only ``torch`` and are copied verbatim into exported files.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spaces.kan.grid_bases import _GridBasis


class _AFKAN(_GridBasis):
    """AF-KAN: A = silu(x - s_j), B = silu(e_j - x) with learnable s, e per input and basis, K = G + k.

    s, e start at the ReLU-KAN spans (k + 1 cells each), and a grid update resets them to the new grid's spans;
    subclasses combine A and B (``combine``) and give its partial derivatives (``slopes``). silu(-z) tends to 0,
    so every form is local inside the grid; outside it each form says what it does. Memory-lean: autograd keeps
    only x, s and e; the backward pass recomputes A and B in row chunks, so no (B, in, K) intermediate outlives
    its chunk (plain autograd kept four or five).
    """

    chunk_elements = 1 << 18

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        h = (hi - lo) / grid_size
        self.order = order
        self.num_basis = grid_size + order
        self.grid_points = grid_size + 1
        self.starts = nn.Parameter(torch.zeros(in_features, self.num_basis))
        self.ends = nn.Parameter(torch.zeros(in_features, self.num_basis))
        self.scale = 16.0 / ((order + 1) * h) ** 4
        self.set_grid(torch.linspace(lo, hi, grid_size + 1).repeat(in_features, 1))

    @torch.no_grad()
    def set_grid(self, points: torch.Tensor) -> None:
        knots = self.extend(points.to(self.starts), self.order)
        self.starts.copy_(knots[:, : self.num_basis])
        self.ends.copy_(knots[:, self.order + 1 :])

    def points(self) -> torch.Tensor:
        """The grid the spans suggest; training moves s and e independently, hence sorted."""
        knots = torch.cat([self.starts, self.ends[:, -self.order - 1 :]], dim=1).detach()
        return torch.sort(knots, dim=1).values[:, self.order : self.order + self.grid_points]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript has no autograd.Function: plain autograd there
            x = x.unsqueeze(-1)
            return self.combine(F.silu(x - self.starts), F.silu(self.ends - x))
        return self.lean(x)

    @torch.jit.unused
    def lean(self, x: torch.Tensor) -> torch.Tensor:
        return self.Lean.apply(x, self.starts, self.ends, self)

    def rows(self, x: torch.Tensor) -> int:
        """Rows of the flattened batch per chunk: about ``chunk_elements`` basis values."""
        return max(1, self.chunk_elements // max(1, x.shape[-1] * self.num_basis))

    class Lean(torch.autograd.Function):
        """phi = combine(silu(x - s), silu(e - x)), saving only its inputs for the backward pass."""

        @staticmethod
        def forward(ctx, x, starts, ends, basis):
            ctx.save_for_backward(x, starts, ends)
            ctx.basis = basis
            flat = x.reshape(-1, x.shape[-1])
            out = flat.new_empty(flat.shape[0], flat.shape[1], basis.num_basis)
            step = basis.rows(flat)
            for i in range(0, flat.shape[0], step):
                xk = flat[i : i + step].unsqueeze(-1)
                out[i : i + step] = basis.combine(F.silu(xk - starts), F.silu(ends - xk))
            return out.reshape(*x.shape, basis.num_basis)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            x, starts, ends = ctx.saved_tensors
            basis = ctx.basis
            flat = x.reshape(-1, x.shape[-1])
            grad = grad.reshape(flat.shape[0], flat.shape[1], -1)
            grad_x = torch.empty_like(flat) if ctx.needs_input_grad[0] else None
            grad_s = torch.zeros_like(starts)
            grad_e = torch.zeros_like(ends)
            step = basis.rows(flat)
            for i in range(0, flat.shape[0], step):
                xk = flat[i : i + step].unsqueeze(-1)
                u, v = xk - starts, ends - xk
                su, sv = torch.sigmoid(u), torch.sigmoid(v)
                da, db = basis.slopes(u * su, v * sv)
                g = grad[i : i + step]
                ga = g * da * (su * (1 + u * (1 - su)))  # d phi / d u, silu'(u) = s (1 + u (1 - s))
                gb = g * db * (sv * (1 + v * (1 - sv)))  # d phi / d v
                grad_s -= ga.sum(0)
                grad_e += gb.sum(0)
                if grad_x is not None:
                    grad_x[i : i + step] = (ga - gb).sum(-1)
            grad_x = grad_x.reshape(x.shape) if grad_x is not None else None
            return grad_x, grad_s, grad_e, None


class AFKANQuad1Basis(_AFKAN):
    """(A B)^2, scaled like ReLU-KAN to peak near 1. Outside the grid: decays to 0 (one factor vanishes)."""

    uses = ("grid", "order")

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ab = a * b
        return ab * ab * self.scale

    def slopes(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ab2 = a * b * (2 * self.scale)
        return ab2 * b, ab2 * a


class AFKANSumBasis(_AFKAN):
    """A + B: a soft V. Outside the grid: grows linearly (|x| like), so it extrapolates instead of vanishing."""

    uses = ("grid", "order")

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    def slopes(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one = torch.ones_like(a)
        return one, one


class AFKANProdBasis(_AFKAN):
    """A B: a soft bump. Outside the grid: decays to 0 (one factor vanishes faster than the other grows)."""

    uses = ("grid", "order")

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b

    def slopes(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return b, a
