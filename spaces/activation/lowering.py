"""Lowering: a compile step that ``build`` and ``to_source`` share (the genome, its text and canonical form stay as
they are).

A subtree computing silu, gelu, gelu_tanh or mish of one subtree s becomes that fused op: one kernel forward and
one backward instead of a chain of elementwise kernels with their intermediates. Products and sums are read as
linear forms (coefficient per atom), so any arrangement of factors and terms matches, and constants match to a
relative tolerance. A learnable scalar inside a pattern blocks it: s occurs several times, each copy with
parameters of its own, and a learnable scale such as Swish's beta has no fused op that stays safe at 0. Only the
pattern root's alpha is kept, on the fused op, so parameters keep their preorder, names and module paths.
"""

from __future__ import annotations

import math

from spaces.activation.ops import EPS, LEAVES
from spaces.activation.tree import Node, normalize, param_slots, size, walk
from spaces.base import canonical_json

_TOL = 1e-6
_ONE = "1"  # key of the constant term of a linear form
_GELU_SCALE = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715
Terms = dict[str, tuple[float, Node | None]]  # atom key -> (coefficient, the atom if it is a single node)


def lower(expr: Node) -> Node:
    """``expr`` with recognised subtrees replaced by torch's fused ops, outermost match first."""
    if expr["op"] in LEAVES:
        return expr
    match = _fused_op({key: value for key, value in expr.items() if key != "alpha"})
    if match is None:
        return {**expr, "args": [lower(arg) for arg in expr["args"]]}
    op, arg = match
    fused: Node = {"op": op, "args": [lower(arg)]}
    return {**fused, "alpha": expr["alpha"]} if "alpha" in expr else fused


def _fused_op(node: Node) -> tuple[str, Node] | None:
    """(fused op, its argument) when the product ``node`` is a gate times the rest and that is a fused op's formula.

    The argument is a param-free subtree of ``node`` with the linear form the formula asks for.
    """
    coef, factors = _factors(node)
    if len(factors) < 2:
        return None
    for index, gate in enumerate(factors):
        match = _gated(gate, _product(coef, factors[:index] + factors[index + 1 :]))
        if match is None:
            continue
        op, terms = match
        found = [sub for _, sub in walk(node) if not param_slots(sub) and _close(_terms(sub), terms)]
        if found:
            return op, min(found, key=size)
    return None


def _gated(gate: Node, rest: Terms) -> tuple[str, Terms] | None:
    """(fused op f, linear form of its argument s) when rest * gate = f(s)."""
    if _plain(gate, "sigmoid") and _close(_terms(gate["args"][0]), rest):
        return "silu", rest
    softplus = gate["args"][0] if _plain(gate, "tanh") else None
    if softplus is not None and _plain(softplus, "softplus") and _close(_terms(softplus["args"][0]), rest):
        return "mish", rest
    # The gelus: gate = level * (1 + erf(s / sqrt(2))) or level * (1 + tanh(k * (s + c * cube(s)))), s = 2*level*rest.
    terms = _terms(gate)
    level = terms.get(_ONE, (0.0, None))[0]
    atoms = [atom for key, (value, atom) in terms.items() if key != _ONE and math.isclose(value, level, rel_tol=_TOL)]
    if len(terms) != 2 or len(atoms) != 1 or level == 0.0 or atoms[0] is None:
        return None
    atom, s = atoms[0], _scale(rest, 2.0 * level)
    if _plain(atom, "erf") and _close(_terms(atom["args"][0]), _scale(s, math.sqrt(0.5))):
        return "gelu", s
    if _plain(atom, "tanh") and _is_gelu_cubic(_terms(atom["args"][0]), s):
        return "gelu_tanh", s
    return None


def _is_gelu_cubic(inner: Terms, s: Terms) -> bool:
    """True when inner = k * s + k * c * cube(s), the tanh argument of the tanh-form gelu."""
    cubes = [
        key
        for key, (value, atom) in inner.items()
        if math.isclose(value, _GELU_SCALE * _GELU_CUBIC, rel_tol=_TOL)
        and atom is not None
        and _plain(atom, "cube")
        and _close(_terms(atom["args"][0]), s)
    ]
    linear = {key: term for key, term in inner.items() if key not in cubes}
    return len(cubes) == 1 and _close(linear, _scale(s, _GELU_SCALE))


def _plain(node: Node, op: str) -> bool:
    return node["op"] == op and "alpha" not in node and "beta" not in node


def _key(node: Node) -> str:
    """Exact structural identity: commutative arguments sorted, numbers unrounded."""
    return canonical_json(normalize(node, digits=17))


def _factors(node: Node) -> tuple[float, list[Node]]:
    """``node`` as coef * product(factors): plain mul, neg, identity and sigmoid_gate flatten, constants fold in."""
    if node["op"] == "const":
        return float(node["value"]), []
    if _plain(node, "sigmoid_gate"):
        coef, factors = _factors(node["args"][1])
        return coef, [{"op": "sigmoid", "args": [node["args"][0]]}, *factors]
    if not any(_plain(node, op) for op in ("mul", "neg", "identity")):
        return 1.0, [node]
    coef, factors = (-1.0 if node["op"] == "neg" else 1.0), []
    for arg in node["args"]:
        arg_coef, arg_factors = _factors(arg)
        coef *= arg_coef
        factors += arg_factors
    return coef, factors


def _product(coef: float, factors: list[Node]) -> Terms:
    """Linear form of coef * product(factors); several factors make one atom, keyed by the sorted factors."""
    if not factors:
        return {_ONE: (coef, None)}
    if len(factors) == 1:
        return _scale(_terms(factors[0]), coef)
    return {"*".join(sorted(_key(factor) for factor in factors)): (coef, None)}


def _terms(node: Node) -> Terms:
    """``node`` as a sum of coef * atom through plain add, sub, products and division by a constant."""
    if _plain(node, "add") or _plain(node, "sub"):
        left, right = (_terms(arg) for arg in node["args"])
        return _sum(left, _scale(right, -1.0 if node["op"] == "sub" else 1.0))
    if _plain(node, "div") and node["args"][1]["op"] == "const":
        divisor = float(node["args"][1]["value"])
        return _scale(_terms(node["args"][0]), divisor / (divisor * divisor + EPS))  # what the safe div computes
    coef, factors = _factors(node)
    if len(factors) == 1 and factors[0] is node:
        return {_key(node): (1.0, node)}
    return _product(coef, factors)


def _scale(terms: Terms, factor: float) -> Terms:
    return {key: (value * factor, atom) for key, (value, atom) in terms.items()}


def _sum(left: Terms, right: Terms) -> Terms:
    total = dict(left)
    for key, (value, atom) in right.items():
        total[key] = (total.get(key, (0.0, atom))[0] + value, atom)
    return total


def _close(left: Terms, right: Terms) -> bool:
    return left.keys() == right.keys() and all(
        math.isclose(value, right[key][0], rel_tol=_TOL) for key, (value, _) in left.items()
    )

