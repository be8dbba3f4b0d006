"""Basis expansions for fast KAN layers, one module per family, registered by name.

Every basis maps ``x`` of shape ``(..., in)`` to ``phi(x)`` of shape ``(..., in, K)``; the layer then does one
matmul with an ``(out, in*K)`` weight, so no ``(B, out, in, K)`` tensor is ever built. All take the same
constructor ``(in_features, grid_size, order, lo, hi)`` and ignore what their family does not use; ``[lo, hi]``
is the grid. Each docstring says what happens to inputs outside the grid.

The classes use only ``torch`` and ``math`` and no module-level helpers: the exporter copies their source
verbatim into standalone files (decorator lines dropped).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

BASES: dict[str, type[nn.Module]] = {}


def register_basis(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Register a basis class under ``name``. Its ``uses`` lists the genome fields it reads: grid, order, degree."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        BASES[name] = cls
        return cls

    return deco


@register_basis("bspline")
class BSplineBasis(nn.Module):
    """Uniform B-splines of order k on G intervals, extended by k knots each side: K = G + k (efficient-kan).

    Evaluated locally: an input in cell c with fractional position f has only k+1 non-zero splines, the
    polynomials [1, f, .., f^k] @ M (M the uniform B-spline basis matrix, built once by de Boor's recursion),
    scattered into K slots. That needs far less time and memory than Cox-de Boor over all K, and autograd
    still gives exact higher derivatives. Outside the grid: the outer splines fade to zero over k cells, then
    the spline part is exactly 0 and only the layer's base branch carries the input.
    """

    uses = ("grid", "order")

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        self.order = order
        self.num_basis = grid_size + order
        self.lo = lo
        self.inv_h = grid_size / (hi - lo)
        # coef[n, r]: coefficient of f^n in the spline j = c - r; de Boor on polynomials in f, from degree 0 up.
        coef = torch.zeros(order + 1, order + 1, dtype=torch.float64)
        coef[0, 0] = 1.0
        for p in range(1, order + 1):
            new = torch.zeros_like(coef)
            for r in range(p + 1):
                if r < p:  # ((f + r) / p) * old[r]
                    new[1:, r] += coef[:-1, r] / p
                    new[:, r] += coef[:, r] * r / p
                if r > 0:  # ((p + 1 - r - f) / p) * old[r - 1]
                    new[:, r] += coef[:, r - 1] * (p + 1 - r) / p
                    new[1:, r] -= coef[:-1, r - 1] / p
            coef = new
        self.register_buffer("coef", coef, persistent=False)
        self.register_buffer("offsets", torch.arange(order + 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x - self.lo) * self.inv_h + self.order  # knot units: spline j lives on [j, j + order + 1)
        cell = torch.floor(u).detach()
        frac = u - cell
        powers = [torch.ones_like(frac)]
        for _ in range(self.order):
            powers.append(powers[-1] * frac)
        vals = torch.stack(powers, dim=-1) @ self.coef.to(x.dtype)
        idx = cell.long().unsqueeze(-1) - self.offsets
        vals = vals.masked_fill((idx < 0) | (idx >= self.num_basis), 0.0)
        out = torch.zeros(x.shape + (self.num_basis,), dtype=x.dtype, device=x.device)
        return out.scatter_add_(-1, idx.clamp_(0, self.num_basis - 1), vals)


@register_basis("rbf")
class GaussianRBFBasis(nn.Module):
    """Gaussian bumps exp(-((x - c_i)/h)^2) on G uniform centres, h the spacing (FastKAN).

    Outside the grid: the bumps decay smoothly, so the spline part tends to 0 within about 2h.
    """

    uses = ("grid",)

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        self.num_basis = grid_size
        self.inv_h = (grid_size - 1) / (hi - lo)
        self.register_buffer("centers", torch.linspace(lo, hi, grid_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = (x.unsqueeze(-1) - self.centers.to(x.dtype)) * self.inv_h
        return torch.exp(-t.square())


class _TanhPolynomialBasis(nn.Module):
    """Polynomials p_0..p_d of t = tanh(x), p_0 = 1, p_1 = t, then ``next_poly``'s three-term recurrence; K = d + 1.

    ``order`` is the degree d. Subclasses give ``next_poly(n, t, p_n, p_prev)``, returning p_{n+1}.
    """

    uses = ("degree",)

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        self.degree = order
        self.num_basis = order + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(x)
        polys = [torch.ones_like(t), t]
        for n in range(1, self.degree):
            polys.append(self.next_poly(n, t, polys[-1], polys[-2]))
        return torch.stack(polys[: self.num_basis], dim=-1)


@register_basis("chebyshev")
class ChebyshevBasis(_TanhPolynomialBasis):
    """Chebyshev polynomials T_0..T_d of tanh(x) by the recurrence T_{n+1} = 2t T_n - T_{n-1}; K = d + 1.

    ``order`` is the degree d. No acos: cos(n acos t) has NaN gradients once tanh saturates at +-1.
    Outside the grid: tanh maps every input into (-1, 1), so large inputs saturate to T_n(+-1) = (+-1)^n.
    """

    def next_poly(self, n: int, t: torch.Tensor, p_n: torch.Tensor, p_prev: torch.Tensor) -> torch.Tensor:
        return 2 * t * p_n - p_prev


@register_basis("legendre")
class LegendreBasis(_TanhPolynomialBasis):
    """Legendre polynomials P_0..P_d of tanh(x): (n+1) P_{n+1} = (2n+1) t P_n - n P_{n-1}; K = d + 1.

    ``order`` is the degree d. Outside the grid: tanh saturates, large inputs give P_n(+-1) = (+-1)^n.
    """

    def next_poly(self, n: int, t: torch.Tensor, p_n: torch.Tensor, p_prev: torch.Tensor) -> torch.Tensor:
        return ((2 * n + 1) * t * p_n - n * p_prev) / (n + 1)


@register_basis("fourier")
class FourierBasis(nn.Module):
    """cos(k theta), sin(k theta) for k = 1..G with theta = pi (x - centre) / half-width; K = 2G.

    The period is the grid width, so a target periodic on the grid is represented exactly.
    Outside the grid: the expansion repeats periodically (it never blows up, but it does not extrapolate).
    """

    uses = ("grid",)

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        self.num_basis = 2 * grid_size
        self.center = (lo + hi) / 2
        self.omega = 2 * math.pi / (hi - lo)
        self.register_buffer("freqs", torch.arange(1, grid_size + 1, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = ((x - self.center) * self.omega).unsqueeze(-1) * self.freqs.to(x.dtype)
        return torch.cat([torch.cos(theta), torch.sin(theta)], dim=-1)


@register_basis("relu")
class ReLUKANBasis(nn.Module):
    """ReLU-KAN bumps (relu(e_i - x) relu(x - s_i))^2 * 16 / (e_i - s_i)^4 spanning k+1 cells; K = G + k.

    Peak value 1 at the centre of each span; only relu and multiplications, so it is fast on any device.
    Outside the grid: every bump is exactly 0 beyond the outermost span (k cells past the grid edge).
    """

    uses = ("grid", "order")

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        h = (hi - lo) / grid_size
        self.num_basis = grid_size + order
        starts = lo + (torch.arange(self.num_basis, dtype=torch.float32) - order) * h
        self.register_buffer("starts", starts, persistent=False)
        self.register_buffer("ends", starts + (order + 1) * h, persistent=False)
        self.scale = 16.0 / ((order + 1) * h) ** 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(-1)
        r = F.relu(self.ends.to(x.dtype) - x) * F.relu(x - self.starts.to(x.dtype))
        return r * r * self.scale


class _Wavelet(nn.Module):
    """G wavelets per input, translations tau on the uniform grid, scale s = ``width`` grid spacings (Wav-KAN).

    tau and s are fixed: Wav-KAN's learnable per-edge tau and s need a (B, out, in) tensor, and learnable
    per-input ones keep three (B, in, G) intermediates alive for their gradients (about 3x an MLP's peak
    memory at equal parameters), while the output weights already choose how much of each wavelet to use.
    """

    width = 2.0

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        self.num_basis = grid_size
        self.inv_scale = (grid_size - 1) / (hi - lo) / self.width
        self.register_buffer("tau", torch.linspace(lo, hi, grid_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wave((x.unsqueeze(-1) - self.tau.to(x.dtype)) * self.inv_scale)


@register_basis("mexican_hat")
class MexicanHatBasis(_Wavelet):
    """Mexican hat (1 - t^2) exp(-t^2/2), t = (x - tau) / s. Outside the grid: decays to 0 like exp(-t^2/2)."""

    uses = ("grid",)

    def wave(self, t: torch.Tensor) -> torch.Tensor:
        t2 = t * t
        return (1 - t2) * torch.exp(-0.5 * t2)


@register_basis("dog")
class DoGBasis(_Wavelet):
    """Derivative of Gaussian -t exp(-t^2/2). Outside the grid: decays to 0 like t exp(-t^2/2)."""

    uses = ("grid",)

    def wave(self, t: torch.Tensor) -> torch.Tensor:
        return -t * torch.exp(-0.5 * t * t)


@register_basis("morlet")
class MorletBasis(_Wavelet):
    """Morlet cos(5t) exp(-t^2/2), 3 grid spacings wide so each one holds a low frequency too.

    Outside the grid: the Gaussian envelope takes it to 0.
    """

    uses = ("grid",)
    width = 3.0

    def wave(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(5 * t) * torch.exp(-0.5 * t * t)


class _AFKAN(nn.Module):
    """AF-KAN: A = silu(x - s_j), B = silu(e_j - x) with learnable s, e per input and basis, K = G + k.

    s, e start at the ReLU-KAN spans (k + 1 cells each); subclasses combine A and B (``combine``) and give its
    partial derivatives (``slopes``). silu(-z) tends to 0, so every form is local inside the grid; outside it
    each form says what it does. Memory-lean: autograd keeps only x, s and e; the backward pass recomputes A
    and B in row chunks, so no (B, in, K) intermediate outlives its chunk (plain autograd kept four or five).
    """

    chunk_elements = 1 << 18

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        h = (hi - lo) / grid_size
        self.num_basis = grid_size + order
        starts = lo + (torch.arange(self.num_basis, dtype=torch.float32) - order) * h
        self.starts = nn.Parameter(starts.repeat(in_features, 1))
        self.ends = nn.Parameter((starts + (order + 1) * h).repeat(in_features, 1))
        self.scale = 16.0 / ((order + 1) * h) ** 4

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


@register_basis("afkan_quad1")
class AFKANQuad1Basis(_AFKAN):
    """(A B)^2, scaled like ReLU-KAN to peak near 1. Outside the grid: decays to 0 (one factor vanishes)."""

    uses = ("grid", "order")

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ab = a * b
        return ab * ab * self.scale

    def slopes(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ab2 = a * b * (2 * self.scale)
        return ab2 * b, ab2 * a


@register_basis("afkan_sum")
class AFKANSumBasis(_AFKAN):
    """A + B: a soft V. Outside the grid: grows linearly (|x| like), so it extrapolates instead of vanishing."""

    uses = ("grid", "order")

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    def slopes(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one = torch.ones_like(a)
        return one, one


@register_basis("afkan_prod")
class AFKANProdBasis(_AFKAN):
    """A B: a soft bump. Outside the grid: decays to 0 (one factor vanishes faster than the other grows)."""

    uses = ("grid", "order")

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b

    def slopes(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return b, a


@register_basis("mlp")
class SiLUBasis(nn.Module):
    """The MLP baseline in KAN form: one fixed basis silu(x), K = 1, so the layer is W silu(x) + b.

    Not a KAN family: it lets a study compare against an MLP of the same depth. No grid, nothing to fall off.
    """

    uses = ()

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        self.num_basis = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x).unsqueeze(-1)
