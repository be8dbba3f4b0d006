"""Equations of the Feynman symbolic-regression set (AI Feynman, Udrescu and Tegmark 2020) as fitting tasks.

Each entry gives the formula, its variables and the input range of each variable as the AI Feynman table
lists them; the data are generated here from the formula (no download). ``BENCHMARK`` names the ten used by
``benchmarks/kan_fit.py``: the first ten with at most five inputs, in the order the reference list gives them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Equation:
    """``fn`` maps inputs (N, d), columns in ``variables`` order, to targets (N,); ``ranges`` are per variable."""

    name: str
    formula: str
    variables: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]
    fn: Callable[[torch.Tensor], torch.Tensor]


def _eq(name: str, formula: str, ranges: dict[str, tuple[float, float]], fn: Callable) -> Equation:
    return Equation(name, formula, tuple(ranges), tuple(ranges.values()), lambda x: fn(*x.unbind(-1)))


_1_5 = (1.0, 5.0)

FEYNMAN: dict[str, Equation] = {
    e.name: e
    for e in (
        _eq(
            "I.6.2",
            "exp(-(theta/sigma)^2/2) / (sqrt(2 pi) sigma)",
            {"sigma": (1.0, 3.0), "theta": (1.0, 3.0)},
            lambda s, t: torch.exp(-((t / s) ** 2) / 2) / (math.sqrt(2 * math.pi) * s),
        ),
        _eq(
            "I.12.11",
            "q (Ef + B v sin(theta))",
            {"q": _1_5, "Ef": _1_5, "B": _1_5, "v": _1_5, "theta": _1_5},
            lambda q, ef, b, v, t: q * (ef + b * v * torch.sin(t)),
        ),
        _eq(
            "I.13.12",
            "G m1 m2 (1/r2 - 1/r1)",
            {"m1": _1_5, "m2": _1_5, "r1": _1_5, "r2": _1_5, "G": _1_5},
            lambda m1, m2, r1, r2, g: g * m1 * m2 * (1 / r2 - 1 / r1),
        ),
        _eq(
            "I.15.3x",
            "(x - u t) / sqrt(1 - u^2/c^2)",
            {"x": (5.0, 10.0), "u": (1.0, 2.0), "c": (3.0, 20.0), "t": (1.0, 2.0)},
            lambda x, u, c, t: (x - u * t) / torch.sqrt(1 - u**2 / c**2),
        ),
        _eq(
            "I.16.6",
            "(u + v) / (1 + u v / c^2)",
            {"c": _1_5, "v": _1_5, "u": _1_5},
            lambda c, v, u: (u + v) / (1 + u * v / c**2),
        ),
        _eq(
            "I.18.4",
            "(m1 r1 + m2 r2) / (m1 + m2)",
            {"m1": _1_5, "m2": _1_5, "r1": _1_5, "r2": _1_5},
            lambda m1, m2, r1, r2: (m1 * r1 + m2 * r2) / (m1 + m2),
        ),
        _eq(
            "I.26.2",
            "arcsin(n sin(theta2))",
            {"n": (0.0, 1.0), "theta2": _1_5},
            lambda n, t: torch.arcsin(n * torch.sin(t)),
        ),
        _eq(
            "I.27.6",
            "1 / (1/d1 + n/d2)",
            {"d1": _1_5, "d2": _1_5, "n": _1_5},
            lambda d1, d2, n: 1 / (1 / d1 + n / d2),
        ),
        _eq(
            "I.29.16",
            "sqrt(x1^2 + x2^2 - 2 x1 x2 cos(theta1 - theta2))",
            {"x1": _1_5, "x2": _1_5, "theta1": _1_5, "theta2": _1_5},
            lambda x1, x2, t1, t2: torch.sqrt(x1**2 + x2**2 - 2 * x1 * x2 * torch.cos(t1 - t2)),
        ),
        _eq(
            "I.30.3",
            "Int_0 sin(n theta/2)^2 / sin(theta/2)^2",
            {"Int_0": _1_5, "theta": _1_5, "n": _1_5},
            lambda i0, t, n: i0 * torch.sin(n * t / 2) ** 2 / torch.sin(t / 2) ** 2,
        ),
        _eq(
            "I.37.4",
            "I1 + I2 + 2 sqrt(I1 I2) cos(delta)",
            {"I1": _1_5, "I2": _1_5, "delta": _1_5},
            lambda i1, i2, d: i1 + i2 + 2 * torch.sqrt(i1 * i2) * torch.cos(d),
        ),
        _eq(
            "I.44.4",
            "n kb T ln(V2/V1)",
            {"n": _1_5, "kb": _1_5, "T": _1_5, "V1": _1_5, "V2": _1_5},
            lambda n, kb, t, v1, v2: n * kb * t * torch.log(v2 / v1),
        ),
        _eq(
            "I.50.26",
            "x1 (cos(omega t) + alpha cos(omega t)^2)",
            {"x1": (1.0, 3.0), "omega": (1.0, 3.0), "t": (1.0, 3.0), "alpha": (1.0, 3.0)},
            lambda x1, w, t, a: x1 * (torch.cos(w * t) + a * torch.cos(w * t) ** 2),
        ),
        _eq(
            "II.2.42",
            "kappa (T2 - T1) A / d",
            {"kappa": _1_5, "T1": _1_5, "T2": _1_5, "A": _1_5, "d": _1_5},
            lambda k, t1, t2, a, d: k * (t2 - t1) * a / d,
        ),
    )
}

BENCHMARK = ("I.6.2", "I.12.11", "I.13.12", "I.15.3x", "I.16.6", "I.18.4", "I.26.2", "I.27.6", "I.29.16", "I.30.3")


def feynman_data(name: str, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs drawn uniformly from the equation's ranges (float64) and their targets (n, 1)."""
    if name not in FEYNMAN:
        raise ValueError(f"unknown Feynman equation {name!r}; known: {', '.join(FEYNMAN)}")
    eq = FEYNMAN[name]
    lo = torch.tensor([r[0] for r in eq.ranges], dtype=torch.float64)
    hi = torch.tensor([r[1] for r in eq.ranges], dtype=torch.float64)
    x = lo + (hi - lo) * torch.rand(n, len(lo), generator=generator, dtype=torch.float64)
    return x, eq.fn(x).unsqueeze(-1)
