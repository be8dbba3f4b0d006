"""What is searched: genomes, sampling, variation, compile to torch, export as source."""

from spaces.base import (
    Curve,
    Genome,
    GenomeError,
    Graph,
    Presentation,
    Space,
    SpaceConfigError,
    Table,
    canonical_json,
    elementwise_curve,
    genome_key,
)
from spaces.registry import get_space, register_space, space_kinds

__all__ = [
    "Curve",
    "Genome",
    "GenomeError",
    "Graph",
    "Presentation",
    "Space",
    "SpaceConfigError",
    "Table",
    "canonical_json",
    "elementwise_curve",
    "genome_key",
    "get_space",
    "register_space",
    "space_kinds",
]
