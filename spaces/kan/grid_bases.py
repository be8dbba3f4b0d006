"""Grid-based basis families: the adaptive-grid contract (``_GridBasis``), B-splines, Gaussian RBFs, Fourier,
ReLU-KAN and the wavelets. Every class here can move its grid with ``set_grid`` (see ``KANLayer.update_grid``).

Like every basis, the classes use only ``torch`` and ``math`` and are copied verbatim into exported files.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _GridBasis(nn.Module):
    """A family placed on a per-input grid that ``set_grid`` can move: the adaptive-grid contract.

    ``grid_points`` is how many grid points per input the family takes (G + 1 interval ends for splines,
    G centres for bumps, the two ends of the period for Fourier); ``set_grid(points)`` puts the family on
    ``points`` (in, grid_points), sorted per row, and ``points()`` gives them back. The grid is in the
    state_dict (what the forward reads is a buffer there or, for B-splines, derived from one on load), so a
    module built with the same constructor and loaded with ``load_state_dict`` computes the same function.
    """

    @staticmethod
    def extend(points: torch.Tensor, k: int) -> torch.Tensor:
        """(in, n) grid points extended by k knots each side at the row's mean spacing (pykan's extension)."""
        h = (points[:, -1:] - points[:, :1]) / (points.shape[1] - 1)
        steps = torch.arange(1, k + 1, dtype=points.dtype, device=points.device)
        return torch.cat([points[:, :1] - h * steps.flip(0), points, points[:, -1:] + h * steps], dim=1)

    @staticmethod
    def spacing(points: torch.Tensor) -> torch.Tensor:
        """Per point, the mean of the gaps to its neighbours (one gap at the ends): a bump's width on any grid."""
        if points.shape[1] < 2:
            return torch.ones_like(points)
        gaps = points[:, 1:] - points[:, :-1]
        return torch.cat([gaps[:, :1], (gaps[:, 1:] + gaps[:, :-1]) / 2, gaps[:, -1:]], dim=1)


