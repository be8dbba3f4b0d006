"""Basis expansions for fast KAN layers, one class per family, registered by name in ``BASES``.

Every basis maps ``x`` of shape ``(..., in)`` to ``phi(x)`` of shape ``(..., in, K)``; the layer then does one
matmul with an ``(out, in*K)`` weight, so no ``(B, out, in, K)`` tensor is ever built. All take the same
constructor ``(in_features, grid_size, order, lo, hi)`` and ignore what their family does not use; ``[lo, hi]``
is the grid. Each docstring says what happens to inputs outside the grid.

The grid-based families live in ``grid_bases``, the AF-KAN ones in ``afkan``; the grid-free ones (polynomials of
tanh, the MLP baseline) here. The classes use only ``torch`` and ``math`` and no module-level helpers: the
exporter copies their source verbatim into standalone files (decorator lines dropped).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from spaces.kan.afkan import AFKANProdBasis, AFKANQuad1Basis, AFKANSumBasis
from spaces.kan.grid_bases import (
    BSplineBasis,
    DoGBasis,
    FourierBasis,
    GaussianRBFBasis,
    MexicanHatBasis,
    MorletBasis,
    ReLUKANBasis,
)


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


class ChebyshevBasis(_TanhPolynomialBasis):
    """Chebyshev polynomials T_0..T_d of tanh(x) by the recurrence T_{n+1} = 2t T_n - T_{n-1}; K = d + 1.

    ``order`` is the degree d. No acos: cos(n acos t) has NaN gradients once tanh saturates at +-1.
    Outside the grid: tanh maps every input into (-1, 1), so large inputs saturate to T_n(+-1) = (+-1)^n.
    """

    def next_poly(self, n: int, t: torch.Tensor, p_n: torch.Tensor, p_prev: torch.Tensor) -> torch.Tensor:
        return 2 * t * p_n - p_prev


class LegendreBasis(_TanhPolynomialBasis):
    """Legendre polynomials P_0..P_d of tanh(x): (n+1) P_{n+1} = (2n+1) t P_n - n P_{n-1}; K = d + 1.

    ``order`` is the degree d. Outside the grid: tanh saturates, large inputs give P_n(+-1) = (+-1)^n.
    """

    def next_poly(self, n: int, t: torch.Tensor, p_n: torch.Tensor, p_prev: torch.Tensor) -> torch.Tensor:
        return ((2 * n + 1) * t * p_n - n * p_prev) / (n + 1)


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


#: Family name -> basis class, in the order spaces sample and studies list them.
BASES: dict[str, type[nn.Module]] = {
    "bspline": BSplineBasis,
    "rbf": GaussianRBFBasis,
    "chebyshev": ChebyshevBasis,
    "legendre": LegendreBasis,
    "fourier": FourierBasis,
    "relu": ReLUKANBasis,
    "mexican_hat": MexicanHatBasis,
    "dog": DoGBasis,
    "morlet": MorletBasis,
    "afkan_quad1": AFKANQuad1Basis,
    "afkan_sum": AFKANSumBasis,
    "afkan_prod": AFKANProdBasis,
    "mlp": SiLUBasis,
}


def register_basis(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Register a basis class under ``name``. Its ``uses`` lists the genome fields it reads: grid, order, degree."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        BASES[name] = cls
        return cls

    return deco
