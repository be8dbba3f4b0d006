"""What is searched: genomes, sampling, variation, compile to torch, export as source."""

from spaces.base import Genome, GenomeError, Space, SpaceConfigError, canonical_json, genome_key
from spaces.registry import get_space, register_space, space_kinds

__all__ = [
    "Genome",
    "GenomeError",
    "Space",
    "SpaceConfigError",
    "canonical_json",
    "genome_key",
    "get_space",
    "register_space",
    "space_kinds",
]
