"""The Space contract: what every searchable layer family provides.

A genome is a plain JSON-serializable dict ``{"space": kind, "v": version, ...}``. Spaces treat genomes as
values: no method mutates its argument, every variation returns a new dict. Anything read back from a
store or a file goes through ``validate`` (a whitelist parser), never ``eval`` or pickle.
"""

from __future__ import annotations

import copy
import hashlib
import json
import reprlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

Genome = dict[str, Any]


class GenomeError(ValueError):
    """A genome (or its text form) is malformed or names something outside the whitelist."""


class SpaceConfigError(ValueError):
    """A space was configured with unknown or invalid options."""


def canonical_json(value: Any) -> str:
    """One string for equal JSON values: sorted keys, no whitespace, floats as repr."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def genome_key(canonical: str) -> str:
    """Short stable hash of a canonical form; the candidate key in the store."""
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Curve:
    """An elementwise layer drawn as f(x) and f'(x) on a grid; several curves share one plot."""

    x: np.ndarray
    y: np.ndarray
    dy: np.ndarray


@dataclass(frozen=True)
class Graph:
    """A computation graph as Graphviz DOT source."""

    dot: str


@dataclass(frozen=True)
class Table:
    """Rows of a layer's structure (one dict per row, same keys), e.g. one row per KAN layer."""

    rows: list[dict[str, Any]] = field(default_factory=list)


#: What a space draws of a genome; the dashboard shows each kind the same way for every space.
Presentation = Curve | Graph | Table


