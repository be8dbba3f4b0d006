"""A test-only space, ``leaky(x, slope)`` over a few slopes: it shows that a new space plugs into the dashboard,
export and runner by registering itself, with no edit outside ``spaces/`` and the tests.

Importing this module registers the kind ``toy_leaky``.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from spaces import Curve, Genome, GenomeError, Space, canonical_json, elementwise_curve, register_space

SLOPES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
_TEXT = re.compile(r"leaky\(x, ([0-9.]+)\)")

_SOURCE = '''import torch


class {name}(torch.nn.Module):
    """leaky(x, {slope!r})"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, {slope!r} * x)
'''


class Leaky(torch.nn.Module):
    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x, self.slope * x)


@register_space
class LeakySpace(Space):
    """One elementwise layer, x for x >= 0 and slope * x below, with the slope drawn from ``SLOPES``."""

    kind = "toy_leaky"
    display_name = "Leaky (test)"
    class_prefix = "Leaky"

    def _genome(self, slope: float) -> Genome:
        return {"space": self.kind, "v": self.version, "slope": slope}

    def validate(self, genome: Genome) -> None:
        self._check_header(genome)
        if set(genome) != {"space", "v", "slope"}:
            raise GenomeError(f"a toy_leaky genome has exactly space, v and slope, got {sorted(genome)}")
        slope = genome["slope"]
        if not isinstance(slope, float) or slope not in SLOPES:
            raise GenomeError(f"slope must be one of {SLOPES}, got {slope!r}")

    def canonical(self, genome: Genome) -> str:
        self.validate(genome)
        return canonical_json(genome)

    def sample(self, rng: np.random.Generator) -> Genome:
        return self._genome(float(rng.choice(SLOPES)))

    def mutate(self, genome: Genome, rng: np.random.Generator) -> tuple[Genome, str]:
        self.validate(genome)
        return self._genome(float(rng.choice([s for s in SLOPES if s != genome["slope"]]))), "slope"

    def build(self, genome: Genome, **shape: object) -> Leaky:
        self.validate(genome)
        return Leaky(genome["slope"])

    def to_source(self, genome: Genome, class_name: str) -> str:
        self.validate(genome)
        return _SOURCE.format(name=class_name, slope=genome["slope"])

    def describe(self, genome: Genome, fmt: str = "text") -> str:
        self.validate(genome)
        if fmt == "latex":
            return rf"\mathrm{{leaky}}(x, {genome['slope']!r})"
        return f"leaky(x, {genome['slope']!r})"

    def parse(self, text: str) -> Genome:
        match = _TEXT.fullmatch(text.strip())
        if match is None:
            raise GenomeError(f"toy_leaky text is 'leaky(x, SLOPE)', got {text!r}")
        genome = self._genome(float(match.group(1)))
        self.validate(genome)
        return genome

    def seeds(self) -> dict[str, Genome]:
        return {"relu": self._genome(0.0), "leaky_relu": self._genome(0.01)}

    def present(self, genome: Genome) -> Curve:
        return elementwise_curve(self.build(genome))

    def reference(self) -> tuple[str, Curve]:
        return "ReLU", self.present(self._genome(0.0))
