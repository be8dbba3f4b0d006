"""ActivationSpace: elementwise activation functions as expression trees (Swish search, PANGAEA, AQuaSurF).

Genome (JSON)::

    {"space": "activation", "v": 1, "expr": NODE}
    NODE = {"op": "x"}                                             the input
         | {"op": "const", "value": 0.5}                           a fixed number
         | {"op": UNARY, "args": [NODE], "alpha"?: a, "beta"?: b}  alpha * f(beta * arg)
         | {"op": BINARY, "args": [NODE, NODE], "alpha"?: a}       alpha * g(arg0, arg1)
         | {"op": PARAMETRIC, "args": [NODE, NODE], "beta": b, "alpha"?: a}

``alpha`` (output scale) and ``beta`` (input scale) are PANGAEA-style learnable scalars holding their initial
values; ``build`` makes each one an ``nn.Parameter``, and an absent one is a fixed 1. The parametric binary ops of
the Swish search (``gauss_diff``, ``laplace_diff``, ``blend``) always carry their own learnable ``beta``.
Swish's ``beta*x``, ``beta`` and ``x + beta`` unaries are ``identity({b}*x)``, ``{b}*one(x)`` and (trees only)
``x + {b}*one(x)``. The ops are in ``ops``, the text form in ``text``.

``build`` and ``to_source`` compile the tree through ``lower`` first: a subtree that computes Swish (x*sigmoid(x)),
GELU (erf or tanh form) or Mish of one subtree becomes torch's fused op, so the module and the export run the same
fused kernels; the genome, its text and its canonical form are unchanged.
"""

from __future__ import annotations

import math
import re
import reprlib
from typing import Any

import numpy as np
import torch
from torch import nn

from spaces.activation.export import to_source
from spaces.activation.lowering import lower
from spaces.activation.module import EvolvedActivation, evaluate
from spaces.activation.ops import ALIASES, BINARY_OPS, LEAVES, OPS, UNARY_OPS, OpSpec, known_ops_text
from spaces.activation.schema import SCHEMAS, TEMPLATES, embed, expand, matches, template_size, template_text
from spaces.activation.suggest import TreeSuggestion
from spaces.activation.text import display_formula, formula, latex, parse_formula
from spaces.activation.tree import (
    MAX_DEPTH,
    Node,
    depends_on_x,
    depth,
    normalize,
    param_slots,
    size,
    walk,
    without_initial_values,
)
from spaces.activation.variation import MUTATIONS, PARAM_MUTATIONS, SHAPE_MUTATIONS, TreeVariation
from spaces.base import Curve, Genome, GenomeError, Space, SpaceConfigError, canonical_json, elementwise_curve
from spaces.registry import register_space

PART_NODES = 7  # the largest subtree ``parts`` names: bigger ones are whole formulas, rarely shared
LEARNABLE_TEXT = re.compile(r"\{[^{}]*\}")  # a learnable scalar in the text form: {0.5}

# Well-known activations in text form; fixed schemas get them embedded with identity and "+ zero(x)".
SEED_TEXTS = {
    "relu": "relu(x)",
    "leaky_relu": "leaky_relu(x)",
    "elu": "elu(x)",
    "selu": "selu(x)",
    "gelu": "gelu(x)",
    "silu": "silu(x)",
    "swish": "x*sigmoid({1.0}*x)",
    "mish": "mish(x)",
    "tanh": "tanh(x)",
    "sigmoid": "sigmoid(x)",
    "softplus": "softplus(x)",
    "crrelu": "relu(x) + {0.01}*(x*gaussian(0.7071067811865476*x))",  # exp(-x^2/2) = gaussian(x/sqrt(2))
}