def elementwise_curve(module: torch.nn.Module, x_range: tuple[float, float] = (-5.0, 5.0), points: int = 401) -> Curve:
    """f and f' of an elementwise module on a grid, f' by autograd (zero where nothing depends on x)."""
    grid = np.linspace(*x_range, points)
    x = torch.tensor(grid, dtype=torch.float32, requires_grad=True)
    with torch.enable_grad():
        y = torch.broadcast_to(module(x), x.shape)
        if not y.requires_grad:
            return Curve(grid, y.detach().numpy(), np.zeros(points))
        (dy,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    return Curve(grid, y.detach().numpy(), dy.numpy() if dy is not None else np.zeros(points))


def _scalar_fields(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(JSON path, value as text) of every number, string, bool or null inside ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _scalar_fields(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _scalar_fields(item, f"{path}.{index}" if path else str(index))
    else:
        yield path, str(value)


class Space(ABC):
    """A family of layers that can be sampled, varied, built into torch and exported as source.

    Everything the rest of the platform knows of a kind is here: the dashboard draws ``present``, export names
    classes with ``class_prefix``, Optuna samplers call ``suggest``. Adding a space touches ``spaces/`` only.
    """

    kind: ClassVar[str]
    version: ClassVar[int] = 1
    #: Shown to people: page titles, legends, manifest.
    display_name: ClassVar[str]
    #: Exported classes are named ``{class_prefix}C{candidate_id}``.
    class_prefix: ClassVar[str]
    #: True where a genome is a whole network sized by the task: ``build`` and ``to_source`` then take the
    #: task's ``in_features`` (flat input size) and ``out_features``, and exports pass the study's sizes.
    task_sized: ClassVar[bool] = False
    #: True where a layer is a normalization and an activation in one (EvoNorm-style): hosts put no norm before it.
    normalizes: ClassVar[bool] = False

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Genome:
        """A random valid genome."""

    @abstractmethod
    def mutate(self, genome: Genome, rng: np.random.Generator) -> tuple[Genome, str]:
        """A mutated copy and the name of the mutation operator used (recorded in the store)."""

    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> Genome | None:
        """A child of two parents, or None where the space has no meaningful crossover."""
        return None

    @abstractmethod
    def validate(self, genome: Genome) -> None:
        """Raise GenomeError saying what is wrong and how to fix it."""

    @abstractmethod
    def canonical(self, genome: Genome) -> str:
        """One string for structurally equal genomes."""

    def key(self, genome: Genome) -> str:
        return genome_key(self.canonical(genome))

    def structure(self, genome: Genome) -> str:
        """``canonical`` less the initial values of learnable parameters: genomes equal here train into the same
        family of layers (each learns its own values), so a search that trained one has measured the others but
        for their initialization. A space without learnable initial values in its genomes keeps the default."""
        return self.canonical(genome)

    @abstractmethod
    def build(self, genome: Genome, **shape: Any) -> torch.nn.Module:
        """The layer as a torch module; ``shape`` carries what the host architecture knows (channels, widths)."""

    @abstractmethod
    def to_source(self, genome: Genome, class_name: str) -> str:
        """A standalone Python module defining ``class_name`` that imports only torch."""

    @abstractmethod
    def describe(self, genome: Genome, fmt: str = "text") -> str:
        """Human-readable formula. ``fmt``: "text" (exact: ``parse`` reads it back where the space has a text form),
        "display" (for reading in summaries, the dashboard and exports: simplified where the space simplifies,
        else the same as "text") or "latex"."""

    def seeds(self) -> dict[str, Genome]:
        """Named well-known genomes (baselines) a study may inject."""
        return {}

    def static_problems(self, genome: Genome) -> list[str]:
        """Reasons to reject without running anything (e.g. output does not depend on x); empty if none."""
        return []

    def probe(self, genome: Genome, inputs: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor]:
        """A small built layer and ``inputs`` shaped for it, for the cheap numeric checks and the fingerprint.

        ``inputs`` is a flat float tensor of probe values (a grid or random draws); elementwise spaces use it
        as is, others reshape or tile it to a representative shape of theirs.
        """
        return self.build(genome), inputs

    def features(self, genome: Genome, inputs: torch.Tensor) -> np.ndarray:
        """What the layer computes, as numbers for surrogate models: its outputs (eval mode, flattened) on
        ``inputs`` through ``probe``, as the fingerprint sees them. The length depends only on ``inputs``, so the
        genomes of a configured space give comparable vectors; non-finite outputs are kept for the caller to treat.
        """
        with torch.no_grad():
            module, probe_inputs = self.probe(genome, inputs)
            module.eval()
            return module(probe_inputs).detach().double().flatten().cpu().numpy()

    def parts(self, genome: Genome) -> set[tuple[str, str]]:
        """The pieces a genome is made of, as (kind, text) pairs such as ("op", "tanh") or ("family", "rbf"): the
        dashboard counts which pieces are common among a study's best candidates. The default names every scalar
        field by its JSON path (("layers.0.family", "rbf")); a space overrides it with pieces people recognise.
        """
        self.validate(genome)
        return set(_scalar_fields({k: v for k, v in genome.items() if k not in ("space", "v")}))

    def enumerate(self) -> list[Genome]:
        """Every genome, where the configured space is finite and small enough to list (exhaustive tables)."""
        raise SpaceConfigError(f"space {self.kind!r} cannot list its genomes; tabulate an enumerable space")

    def suggest(self, trial: Any) -> Genome:
        """A genome from an Optuna trial's ``suggest_*`` calls, for the Optuna samplers; optional."""
        raise SpaceConfigError(
            f"space {self.kind!r} has no suggest(trial), so Optuna samplers cannot drive it: "
            "use random, evolution, pareto or nsga2"
        )

    @classmethod
    def supports_suggest(cls) -> bool:
        return cls.suggest is not Space.suggest

    def present(self, genome: Genome) -> Presentation | None:
        """What the dashboard draws of a valid genome beside its formula; None draws nothing."""
        return None

    def reference(self) -> tuple[str, Presentation] | None:
        """A well-known layer drawn beside candidates for scale (e.g. ReLU), even where the space cannot express it."""
        return None

    def parse(self, text: str) -> Genome:
        """Genome from the space's text form, where it has one."""
        raise GenomeError(f"space {self.kind!r} has no text form; give the genome as JSON")

    def _check_header(self, genome: Any) -> None:
        if not isinstance(genome, dict):
            raise GenomeError(f"a genome must be a JSON object, got {type(genome).__name__}")
        if genome.get("space") != self.kind:
            raise GenomeError(f"genome is for space {reprlib.repr(genome.get('space'))}, expected {self.kind!r}")
        if genome.get("v") != self.version:
            raise GenomeError(
                f"genome version {reprlib.repr(genome.get('v'))} is not supported by space {self.kind!r} "
                f"(expects v={self.version})"
            )

    @staticmethod
    def copy(genome: Genome) -> Genome:
        return copy.deepcopy(genome)
