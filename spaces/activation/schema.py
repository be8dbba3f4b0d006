"""The fixed schemas: tree shapes a space may require, and well-known functions padded into them.

A shape is "x", ("unary", child) or ("binary", left, right). Every binary slot's right operand is a unary
slot, so ``embed`` can pad it with zero(...).
"""

from __future__ import annotations

from itertools import product
from typing import Any

from spaces.activation.ops import OPS
from spaces.activation.tree import Node, Path

_UNARY_X = ("unary", "x")
_CORE_UNIT = ("binary", _UNARY_X, _UNARY_X)
TEMPLATES: dict[tuple[str, int | None], Any] = {
    ("unary_unary", None): ("unary", _UNARY_X),
    ("binary_unary", None): _CORE_UNIT,
    ("core_unit", 1): _CORE_UNIT,
    ("core_unit", 2): ("binary", ("unary", _CORE_UNIT), _UNARY_X),
}
SCHEMAS = ("tree", "unary_unary", "binary_unary", "core_unit")


def matches(node: Node, template: Any) -> bool:
    if template == "x":
        return node["op"] == "x"
    kind, *children = template
    arity = 1 if kind == "unary" else 2
    if node["op"] not in OPS or OPS[node["op"]].arity != arity:
        return False
    return all(matches(arg, child) for arg, child in zip(node["args"], children, strict=True))


def template_at(template: Any, path: Path) -> Any:
    for index in path:
        template = template[1 + index]
    return template


def template_text(template: Any) -> str:
    if template == "x":
        return "x"
    return f"{template[0]}({', '.join(template_text(child) for child in template[1:])})"


def template_size(template: Any) -> tuple[int, int, int]:
    """(depth, nodes, binary nodes) of a schema shape."""
    if template == "x":
        return 0, 1, 0
    sizes = [template_size(child) for child in template[1:]]
    binary = 1 if template[0] == "binary" else 0
    return 1 + max(s[0] for s in sizes), 1 + sum(s[1] for s in sizes), binary + sum(s[2] for s in sizes)


def embed(node: Node, template: Any) -> Node | None:
    """The same function in the shape ``template``, padding with identity and ``+ zero(x)``; None if impossible."""
    if template == "x":
        return node if node["op"] == "x" else None
    kind = template[0]
    if node["op"] in OPS and OPS[node["op"]].arity == (1 if kind == "unary" else 2):
        args = [embed(arg, child) for arg, child in zip(node["args"], template[1:], strict=True)]
        if all(arg is not None for arg in args):
            return {**node, "args": args}
    if kind == "unary":
        inner = embed(node, template[1])
        return None if inner is None else {"op": "identity", "args": [inner]}
    left = embed(node, template[1])
    zero = {"op": "zero", "args": [_fill(template[2][1])]}
    return None if left is None else {"op": "add", "args": [left, zero]}


def _fill(template: Any) -> Node:
    """Any node of shape ``template`` (its value is discarded by zero)."""
    if template == "x":
        return {"op": "x"}
    if template[0] == "unary":
        return {"op": "identity", "args": [_fill(template[1])]}
    return {"op": "add", "args": [_fill(template[1]), _fill(template[2])]}


def expand(template: Any, unary_ops: list[str], binary_ops: list[str]) -> list[Node]:
    """Every tree of shape ``template`` over the given ops, no learnable scalars, in op-table order."""
    if template == "x":
        return [{"op": "x"}]
    ops = unary_ops if template[0] == "unary" else binary_ops
    children = [expand(child, unary_ops, binary_ops) for child in template[1:]]
    return [{"op": op, "args": list(args)} for op in ops for args in product(*children)]
