"""Expression-tree helpers. Nodes are plain dicts; every edit returns a new tree and shares untouched subtrees.

A path lists the argument indices from the root to a node.
"""

from __future__ import annotations

from typing import Any

from spaces.activation.ops import LEAVES, OPS
from spaces.base import canonical_json

Node = dict[str, Any]
Path = tuple[int, ...]

# The deepest tree a space's max_depth may allow: every walk here recurses once or twice per level, and the
# parser a few frames per level of text, so this keeps them all far from Python's recursion limit.
MAX_DEPTH = 32


def walk(node: Node, path: Path = ()) -> list[tuple[Path, Node]]:
    """All (path, node) pairs in preorder."""
    found = [(path, node)]
    for index, arg in enumerate(node.get("args", ())):
        found.extend(walk(arg, (*path, index)))
    return found


def get(node: Node, path: Path) -> Node:
    for index in path:
        node = node["args"][index]
    return node


def replace(node: Node, path: Path, new: Node) -> Node:
    if not path:
        return new
    args = list(node["args"])
    args[path[0]] = replace(args[path[0]], path[1:], new)
    return {**node, "args": args}


def depth(node: Node) -> int:
    """Operator nesting: 0 for a leaf, 1 for f(x), 2 for g(f(x), x)."""
    return 1 + max(depth(arg) for arg in node["args"]) if "args" in node else 0


def size(node: Node) -> int:
    return 1 + sum(size(arg) for arg in node.get("args", ()))


def param_slots(node: Node) -> list[tuple[Path, str]]:
    """Learnable scalars in export order: preorder, alpha before beta."""
    return [(path, key) for path, sub in walk(node) for key in ("alpha", "beta") if key in sub]


def without_initial_values(node: Node) -> Node:
    """The tree with every learnable scalar at 1: where the tree learns, not what it starts from."""
    out: Node = {**node, **{key: 1.0 for key in ("alpha", "beta") if key in node}}
    if "args" in node:
        out["args"] = [without_initial_values(arg) for arg in node["args"]]
    return out


def round_sig(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}") + 0.0  # + 0.0 turns -0.0 into 0.0


def normalize(node: Node, digits: int = 6) -> Node:
    """Canonical form of a node: commutative arguments sorted, numbers rounded to ``digits`` significant digits."""
    out: Node = {"op": node["op"]}
    for key in ("value", "alpha", "beta"):
        if key in node:
            out[key] = round_sig(float(node[key]), digits)
    if "args" in node:
        args = [normalize(arg, digits) for arg in node["args"]]
        if OPS[node["op"]].commutative:
            args.sort(key=canonical_json)
        out["args"] = args
    return out


def depends_on_x(node: Node) -> bool:
    """Structural dependence on the input; x - x, gauss_diff(a, a) and zero/one count as constant."""
    op = node["op"]
    if op in LEAVES:
        return op == "x"
    if op in ("zero", "one"):
        return False
    args = node["args"]
    if op in ("sub", "gauss_diff", "laplace_diff") and normalize(args[0]) == normalize(args[1]):
        return False
    return any(depends_on_x(arg) for arg in args)
