"""Simplify an expression tree for reading (text, LaTeX, docstrings, summaries); never for computing.

The genome, its canonical key, its fingerprint and what ``build`` and ``to_source`` compute all stay those of the
real tree: this is only what a person is shown. Only what is fixed folds: identity(e) -> e, 1*e -> e, 0 + e -> e,
e - 0 -> e, zero(...) -> 0, one(...) -> 1, -(-e) -> e, e*e -> square(e), e*square(e) -> cube(e), e + e -> 2*e,
e - e -> 0, max(e, e) -> e, and a subtree of constants becomes the one number it computes. A learnable scalar is a
parameter whatever its initial value ({1.0} trains away from 1), so a node holding one keeps it, a subtree holding
one never folds to a number, and two copies of such a subtree never merge (their scalars train apart).

Each learnable scalar keeps its export index under the node's ``"slots"`` key (``{"beta": 0}``), so a formula drawn
from the simplified tree names it as the exported module does (``beta_0``) even where a rule dropped another.
"""

from __future__ import annotations

import math

import torch

from spaces.activation.ops import LEAVES, OPS
from spaces.activation.tree import Node, get, normalize, param_slots, replace
from spaces.base import canonical_json

_MAX_PASSES = 64  # a guard: every rule shrinks the tree or moves a number to its side, so a fixpoint comes fast
_SCALARS = ("alpha", "beta")


def simplify(expr: Node) -> Node:
    """The simplified tree of ``expr``, each learnable scalar tagged with its export index; idempotent."""
    tree = _with_slots(expr)
    for _ in range(_MAX_PASSES):
        simpler = _pass(tree)
        if simpler == tree:
            return tree
        tree = simpler
    return tree


def _with_slots(expr: Node) -> Node:
    """Each learnable scalar tagged with its index in ``expr``; a tag already there (a simplified tree) stays."""
    tree = expr
    for index, (path, key) in enumerate(param_slots(expr)):
        node = get(tree, path)
        tree = replace(tree, path, {**node, "slots": {key: index, **node.get("slots", {})}})
    return tree


def _pass(node: Node) -> Node:
    """One bottom-up pass: children first, then the rules at this node until none applies."""
    if node["op"] in LEAVES:
        return node
    node = {**node, "args": [_pass(arg) for arg in node["args"]]}
    for _ in range(_MAX_PASSES):
        rewritten = None if node["op"] in LEAVES else _rewrite(node)
        if rewritten is None:
            return node
        node = rewritten
    return node


def _const(value: float) -> Node:
    return {"op": "const", "value": value + 0.0}  # + 0.0 turns -0.0 into 0.0


def _is_const(node: Node, value: float | None = None) -> bool:
    return node["op"] == "const" and (value is None or node["value"] == value)


def _plain(node: Node) -> bool:
    """No learnable scalar on this node itself."""
    return not any(key in node for key in _SCALARS)


def _fixed(node: Node) -> bool:
    """No learnable scalar anywhere in the subtree: two equal fixed subtrees compute the same values for ever."""
    return not param_slots(node)


def _same(a: Node, b: Node) -> bool:
    """Equal fixed subtrees (commutative arguments in any order, numbers exactly)."""
    if not (_fixed(a) and _fixed(b)):
        return False
    return canonical_json(normalize(a, digits=17)) == canonical_json(normalize(b, digits=17))


def _rewrite(node: Node) -> Node | None:
    """The node after one rule, or None where none applies."""
    op, args = node["op"], node["args"]
    if op == "zero":
        return _const(0.0)  # alpha * zeros is 0: no scalar in or on it reaches the output
    if op == "one":
        return _one(node)
    if not _plain(node):
        return None
    if op == "identity":
        return args[0]
    if all(_is_const(arg) for arg in args):
        return _folded(node)
    if op == "neg":
        inner = args[0]
        return inner["args"][0] if inner["op"] == "neg" and _plain(inner) else None
    rule = _BINARY_RULES.get(op)
    return None if rule is None else rule(*args)


def _one(node: Node) -> Node | None:
    """one(...) is 1; ``{a}*one(...)`` is the learnable constant a, drawn on x (its argument does not matter)."""
    if "alpha" not in node:
        return _const(1.0)
    bare = {"op": "one", "args": [{"op": "x"}], "alpha": node["alpha"], "slots": {"alpha": node["slots"]["alpha"]}}
    return None if node == bare else bare


def _folded(node: Node) -> Node | None:
    """A constant node computed the way the built module computes it (in float64); None if it is not finite."""
    values = [torch.tensor(arg["value"], dtype=torch.float64) for arg in node["args"]]
    value = float(OPS[node["op"]].fn(*values))
    return _const(value) if math.isfinite(value) else None


def _mul(a: Node, b: Node) -> Node | None:
    if _is_const(b) and not _is_const(a):
        return {"op": "mul", "args": [b, a]}  # the number first: 2.0*x
    if _is_const(a, 1.0):
        return b
    if _is_const(a, -1.0):
        return {"op": "neg", "args": [b]}
    if _is_const(a) and b["op"] == "mul" and _plain(b) and _is_const(b["args"][0]):
        return {"op": "mul", "args": [_const(a["value"] * b["args"][0]["value"]), b["args"][1]]}
    if _same(a, b):
        return {"op": "square", "args": [a]}
    for base, power in ((a, b), (b, a)):
        if power["op"] == "square" and _plain(power) and _same(base, power["args"][0]):
            return {"op": "cube", "args": [base]}
    return None


def _add(a: Node, b: Node) -> Node | None:
    if _is_const(a, 0.0):
        return b
    if _is_const(b, 0.0):
        return a
    if _is_const(a):
        return {"op": "add", "args": [b, a]}  # the number last: x + 1.0
    if b["op"] == "neg" and _plain(b):
        return {"op": "sub", "args": [a, b["args"][0]]}
    if a["op"] == "neg" and _plain(a):
        return {"op": "sub", "args": [b, a["args"][0]]}
    if _negative(b):
        return {"op": "sub", "args": [a, _negated(b)]}
    if _same(a, b):
        return {"op": "mul", "args": [_const(2.0), a]}
    return None


def _sub(a: Node, b: Node) -> Node | None:
    if _is_const(b, 0.0):
        return a
    if _is_const(a, 0.0):
        return {"op": "neg", "args": [b]}
    if b["op"] == "neg" and _plain(b):
        return {"op": "add", "args": [a, b["args"][0]]}
    if _negative(b):
        return {"op": "add", "args": [a, _negated(b)]}
    if _same(a, b):
        return _const(0.0)
    return None


def _negative(node: Node) -> bool:
    """A negative number, or a fixed negative number times something: written with its minus sign in front."""
    if node["op"] == "mul" and _plain(node):
        node = node["args"][0]
    return _is_const(node) and node["value"] < 0


def _negated(node: Node) -> Node:
    if node["op"] == "const":
        return _const(-node["value"])
    return {"op": "mul", "args": [_const(-node["args"][0]["value"]), node["args"][1]]}


def _same_arguments(a: Node, b: Node) -> Node | None:
    """max(e, e) and min(e, e) are e."""
    return a if _same(a, b) else None


_BINARY_RULES = {"mul": _mul, "add": _add, "sub": _sub, "max": _same_arguments, "min": _same_arguments}