def _resolve_ops(kind: str, names: Any, table: dict[str, OpSpec]) -> list[str]:
    if names is None:
        return list(table)
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise SpaceConfigError(f"{kind}_ops must be a list of op names, got {names!r}")
    resolved = [ALIASES.get(name, name) for name in names]
    unknown = [name for name, op in zip(names, resolved, strict=True) if op not in table]
    if unknown:
        raise SpaceConfigError(f"unknown {kind} op(s) {unknown}; valid {kind} ops: {', '.join(table)}")
    return list(dict.fromkeys(resolved))


def _check_count(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise SpaceConfigError(f"{name} must be an integer {bounds}, got {reprlib.repr(value)}")
    return value


def _check_probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise SpaceConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    """A number that is finite as a float: an integer of hundreds of digits is not (``float()`` overflows)."""
    try:
        return _is_number(value) and math.isfinite(value)
    except OverflowError:
        return False


@register_space
class ActivationSpace(TreeVariation, TreeSuggestion, Space):
    """Elementwise activation functions: expression trees over whitelisted ops with learnable scalars.

    Options: ``schema`` ("tree": free trees; "unary_unary": u(u(x)); "binary_unary": b(u(x), u(x));
    "core_unit": Swish core units b(u1(x), u2(x)), ``units`` 1 or 2, where unit 2 is b(u(unit1), u(x))),
    ``max_depth`` (operator nesting, x alone is 0), ``max_nodes`` (leaves included), ``max_params`` (learnable
    scalars), ``unary_ops``/``binary_ops`` (None: all), ``param_probability`` (chance a sampled slot gets a
    learnable scalar), ``const_probability`` (chance a tree leaf is a constant) and ``constants`` (their values).
    """

    kind = "activation"
    version = 1
    display_name = "Activation"
    class_prefix = "Activation"

    def __init__(
        self,
        *,
        schema: str = "tree",
        units: int | None = None,
        max_depth: int | None = None,
        max_nodes: int | None = None,
        max_params: int = 4,
        unary_ops: list[str] | None = None,
        binary_ops: list[str] | None = None,
        param_probability: float = 0.2,
        const_probability: float = 0.1,
        constants: list[float] | tuple[float, ...] = (-1.0, 0.5, 1.0, 2.0),
    ):
        if schema not in SCHEMAS:
            raise SpaceConfigError(f"unknown schema {schema!r}; valid schemas: {', '.join(SCHEMAS)}")
        if units is not None and schema != "core_unit":
            raise SpaceConfigError(f"units applies to schema 'core_unit' only, not {schema!r}")
        self.schema = schema
        self.units = 1 if units is None and schema == "core_unit" else units
        if schema == "core_unit" and self.units not in (1, 2):
            raise SpaceConfigError(f"units must be 1 or 2, got {units!r}")
        self.template = TEMPLATES.get((schema, self.units))
        self.unary_ops = _resolve_ops("unary", unary_ops, UNARY_OPS)
        self.binary_ops = _resolve_ops("binary", binary_ops, BINARY_OPS)
        needed_depth, needed_nodes, _ = (1, 2, 0) if self.template is None else template_size(self.template)
        default_depth, default_nodes = (4, 12) if self.template is None else (needed_depth, needed_nodes)
        self.max_depth = _check_count("max_depth", default_depth if max_depth is None else max_depth, 1, MAX_DEPTH)
        self.max_nodes = _check_count("max_nodes", default_nodes if max_nodes is None else max_nodes, 2)
        if self.max_depth < needed_depth or self.max_nodes < needed_nodes:
            raise SpaceConfigError(
                f"schema {self._schema_name()} needs max_depth >= {needed_depth} and max_nodes >= {needed_nodes}, "
                f"got {self.max_depth} and {self.max_nodes}"
            )
        self.max_params = _check_count("max_params", max_params, 0)
        self.param_probability = _check_probability("param_probability", param_probability)
        self.const_probability = _check_probability("const_probability", const_probability)
        if not all(_is_finite_number(value) for value in constants):
            raise SpaceConfigError(f"constants must be finite numbers, got {reprlib.repr(constants)}")
        if self.const_probability > 0 and not constants:
            raise SpaceConfigError("const_probability > 0 needs at least one value in constants")
        self.constants = [float(value) for value in constants]
        self._check_ops_suffice()
        # Operators that can never apply under these limits are not offered (nor drawn and redrawn).
        self.operators = [
            op
            for op in MUTATIONS
            if (self.template is None or op not in SHAPE_MUTATIONS) and (self.max_params or op not in PARAM_MUTATIONS)
        ]

    def _schema_name(self) -> str:
        return f"core_unit(units={self.units})" if self.schema == "core_unit" else self.schema

    def _check_ops_suffice(self) -> None:
        if self.template is None:
            if not self.unary_ops and not self.binary_ops:
                raise SpaceConfigError("schema 'tree' needs at least one unary or binary op")
            binary_slots = (self.max_nodes - 1) // 2
        else:
            binary_slots = template_size(self.template)[2]
            if not self.unary_ops or (binary_slots and not self.binary_ops):
                raise SpaceConfigError(f"schema {self._schema_name()} needs unary ops and, for b(...), binary ops")
        plain_binary = [op for op in self.binary_ops if not BINARY_OPS[op].parametric]
        if self.binary_ops and not plain_binary and binary_slots > self.max_params:
            raise SpaceConfigError(
                f"binary ops {self.binary_ops} each carry a learnable beta, and up to {binary_slots} of them "
                f"must fit max_params={self.max_params}; raise max_params or add a plain binary op such as add"
            )

    # -- genome plumbing --------------------------------------------------------------------------------------

    def _genome(self, expr: Node) -> Genome:
        return {"space": self.kind, "v": self.version, "expr": expr}

    def validate(self, genome: Genome) -> None:
        self._check_header(genome)
        extra = sorted(set(genome) - {"space", "v", "expr"})
        if extra:
            raise GenomeError(f"unexpected top-level key(s) {extra}; an activation genome has keys space, v, expr")
        if "expr" not in genome:
            raise GenomeError(
                'genome has no "expr"; give the expression tree, e.g. {"op": "relu", "args": [{"op": "x"}]}'
            )
        expr = genome["expr"]
        self._check_node(expr, "expr", 0)
        nodes, params = size(expr), len(param_slots(expr))
        if nodes > self.max_nodes:
            raise GenomeError(f"expression has {nodes} nodes, over max_nodes={self.max_nodes}; remove nodes")
        if params > self.max_params:
            raise GenomeError(
                f"expression has {params} learnable scalars, over max_params={self.max_params}; drop alpha/beta keys"
            )
        if self.template is not None and not matches(expr, self.template):
            raise GenomeError(
                f"expression does not have the {self._schema_name()} shape {template_text(self.template)}, "
                f"depth {depth(expr)}; rebuild it in that shape"
            )

    def _check_node(self, node: Any, path: str, depth: int) -> None:
        if not isinstance(node, dict):
            raise GenomeError(f"{path} must be a JSON object like {{'op': 'x'}}, got {type(node).__name__}")
        op = node.get("op")
        if not isinstance(op, str):
            raise GenomeError(f'{path} has no "op" string; every node names its op, e.g. {{"op": "x"}}')
        if op not in OPS and op not in LEAVES:
            raise GenomeError(f"unknown op {op!r} at {path}; {known_ops_text()}")
        spec = OPS.get(op)
        allowed = {"op"} | ({"value"} if op == "const" else set())
        if spec is not None:
            allowed |= {"args", "alpha"} | ({"beta"} if spec.arity == 1 or spec.parametric else set())
        extra = sorted(set(node) - allowed)
        if extra:
            raise GenomeError(f"unexpected key(s) {extra} at {path}; a {op!r} node has keys {sorted(allowed)}")
        if op == "const":
            self._check_number(node, "value", path, required=True)
            return
        if spec is None:
            return
        enabled = self.unary_ops if spec.arity == 1 else self.binary_ops
        if op not in enabled:
            kind = "unary" if spec.arity == 1 else "binary"
            raise GenomeError(
                f"op {op!r} at {path} is not enabled in this space; enabled {kind} ops: {', '.join(enabled)}"
            )
        args = node.get("args")
        if not isinstance(args, list) or len(args) != spec.arity:
            got = f"{len(args)}" if isinstance(args, list) else "no list"
            raise GenomeError(
                f"op {op!r} at {path} takes {spec.arity} argument(s) in 'args', got {got}; "
                f"give 'args' as a list of {spec.arity} node(s)"
            )
        self._check_number(node, "alpha", path, required=False)
        self._check_number(node, "beta", path, required=spec.parametric)
        if depth + 1 > self.max_depth:
            raise GenomeError(f"expression is deeper than max_depth={self.max_depth} at {path}; nest fewer ops")
        for index, arg in enumerate(args):
            self._check_node(arg, f"{path}.args[{index}]", depth + 1)

    @staticmethod
    def _check_number(node: Node, key: str, path: str, required: bool) -> None:
        if key not in node:
            if required:
                raise GenomeError(f"{path} ({node['op']!r}) needs a number {key!r}")
            return
        value = node[key]
        if not _is_finite_number(value):
            raise GenomeError(f"{path}.{key} must be a finite number, got {reprlib.repr(value)}")

    def canonical(self, genome: Genome) -> str:
        self.validate(genome)
        return canonical_json(self._genome(normalize(genome["expr"])))

    def structure(self, genome: Genome) -> str:
        self.validate(genome)
        return canonical_json(self._genome(normalize(without_initial_values(genome["expr"]))))

    # -- variation: TreeVariation varies the trees ------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Genome:
        return self._genome(self.sample_expr(rng))

    def mutate(self, genome: Genome, rng: np.random.Generator) -> tuple[Genome, str]:
        """Apply one randomly drawn operator that changes the genome; raises if this space offers none."""
        self.validate(genome)
        mutated = self.mutate_expr(genome["expr"], rng)
        if mutated is None:
            raise GenomeError(
                f"no mutation of {self.describe(genome)} stays inside this space; widen the op sets or limits"
            )
        return self._genome(mutated[0]), mutated[1]

    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> Genome | None:
        """Copy ``a`` with one subtree replaced by a subtree of ``b``; None if no swap fits and differs from both."""
        self.validate(a)
        self.validate(b)
        child = self.crossover_expr(a["expr"], b["expr"], rng)
        return None if child is None else self._genome(child)

    def enumerate(self) -> list[Genome]:
        """Every genome of a fixed schema with no learnable scalars (``max_params: 0``), in op-table order."""
        if self.template is None or self.max_params:
            raise SpaceConfigError(
                f"only a fixed schema (unary_unary, binary_unary, core_unit) with max_params: 0 lists its genomes; "
                f"this space is {self._schema_name()} with max_params={self.max_params}"
            )
        plain = [op for op in self.binary_ops if not BINARY_OPS[op].parametric]
        return [self._genome(expr) for expr in expand(self.template, self.unary_ops, plain)]

    def suggest(self, trial: Any) -> Genome:
        """A genome drawn through an Optuna trial: one categorical op per slot of a fixed schema, a bounded
        define-by-run grammar for free trees, learnable scalars where ``max_params`` allows (``activation.suggest``)."""
        genome = self._genome(self.suggest_expr(trial))
        self.validate(genome)
        return genome

    # -- text, torch, export ----------------------------------------------------------------------------------

    def parse(self, text: str) -> Genome:
        """Genome from the text form (see ``spaces.activation.text``); no eval, a whitelist parser.

        A well-known seed's name (``swish``) gives that seed as this space writes it, or says in one line why this
        configuration cannot express it.
        """
        if not isinstance(text, str):
            raise GenomeError(f"text form must be a string, got {type(text).__name__}")
        if text in SEED_TEXTS:
            return self._seed(text)
        genome = self._genome(parse_formula(text))
        self.validate(genome)
        return genome

    def describe(self, genome: Genome, fmt: str = "text") -> str:
        """``fmt`` "text": the text form, which ``parse`` reads back to this genome; "display": the simplified
        text for reading (``+ zero(x)`` padding, identity and unit constants gone; ``simplify``); "latex": LaTeX of
        the simplified tree. Learnable scalars stay in all three: ``{0.92}`` is one, initialised at 0.92."""
        self.validate(genome)
        if fmt == "text":
            return formula(genome["expr"])
        if fmt == "display":
            return display_formula(genome["expr"])
        if fmt == "latex":
            return latex(genome["expr"])
        raise ValueError(f"unknown describe format {fmt!r}; use 'text', 'display' or 'latex'")

    def build(self, genome: Genome, **shape: Any) -> nn.Module:
        """The activation as a module (``shape`` is ignored: the function is elementwise), lowered to fused ops."""
        self.validate(genome)
        return EvolvedActivation(lower(genome["expr"]), self.describe(genome, "display"))

    def features(self, genome: Genome, inputs: torch.Tensor) -> np.ndarray:
        """What ``build`` computes on ``inputs``, evaluated without building the module (same ops, same values)."""
        self.validate(genome)
        with torch.no_grad():
            return evaluate(lower(genome["expr"]), inputs).double().flatten().numpy()

    def to_source(self, genome: Genome, class_name: str) -> str:
        """A standalone module (imports only torch) whose forward matches ``build`` bit for bit on the same input."""
        self.validate(genome)
        return to_source(genome, class_name)

    def seeds(self) -> dict[str, Genome]:
        """Well-known activations that fit this space; fixed schemas get them padded with identity and + zero(x)."""
        found = {}
        for name in SEED_TEXTS:
            try:
                found[name] = self._seed(name)
            except GenomeError:
                continue
        return found

    def _seed(self, name: str) -> Genome:
        """The named seed in this space's shape; GenomeError saying why if this configuration cannot express it."""
        expr = parse_formula(SEED_TEXTS[name])
        shaped = expr if self.template is None else embed(expr, self.template)
        limits = f"schema {self._schema_name()}, max_params={self.max_params}"
        prefix = f"seed {name!r} = {SEED_TEXTS[name]} cannot be expressed in this space ({limits})"
        if shaped is None:
            raise GenomeError(f"{prefix}: it has no form {template_text(self.template)}")
        genome = self._genome(shaped)
        try:
            self.validate(genome)
        except GenomeError as exc:
            raise GenomeError(f"{prefix}: {exc}") from None
        return genome

    def parts(self, genome: Genome) -> set[tuple[str, str]]:
        """Every op of the tree, and every subtree of up to ``PART_NODES`` nodes in text form with its learnable
        scalars written ``{·}`` (their values are initial values, not structure): ("subtree", "x*sigmoid({·}*x)")."""
        self.validate(genome)
        found: set[tuple[str, str]] = set()
        for _, node in walk(genome["expr"]):
            if "args" in node:
                found.add(("op", node["op"]))
                if size(node) <= PART_NODES:
                    found.add(("subtree", LEARNABLE_TEXT.sub("{·}", formula(normalize(node)))))
        return found

    def present(self, genome: Genome) -> Curve:
        """f and f' of the built activation on the plotting grid."""
        return elementwise_curve(self.build(genome))

    def reference(self) -> tuple[str, Curve]:
        """ReLU, the baseline every activation is compared with."""
        return "ReLU", elementwise_curve(nn.ReLU())

    def static_problems(self, genome: Genome) -> list[str]:
        try:
            self.validate(genome)
        except GenomeError as exc:
            return [str(exc)]
        if not depends_on_x(genome["expr"]):
            return ["output does not depend on x: the function is constant, so a layer using it passes no signal"]
        return []