class BSplineBasis(_GridBasis):
    """B-splines of order k on G intervals per input, extended by k knots each side: K = G + k (efficient-kan).

    ``knots`` (in, G + 2k + 1) is a buffer. The splines are evaluated locally: an input in cell c with fractional
    position f has only k+1 non-zero splines, the polynomials [1, f, .., f^k] @ M_c, scattered into K slots;
    that needs far less time and memory than Cox-de Boor over all K. On a uniform grid (the default, or after
    an update with grid_eps 1) M_c is one matrix and c = floor((x - t_0) / h). On an adaptive grid each input's
    cell comes from a binary search and M_c, t_c and 1 / (t_{c+1} - t_c) from a per-cell table (``cells``,
    built by de Boor's recursion on polynomials in f whenever the knots change). Both are plain autograd, so
    higher derivatives are exact. Outside the grid: the outer splines fade to zero over k cells, then the
    spline part is exactly 0 and only the layer's base branch carries the input.
    """

    uses = ("grid", "order")

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        self.order = order
        self.num_basis = grid_size + order
        self.grid_points = grid_size + 1
        self.uniform = True
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
        # float64 so that a model moved to float64 has exact knots; the forward casts to the input's dtype.
        self.register_buffer("knots", torch.zeros(in_features, grid_size + 2 * order + 1, dtype=torch.float64))
        for name in ("origin", "inv_h", "cells", "rows"):
            self.register_buffer(name, torch.zeros(0), persistent=False)
        self.set_grid(torch.linspace(lo, hi, grid_size + 1, dtype=torch.float64).repeat(in_features, 1))

    def set_grid(self, points: torch.Tensor) -> None:
        """Knots from grid points (in, G + 1), extended by k each side."""
        self.knots = self.extend(points.to(self.knots), self.order)
        self.derive()

    def points(self) -> torch.Tensor:
        return self.knots[:, self.order : self.knots.shape[1] - self.order]

    def derive(self) -> None:
        """Whether the knots are uniform (then the fast path's t_0 and 1/h) and the general path's cell table."""
        t = self.knots
        k = self.order
        n_in, n = t.shape
        h = (t[:, -1] - t[:, 0]) / (n - 1)
        ideal = t[:, :1] + h.unsqueeze(-1) * torch.arange(n, dtype=t.dtype, device=t.device)
        tolerance = 1e-6 * (t.abs().amax(dim=1, keepdim=True) + h.unsqueeze(-1))
        self.uniform = bool(((t - ideal).abs() <= tolerance).all())
        self.origin = t[:, 0].clone()
        self.inv_h = 1 / h
        # Cell c = [t_c, t_{c+1}), x = t_c + f w: spline j = c - k + r is sum_m P[c, m, r] f^m. De Boor's recursion
        # on those polynomials (coefficients over m), level by level; knots past the ends only reach splines
        # outside 0..K-1, which are zeroed.
        ext = self.extend(t, k + 1)
        c = torch.arange(n - 1, device=t.device)

        def knot(offset: int) -> torch.Tensor:
            return ext[:, c + k + 1 + offset].unsqueeze(-1)  # t_{c + offset}, (in, cells, 1)

        def times_f(poly: torch.Tensor) -> torch.Tensor:
            return F.pad(poly, (1, 0))[..., :-1]

        w = knot(1) - knot(0)
        polys = [F.pad(torch.ones_like(w), (0, k))]
        for p in range(1, k + 1):
            level = []
            for r in range(p + 1):  # spline j = c - p + r from splines j (index r - 1) and j + 1 (index r)
                poly = torch.zeros_like(polys[0])
                if r > 0:  # (x - t_j) / (t_{j+p} - t_j) N_{j, p-1}
                    d = knot(r) - knot(r - p)
                    poly = poly + ((knot(0) - knot(r - p)) * polys[r - 1] + w * times_f(polys[r - 1])) / d
                if r < p:  # (t_{j+p+1} - x) / (t_{j+p+1} - t_{j+1}) N_{j+1, p-1}
                    d = knot(r + 1) - knot(r - p + 1)
                    poly = poly + ((knot(r + 1) - knot(0)) * polys[r] - w * times_f(polys[r])) / d
                level.append(poly)
            polys = level
        spline = c.unsqueeze(-1) - k + torch.arange(k + 1, device=t.device)  # (cells, r)
        table = torch.stack(polys, dim=-1) * ((spline >= 0) & (spline < self.num_basis)).unsqueeze(-2)
        cells = torch.cat([knot(0), 1 / w, table.flatten(-2)], dim=-1)
        # Row s of an input is the cell of x with s knots <= x: rows 0 and n (outside the grid) are all zeros.
        self.cells = F.pad(cells, (0, 0, 1, 1)).reshape(-1, cells.shape[-1])
        self.rows = torch.arange(n_in, device=t.device) * (n + 1)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.derive()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uniform:
            return self.on_uniform_grid(x)
        return self.on_any_grid(x)

    def on_uniform_grid(self, x: torch.Tensor) -> torch.Tensor:
        u = (x - self.origin.to(x.dtype)) * self.inv_h.to(x.dtype)  # knot units: spline j lives on [j, j + k + 1)
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

    def on_any_grid(self, x: torch.Tensor) -> torch.Tensor:
        k = self.order
        t = self.knots.to(x.dtype)
        flat = x.reshape(-1, t.shape[0])
        count = torch.searchsorted(t, flat.detach().t().contiguous(), right=True).t()  # knots <= x, 0 .. n
        rows = (count + self.rows).reshape(-1)
        cell = torch.index_select(self.cells.to(x.dtype), 0, rows).view(count.shape + (-1,))  # t_c, 1 / w, M_c
        frac = ((flat - cell[..., 0]) * cell[..., 1]).unsqueeze(-1)
        poly = cell[..., 2:].view(count.shape + (k + 1, k + 1))
        vals = poly[..., k, :]
        for m in range(k - 1, -1, -1):  # Horner: [1, f, .., f^k] @ M_c
            vals = vals * frac + poly[..., m, :]
        idx = (count - 1 - k).unsqueeze(-1) + self.offsets  # spline c - k + r
        out = torch.zeros(flat.shape + (self.num_basis,), dtype=x.dtype, device=x.device)
        out = out.scatter_add_(-1, idx.clamp_(0, self.num_basis - 1), vals)
        return out.reshape(x.shape + (self.num_basis,))


class GaussianRBFBasis(_GridBasis):
    """Gaussian bumps exp(-((x - c_i)/h_i)^2) on G centres per input, h_i the local spacing (FastKAN).

    Centres start uniform; an adaptive grid moves them and each width follows its neighbours' gaps.
    Outside the grid: the bumps decay smoothly, so the spline part tends to 0 within about 2h.
    """

    uses = ("grid",)

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        self.num_basis = grid_size
        self.grid_points = grid_size
        self.register_buffer("centers", torch.zeros(in_features, grid_size))
        self.register_buffer("inv_widths", torch.zeros(in_features, grid_size))
        self.set_grid(torch.linspace(lo, hi, grid_size).repeat(in_features, 1))

    def set_grid(self, points: torch.Tensor) -> None:
        self.centers = points.to(self.centers).clone()
        self.inv_widths = 1 / self.spacing(self.centers)

    def points(self) -> torch.Tensor:
        return self.centers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = (x.unsqueeze(-1) - self.centers.to(x.dtype)) * self.inv_widths.to(x.dtype)
        return torch.exp(-t.square())


