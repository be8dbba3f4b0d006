"""KanSpace: searches the widths of a KAN network and, per layer, its family, grid, order/degree, base branch
and input normalization. The genome format is in ``spaces.kan.genome``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from spaces.base import Genome, GenomeError, Space, SpaceConfigError, Table, canonical_json
from spaces.kan.bases import BASES
from spaces.kan.describe import describe_genome, layer_table
from spaces.kan.export import network_source
from spaces.kan.genome import (
    GRID_RANGE,
    KAN_FAMILIES,
    KIND,
    MAX_HIDDEN,
    MAX_WIDTH,
    ORDER_RANGE,
    RECIPE_NAME,
    VERSION,
    layer_fields,
    parse_genome,
)
from spaces.kan.layer import NORMS, KANLayer, MixedKANLayer
from spaces.kan.network import KANNetwork
from spaces.kan.selectable import SelectableKANLayer
from spaces.registry import register_space

PROBE_IN = 4


def make_layer(spec: dict[str, Any], fan_in: int, fan_out: int) -> nn.Module:
    """The torch layer for a parsed layer spec (mirrors ``export.layer_call``)."""
    family = spec["family"]
    if spec["norm"] == "layernorm" and fan_in == 1:
        raise GenomeError("layernorm over a single input feature is constant; use norm 'none' or 'tanh'")
    if family == "selectable":
        return SelectableKANLayer(
            fan_in, fan_out, spec["candidates"], spec["grid"], spec["order"], spec["degree"], spec["base"], spec["norm"]
        )
    if family == "mixed":
        if len(spec["nodes"]) != fan_out:
            raise GenomeError(f"a mixed layer names {len(spec['nodes'])} node families for {fan_out} outputs")
        return MixedKANLayer(
            fan_in, fan_out, spec["nodes"], spec["grid"], spec["order"], spec["degree"], spec["base"], spec["norm"]
        )
    order = spec.get("order", spec.get("degree", 3))
    return KANLayer(fan_in, fan_out, family, spec.get("grid", 5), order, spec.get("base", False), spec["norm"])


def _choices(name: str, value: Sequence[Any], allowed: Sequence[Any] | None = None) -> tuple[Any, ...]:
    values = tuple(value)
    if not values:
        raise SpaceConfigError(f"kan space option {name!r} must not be empty")
    if allowed is not None:
        bad = [v for v in values if v not in allowed]
        if bad:
            raise SpaceConfigError(f"kan space option {name!r} has unknown values {bad}; allowed: {list(allowed)}")
    return values


@register_space
class KanSpace(Space):
    """Which family, grid, order and width each layer of a KAN network uses.

    Options (from a study config): ``families`` allowed per layer (default every KAN family; add "mlp" for an
    MLP baseline in the search), ``selectable`` (also offer the S-KAN mixture), ``candidates`` (its pool),
    ``widths`` (hidden width choices), ``min_hidden``/``max_hidden`` (hidden layer count), ``grids``,
    ``orders`` (spline orders), ``degrees`` (polynomial degrees), ``norms``, ``bases`` (base branch on/off) and
    ``recipes`` (training recipes the search picks from, by name: keys of the proxies' ``recipes``).
    """

    kind = KIND
    version = VERSION
    display_name = "KAN"
    class_prefix = "KAN"
    task_sized = True

    def __init__(
        self,
        families: Sequence[str] = KAN_FAMILIES,
        selectable: bool = True,
        candidates: Sequence[str] = ("bspline", "chebyshev", "fourier", "rbf", "mexican_hat", "relu"),
        widths: Sequence[int] = (2, 3, 5, 8, 16, 32),
        min_hidden: int = 1,
        max_hidden: int = 2,
        grids: Sequence[int] = (3, 5, 8, 10),
        orders: Sequence[int] = (1, 2, 3),
        degrees: Sequence[int] = (2, 3, 4, 5, 6),
        norms: Sequence[str] = NORMS,
        bases: Sequence[bool] = (True, False),
        recipes: Sequence[str] = (),
    ):
        self.families = _choices("families", families, list(BASES))
        self.candidates = tuple(sorted(_choices("candidates", candidates, list(BASES))))
        if selectable and len(self.candidates) < 2:
            raise SpaceConfigError("kan space option 'candidates' needs at least 2 families for selectable layers")
        self.family_choices = self.families + (("selectable",) if selectable else ())
        self.widths = _choices("widths", widths)
        self.grids = _choices("grids", grids)
        self.orders = _choices("orders", orders)
        self.degrees = _choices("degrees", degrees)
        self.norms = _choices("norms", norms, NORMS)
        self.bases = _choices("bases", bases, (True, False))
        self.recipes = tuple(recipes)
        if any(not isinstance(r, str) or not RECIPE_NAME.match(r) for r in self.recipes):
            raise SpaceConfigError(f"kan space option 'recipes' must hold names (letters, digits, _ -): {recipes}")
        for name, values, (lo, hi) in (
            ("widths", self.widths, (1, MAX_WIDTH)),
            ("grids", self.grids, GRID_RANGE),
            ("orders", self.orders, ORDER_RANGE),
            ("degrees", self.degrees, ORDER_RANGE),
        ):
            if any(isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi for v in values):
                raise SpaceConfigError(f"kan space option {name!r} must hold integers in [{lo}, {hi}], got {values}")
        if not 0 <= min_hidden <= max_hidden <= MAX_HIDDEN:
            raise SpaceConfigError(
                f"need 0 <= min_hidden <= max_hidden <= {MAX_HIDDEN}, got {min_hidden}, {max_hidden}"
            )
        self.min_hidden = min_hidden
        self.max_hidden = max_hidden

    # -- parsing ---------------------------------------------------------------------------------------

    def _parse(self, genome: Genome) -> Genome:
        self._check_header(genome)
        return parse_genome(genome)

    def validate(self, genome: Genome) -> None:
        self._parse(genome)

    def canonical(self, genome: Genome) -> str:
        return canonical_json(self._parse(genome))

    # -- sampling and variation ------------------------------------------------------------------------

    def _spec(self, family: str, rng: np.random.Generator, like: dict[str, Any] | None = None) -> dict[str, Any]:
        """A layer spec of ``family``: fields shared with ``like`` are kept, the others drawn."""
        like = like or {}
        draw = {
            "grid": lambda: int(rng.choice(self.grids)),
            "order": lambda: int(rng.choice(self.orders)),
            "degree": lambda: int(rng.choice(self.degrees)),
            "base": lambda: bool(rng.choice(self.bases)),
            "candidates": lambda: list(self.candidates),
        }
        spec: dict[str, Any] = {"family": family, "norm": like.get("norm") or str(rng.choice(self.norms))}
        for key in layer_fields(family):
            spec[key] = like[key] if key in like else draw[key]()
        return spec

    def sample(self, rng: np.random.Generator) -> Genome:
        depth = int(rng.integers(self.min_hidden, self.max_hidden + 1))
        hidden = [int(rng.choice(self.widths)) for _ in range(depth)]
        layers = [self._spec(str(rng.choice(self.family_choices)), rng) for _ in range(depth + 1)]
        genome = {"space": self.kind, "v": self.version, "hidden": hidden, "layers": layers}
        return {**genome, "recipe": str(rng.choice(self.recipes))} if self.recipes else genome

    def mutate(self, genome: Genome, rng: np.random.Generator) -> tuple[Genome, str]:
        g = self._parse(genome)
        hidden, layers = g["hidden"], g["layers"]
        choices = {"family": self.family_choices, "norm": self.norms, "base": self.bases, "width": self.widths}
        ops = [op for op in ("family", "norm", "base") if len(choices[op]) > 1]
        if len(choices["width"]) > 1 and any(s["family"] != "mixed" for s in layers[:-1]):
            ops.append("width")
        if len(hidden) < self.max_hidden:
            ops.append("add_layer")
        if len(hidden) > self.min_hidden:
            ops.append("remove_layer")
        for key, values in (("grid", self.grids), ("order", self.orders), ("degree", self.degrees)):
            if len(values) > 1 and any(key in s for s in layers):
                ops.append(key)
        if any(s["family"] == "selectable" for s in layers) and len(self.candidates) > 2:
            ops.append("candidates")
        if len(self.recipes) > 1:
            ops.append("recipe")
        for _ in range(100):
            op = str(rng.choice(ops or ["family"]))
            if op == "recipe":
                child = {**g, "recipe": str(rng.choice([r for r in self.recipes if r != g.get("recipe")]))}
            else:
                child = self._apply(op, hidden, layers, rng)
                if child is not None and "recipe" in g:
                    child["recipe"] = g["recipe"]
            if child is not None and self.canonical(child) != self.canonical(g):
                return child, op
        raise GenomeError("no mutation changes this genome under the space's options; widen the choices")

    def _apply(
        self, op: str, hidden: list[int], layers: list[dict[str, Any]], rng: np.random.Generator
    ) -> Genome | None:
        hidden = list(hidden)
        layers = [dict(s) for s in layers]
        if op == "width":
            slots = [i for i, s in enumerate(layers[:-1]) if s["family"] != "mixed"]
            if not slots:
                return None
            i = int(rng.choice(slots))
            hidden[i] = int(rng.choice([w for w in self.widths if w != hidden[i]] or self.widths))
        elif op == "add_layer":
            i = int(rng.integers(0, len(hidden) + 1))
            hidden.insert(i, int(rng.choice(self.widths)))
            src = layers[i]
            new = dict(src) if src["family"] != "mixed" else self._spec(str(rng.choice(self.family_choices)), rng)
            layers.insert(i, new)
        elif op == "remove_layer":
            i = int(rng.integers(0, len(hidden)))
            del hidden[i], layers[i]
        else:
            i = int(rng.integers(0, len(layers)))
            spec = layers[i]
            if op == "family":
                family = str(rng.choice([f for f in self.family_choices if f != spec["family"]] or self.family_choices))
                layers[i] = self._spec(family, rng, like=spec)
            elif op == "norm":
                spec["norm"] = str(rng.choice([n for n in self.norms if n != spec["norm"]] or self.norms))
            elif op == "base":
                if "base" not in spec:
                    return None
                spec["base"] = not spec["base"]
            elif op == "candidates":
                if spec["family"] != "selectable":
                    return None
                cands = set(spec["candidates"])
                pool = sorted(set(self.candidates) - cands)
                if len(cands) > 2 and (not pool or rng.random() < 0.5):
                    cands.discard(str(rng.choice(sorted(cands))))
                elif pool:
                    cands.add(str(rng.choice(pool)))
                spec["candidates"] = sorted(cands)
            else:  # grid, order, degree
                if op not in spec:
                    return None
                values = {"grid": self.grids, "order": self.orders, "degree": self.degrees}[op]
                spec[op] = int(rng.choice(values))
        return {"space": self.kind, "v": self.version, "hidden": hidden, "layers": layers}

    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> Genome:
        """Layer-wise uniform crossover: each hidden layer (width with the spec that produces it) and the
        output layer come from either parent; the depth from one of them."""
        pa, pb = self._parse(a), self._parse(b)
        depth = len((pa, pb)[int(rng.integers(0, 2))]["hidden"])
        hidden, layers = [], []
        for i in range(depth):
            owners = [p for p in (pa, pb) if i < len(p["hidden"])]
            parent = owners[int(rng.integers(0, len(owners)))]
            hidden.append(parent["hidden"][i])
            layers.append(dict(parent["layers"][i]))
        layers.append(dict((pa, pb)[int(rng.integers(0, 2))]["layers"][-1]))
        child = {"space": self.kind, "v": self.version, "hidden": hidden, "layers": layers}
        recipes = [p["recipe"] for p in (pa, pb) if "recipe" in p]
        return {**child, "recipe": recipes[int(rng.integers(0, len(recipes)))]} if recipes else child

    def suggest(self, trial: Any) -> Genome:
        """A genome drawn through an Optuna trial (``suggest_int`` / ``suggest_categorical`` over the same
        choices as ``sample``), so TPE or NSGA-II can drive the space with define-by-run."""
        depth = trial.suggest_int("n_hidden", self.min_hidden, self.max_hidden)
        hidden = [int(trial.suggest_categorical(f"width_{i}", list(self.widths))) for i in range(depth)]
        layers = []
        for i in range(depth + 1):
            family = trial.suggest_categorical(f"layer{i}_family", list(self.family_choices))
            spec: dict[str, Any] = {
                "family": family,
                "norm": trial.suggest_categorical(f"layer{i}_norm", list(self.norms)),
            }
            for key in layer_fields(family):
                if key == "candidates":
                    spec[key] = list(self.candidates)
                else:
                    values = {"grid": self.grids, "order": self.orders, "degree": self.degrees, "base": self.bases}
                    spec[key] = trial.suggest_categorical(f"layer{i}_{key}", list(values[key]))
            layers.append(spec)
        genome = {"space": self.kind, "v": self.version, "hidden": hidden, "layers": layers}
        if self.recipes:
            genome["recipe"] = trial.suggest_categorical("recipe", list(self.recipes))
        return self._parse(genome)

    def seeds(self) -> dict[str, Genome]:
        """One all-same-family genome per allowed family, the selectable pool, and an MLP baseline."""
        width = [self.widths[len(self.widths) // 2]] * max(1, self.min_hidden)
        defaults = {
            "grid": 5 if 5 in self.grids else self.grids[len(self.grids) // 2],
            "order": 3 if 3 in self.orders else max(self.orders),
            "degree": 4 if 4 in self.degrees else self.degrees[len(self.degrees) // 2],
            "base": True,
            "candidates": list(self.candidates),
            "norm": "none",
        }
        out = {}
        for family in (*self.families, "selectable", "mlp"):
            spec = {"family": family, "norm": "none", **{k: defaults[k] for k in layer_fields(family)}}
            name = family if family in ("selectable", "mlp") else f"kan_{family}"
            out[name] = {"space": self.kind, "v": self.version, "hidden": width, "layers": [spec] * (len(width) + 1)}
        return {k: self._parse(g) for k, g in out.items()}

    # -- torch -----------------------------------------------------------------------------------------

    def build(self, genome: Genome, in_features: int = PROBE_IN, out_features: int = 1, **_: Any) -> KANNetwork:
        """The whole KAN network; ``in_features``/``out_features`` come from the task (flat input size, outputs)."""
        g = self._parse(genome)
        widths = [in_features, *g["hidden"], out_features]
        return KANNetwork([make_layer(s, widths[i], widths[i + 1]) for i, s in enumerate(g["layers"])])

    def probe(self, genome: Genome, inputs: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
        """A network with 4 inputs and 1 output, built from a fixed seed, and ``inputs`` as (N, 4) rows."""
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = self.build(genome, in_features=PROBE_IN, out_features=1)
        flat = inputs.reshape(-1)
        n = flat.numel() // PROBE_IN * PROBE_IN
        return model, flat[:n].reshape(-1, PROBE_IN)

    def harden(self, genome: Genome, model: KANNetwork) -> tuple[Genome, KANNetwork]:
        """Replace each trained selectable layer by its compact hardened layer; the genome says what was kept.

        The returned genome builds the returned network's structure, so ``to_source`` of it loads its state_dict;
        each layer's grid is the size it trained to (grid extension may have changed it).
        """
        g = self._parse(genome)
        layers, specs = [], []
        for spec, layer in zip(g["layers"], model.layers, strict=True):
            if "grid" in spec:
                spec = {**spec, "grid": layer.grid_size}
            if isinstance(layer, SelectableKANLayer):
                nodes = layer.selected()
                layer = layer.harden()
                common = {k: spec[k] for k in ("norm", "base")}
                if len(set(nodes)) > 1:
                    spec = {
                        "family": "mixed",
                        "nodes": nodes,
                        "grid": spec["grid"],
                        "order": spec["order"],
                        "degree": spec["degree"],
                        **common,
                    }
                else:
                    spec = {"family": nodes[0], **{k: spec[k] for k in layer_fields(nodes[0])}, "norm": spec["norm"]}
            else:
                layer = copy.deepcopy(layer)
            specs.append(spec)
            layers.append(layer)
        hard = {"space": self.kind, "v": self.version, "hidden": g["hidden"], "layers": specs}
        if "recipe" in g:
            hard["recipe"] = g["recipe"]
        return self._parse(hard), KANNetwork(layers)

    # -- text ------------------------------------------------------------------------------------------

    def describe(self, genome: Genome, fmt: str = "text") -> str:
        return describe_genome(self._parse(genome), fmt)

    def to_source(
        self, genome: Genome, class_name: str, in_features: int | None = None, out_features: int | None = None
    ) -> str:
        """Standalone module (torch and math only) with ``class_name(in_features, out_features)``; pass the
        task's sizes to make them the defaults. Hardened genomes export compact layers."""
        if not class_name.isidentifier():
            raise GenomeError(f"class name {class_name!r} is not a Python identifier")
        g = self._parse(genome)
        return network_source(g["layers"], g["hidden"], class_name, self.describe(g), in_features, out_features)

    # -- presentation ----------------------------------------------------------------------------------

    def parts(self, genome: Genome) -> set[tuple[str, str]]:
        """Families anywhere and per layer (the families a mixed layer holds included), norms, base branches,
        the number of hidden layers and the training recipe."""
        g = self._parse(genome)
        found = {("hidden layers", str(len(g["hidden"])))}
        last = len(g["layers"]) - 1
        for i, spec in enumerate(g["layers"]):
            position = "output layer" if i == last else f"layer {i}"
            found |= {("family", f) for f in [spec["family"], *spec.get("nodes", [])]}
            found |= {(f"{position} family", spec["family"]), ("norm", spec["norm"])}
            if "base" in spec:
                found.add(("base branch", "on" if spec["base"] else "off"))
        if "recipe" in g:
            found.add(("recipe", g["recipe"]))
        return found

    def present(self, genome: Genome) -> Table:
        """One row per layer (see ``layer_table``), with a recipe column when the genome names one."""
        return layer_table(self._parse(genome))
