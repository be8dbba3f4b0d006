"""KAN genomes: the whitelist parser and what each layer spec holds.

Genome (``v`` 1)::

    {"space": "kan", "v": 1, "hidden": [5, 8], "layers": [L0, L1, L2]}

``hidden`` are the hidden widths (input and output widths come from the task at build time); there is one
layer spec per weight layer (``len(hidden) + 1``). A layer spec always has ``family``, ``norm``
("none" | "layernorm" | "tanh") and, except for "mlp", ``base`` (bool: the W_b silu(x) branch), plus the fields
its family reads: ``grid`` (grid size G), ``order`` (spline order k), ``degree`` (polynomial degree).
Two composite families carry all three: ``"selectable"`` with ``"candidates": [families]`` (an S-KAN mixture
per output node, trained, then hardened by ``KanSpace.harden``) and ``"mixed"`` with ``"nodes": [family per
output node]`` (the compact result of hardening; never sampled). ``"mlp"`` is the MLP baseline in KAN form.

An optional top-level ``"recipe"`` names how the network trains (a key of the proxies' ``recipes``, e.g. Adam
or LBFGS with grid updates); it is sampled only when the space's ``recipes`` option lists some.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

from spaces.base import Genome, GenomeError
from spaces.kan.bases import BASES
from spaces.kan.layer import NORMS

KIND = "kan"
VERSION = 1
KAN_FAMILIES = tuple(f for f in BASES if f != "mlp")
COMPOSITE = ("selectable", "mixed")
MAX_WIDTH = 4096
MAX_HIDDEN = 16
GRID_RANGE = (2, 64)
ORDER_RANGE = (1, 16)
RECIPE_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


def layer_fields(family: str) -> tuple[str, ...]:
    """Genome fields a layer spec of ``family`` must have, besides ``family`` and ``norm``."""
    if family in COMPOSITE:
        return ("grid", "order", "degree", "base", "candidates" if family == "selectable" else "nodes")
    if family == "mlp":
        return ()
    return (*BASES[family].uses, "base")


def check_int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise GenomeError(f"{where} must be an integer in [{lo}, {hi}], got {reprlib.repr(value)}")
    return value


def _check_families(value: Any, where: str, min_len: int) -> list[str]:
    if not isinstance(value, list) or len(value) < min_len:
        raise GenomeError(f"{where} must be a list of at least {min_len} family names, got {reprlib.repr(value)}")
    for f in value:
        if not isinstance(f, str) or f not in BASES:
            raise GenomeError(f"{where} names unknown family {reprlib.repr(f)}; known: {', '.join(BASES)}")
    return list(value)


def parse_layer(spec: Any, where: str) -> dict[str, Any]:
    """Whitelist parse of one layer spec; returns a normalized copy (selectable candidates sorted)."""
    if not isinstance(spec, dict):
        raise GenomeError(f"{where} must be an object, got {type(spec).__name__}")
    family = spec.get("family")
    if not isinstance(family, str) or (family not in BASES and family not in COMPOSITE):
        known = ", ".join([*BASES, *COMPOSITE])
        raise GenomeError(f"{where}.family {reprlib.repr(family)} is unknown; use one of: {known}")
    allowed = {"family", "norm", *layer_fields(family)}
    extra = sorted(set(spec) - allowed)
    missing = sorted(allowed - set(spec))
    if extra:
        raise GenomeError(f"{where} ({family}) has unknown fields {extra}; a {family} layer has {sorted(allowed)}")
    if missing:
        raise GenomeError(f"{where} ({family}) is missing fields {missing}")
    if not isinstance(spec["norm"], str) or spec["norm"] not in NORMS:
        raise GenomeError(f"{where}.norm {reprlib.repr(spec['norm'])} is unknown; use one of: {', '.join(NORMS)}")
    out = {"family": family, "norm": spec["norm"]}
    if "grid" in allowed:
        out["grid"] = check_int(spec["grid"], f"{where}.grid", *GRID_RANGE)
    for key in ("order", "degree"):
        if key in allowed:
            out[key] = check_int(spec[key], f"{where}.{key}", *ORDER_RANGE)
    if "base" in allowed:
        if not isinstance(spec["base"], bool):
            raise GenomeError(f"{where}.base must be true or false, got {reprlib.repr(spec['base'])}")
        out["base"] = spec["base"]
    if family == "selectable":
        cands = _check_families(spec["candidates"], f"{where}.candidates", 2)
        if len(set(cands)) != len(cands):
            raise GenomeError(f"{where}.candidates repeats a family: {cands}")
        out["candidates"] = sorted(cands)
    if family == "mixed":
        out["nodes"] = _check_families(spec["nodes"], f"{where}.nodes", 1)
    return out


def parse_genome(genome: Genome) -> Genome:
    """Whitelist parse of a genome whose header (space, v) is already checked; returns its normalized copy."""
    extra = sorted(set(genome) - {"space", "v", "hidden", "layers", "recipe"})
    if extra:
        raise GenomeError(f"kan genome has unknown fields {extra}; it has space, v, hidden, layers, recipe")
    recipe = genome.get("recipe")
    if recipe is not None and (not isinstance(recipe, str) or not RECIPE_NAME.match(recipe)):
        raise GenomeError(f"recipe must be a recipe name (letters, digits, _ -), got {reprlib.repr(recipe)}")
    hidden = genome.get("hidden")
    if not isinstance(hidden, list) or len(hidden) > MAX_HIDDEN:
        raise GenomeError(f"hidden must be a list of at most {MAX_HIDDEN} widths, got {reprlib.repr(hidden)}")
    hidden = [check_int(w, f"hidden[{i}]", 1, MAX_WIDTH) for i, w in enumerate(hidden)]
    layers = genome.get("layers")
    if not isinstance(layers, list) or len(layers) != len(hidden) + 1:
        raise GenomeError(
            f"layers must be a list of len(hidden) + 1 = {len(hidden) + 1} layer specs, got {reprlib.repr(layers)}"
        )
    specs = [parse_layer(spec, f"layers[{i}]") for i, spec in enumerate(layers)]
    for i, spec in enumerate(specs[:-1]):
        if spec["family"] == "mixed" and len(spec["nodes"]) != hidden[i]:
            raise GenomeError(
                f"layers[{i}].nodes names {len(spec['nodes'])} families but hidden[{i}] is {hidden[i]}"
            )
    parsed = {"space": KIND, "v": VERSION, "hidden": hidden, "layers": specs}
    return parsed if recipe is None else {**parsed, "recipe": recipe}