class FourierBasis(_GridBasis):
    """cos(k theta), sin(k theta) for k = 1..G with theta = pi (x - centre) / half-width; K = 2G.

    The period is the grid width, so a target periodic on the grid is represented exactly. Its grid is the
    two ends of the period per input; an update sets them to the samples' range.
    Outside the grid: the expansion repeats periodically (it never blows up, but it does not extrapolate).
    """

    uses = ("grid",)

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        self.num_basis = 2 * grid_size
        self.grid_points = 2
        self.register_buffer("freqs", torch.arange(1, grid_size + 1, dtype=torch.float32), persistent=False)
        self.register_buffer("center", torch.zeros(in_features))
        self.register_buffer("omega", torch.zeros(in_features))
        self.set_grid(torch.tensor([lo, hi]).repeat(in_features, 1))

    def set_grid(self, points: torch.Tensor) -> None:
        points = points.to(self.center)
        self.center = (points[:, 0] + points[:, -1]) / 2
        self.omega = 2 * math.pi / (points[:, -1] - points[:, 0])

    def points(self) -> torch.Tensor:
        half = math.pi / self.omega
        return torch.stack([self.center - half, self.center + half], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = ((x - self.center.to(x.dtype)) * self.omega.to(x.dtype)).unsqueeze(-1) * self.freqs.to(x.dtype)
        return torch.cat([torch.cos(theta), torch.sin(theta)], dim=-1)


class ReLUKANBasis(_GridBasis):
    """ReLU-KAN bumps (relu(e_i - x) relu(x - s_i))^2 * 16 / (e_i - s_i)^4 spanning k+1 cells; K = G + k.

    Bump i spans knots i .. i + k + 1 of the grid extended by k knots each side (like a B-spline's support).
    Peak value 1 at the centre of each span; only relu and multiplications, so it is fast on any device.
    Outside the grid: every bump is exactly 0 beyond the outermost span (k cells past the grid edge).
    """

    uses = ("grid", "order")

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        self.order = order
        self.num_basis = grid_size + order
        self.grid_points = grid_size + 1
        for name in ("starts", "ends", "scale"):
            self.register_buffer(name, torch.zeros(in_features, self.num_basis))
        self.set_grid(torch.linspace(lo, hi, grid_size + 1).repeat(in_features, 1))

    def set_grid(self, points: torch.Tensor) -> None:
        knots = self.extend(points.to(self.starts), self.order)
        self.starts = knots[:, : self.num_basis].clone()
        self.ends = knots[:, self.order + 1 :].clone()
        self.scale = 16.0 / (self.ends - self.starts) ** 4

    def points(self) -> torch.Tensor:
        knots = torch.cat([self.starts, self.ends[:, -self.order - 1 :]], dim=1)
        return knots[:, self.order : self.order + self.grid_points]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(-1)
        r = F.relu(self.ends.to(x.dtype) - x) * F.relu(x - self.starts.to(x.dtype))
        return r * r * self.scale.to(x.dtype)


class _Wavelet(_GridBasis):
    """G wavelets per input, translations tau on the grid, scale s = ``width`` local grid spacings (Wav-KAN).

    tau and s are fixed between grid updates: Wav-KAN's learnable per-edge tau and s need a (B, out, in)
    tensor, and learnable per-input ones keep three (B, in, G) intermediates alive for their gradients (about
    3x an MLP's peak memory at equal parameters), while the output weights already choose how much of each
    wavelet to use. An adaptive grid moves tau to the samples and each scale follows its neighbours' gaps.
    """

    width = 2.0

    def __init__(self, in_features: int, grid_size: int, order: int, lo: float, hi: float):
        super().__init__()
        self.num_basis = grid_size
        self.grid_points = grid_size
        self.register_buffer("tau", torch.zeros(in_features, grid_size))
        self.register_buffer("inv_scale", torch.zeros(in_features, grid_size))
        self.set_grid(torch.linspace(lo, hi, grid_size).repeat(in_features, 1))

    def set_grid(self, points: torch.Tensor) -> None:
        self.tau = points.to(self.tau).clone()
        self.inv_scale = 1 / (self.spacing(self.tau) * self.width)

    def points(self) -> torch.Tensor:
        return self.tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wave((x.unsqueeze(-1) - self.tau.to(x.dtype)) * self.inv_scale.to(x.dtype))


class MexicanHatBasis(_Wavelet):
    """Mexican hat (1 - t^2) exp(-t^2/2), t = (x - tau) / s. Outside the grid: decays to 0 like exp(-t^2/2)."""

    uses = ("grid",)

    def wave(self, t: torch.Tensor) -> torch.Tensor:
        t2 = t * t
        return (1 - t2) * torch.exp(-0.5 * t2)


class DoGBasis(_Wavelet):
    """Derivative of Gaussian -t exp(-t^2/2). Outside the grid: decays to 0 like t exp(-t^2/2)."""

    uses = ("grid",)

    def wave(self, t: torch.Tensor) -> torch.Tensor:
        return -t * torch.exp(-0.5 * t * t)


class MorletBasis(_Wavelet):
    """Morlet cos(5t) exp(-t^2/2), 3 grid spacings wide so each one holds a low frequency too.

    Outside the grid: the Gaussian envelope takes it to 0.
    """

    uses = ("grid",)
    width = 3.0

    def wave(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(5 * t) * torch.exp(-0.5 * t * t)
