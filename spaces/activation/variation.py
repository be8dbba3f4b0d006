"""Sampling, mutation and crossover of expression trees, within a space's ops, schema shape and size limits.

``TreeVariation`` works on trees, not genomes; ``ActivationSpace`` mixes it in, sets the options it reads and
wraps its trees into genomes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spaces.activation.ops import BINARY_OPS, LEAVES, OPS
from spaces.activation.schema import template_at
from spaces.activation.tree import Node, Path, get, normalize, param_slots, replace, round_sig, size, walk
from spaces.activation.tree import depth as tree_depth  # _random_subtree has an argument named depth

MUTATIONS = (
    "change_op",
    "insert_node",
    "remove_node",
    "regenerate_subtree",
    "add_param",
    "remove_param",
    "perturb_param",
)
SHAPE_MUTATIONS = ("insert_node", "remove_node")  # a fixed schema has no room for them
PARAM_MUTATIONS = ("add_param", "remove_param", "perturb_param")  # max_params: 0 has no room for them
MUTATE_ATTEMPTS = 64  # mutate_expr() draws this many operators at most before giving up


class TreeVariation:
    """Random trees and their variations; every method returns a new tree and leaves its arguments as they are."""

    unary_ops: list[str]
    binary_ops: list[str]
    template: Any  # the fixed schema shape, None for free trees
    max_depth: int
    max_nodes: int
    max_params: int
    param_probability: float
    const_probability: float
    constants: list[float]
    operators: list[str]  # the mutation operators this space draws from

    def fits(self, expr: Node) -> bool:
        return (
            tree_depth(expr) <= self.max_depth
            and size(expr) <= self.max_nodes
            and len(param_slots(expr)) <= self.max_params
        )

    # -- sampling ---------------------------------------------------------------------------------------------

    def sample_expr(self, rng: np.random.Generator) -> Node:
        expr = self._random_subtree(rng, (), self.max_depth, self.max_nodes, root=True)
        expr = self._fit_param_count(expr, rng)
        return self._sprinkle_params(expr, rng)

    def _random_subtree(self, rng: np.random.Generator, path: Path, depth: int, nodes: int, root: bool = False) -> Node:
        """A random subtree for position ``path`` within ``depth`` levels and ``nodes`` nodes, params not counted."""
        if self.template is not None:
            return self._from_template(rng, template_at(self.template, path))
        arities = [
            arity for arity, ops, cost in ((1, self.unary_ops, 2), (2, self.binary_ops, 3)) if ops and nodes >= cost
        ]
        if depth == 0 or not arities or (not root and rng.random() < 0.3):
            return self._random_leaf(rng)
        arity = arities[rng.integers(len(arities))]
        if arity == 1:
            return self._new_op(rng, 1, [self._random_subtree(rng, (), depth - 1, nodes - 1)])
        left = self._random_subtree(rng, (), depth - 1, int(rng.integers(1, nodes - 1)))
        right = self._random_subtree(rng, (), depth - 1, nodes - 1 - size(left))
        return self._new_op(rng, 2, [left, right])

    def _from_template(self, rng: np.random.Generator, template: Any) -> Node:
        if template == "x":
            return {"op": "x"}
        args = [self._from_template(rng, child) for child in template[1:]]
        return self._new_op(rng, len(args), args)

    def _random_leaf(self, rng: np.random.Generator) -> Node:
        if self.constants and rng.random() < self.const_probability:
            return {"op": "const", "value": self.constants[rng.integers(len(self.constants))]}
        return {"op": "x"}

    def _new_op(self, rng: np.random.Generator, arity: int, args: list[Node]) -> Node:
        op = self._pick(self.unary_ops if arity == 1 else self.binary_ops, rng)
        node: Node = {"op": op, "args": args}
        if OPS[op].parametric:
            node["beta"] = OPS[op].beta_init
        return node

    def _fit_param_count(self, expr: Node, rng: np.random.Generator, under: Path = ()) -> Node:
        """Swap parametric binary ops below ``under`` for plain ones until the scalars fit ``max_params``."""
        plain = [op for op in self.binary_ops if not BINARY_OPS[op].parametric]
        while len(param_slots(expr)) > self.max_params:
            below = walk(get(expr, under), under)
            paths = [path for path, node in below if node["op"] in OPS and OPS[node["op"]].parametric]
            if not paths or not plain:
                return expr
            path = self._pick(paths, rng)
            expr = replace(expr, path, {"op": self._pick(plain, rng), "args": get(expr, path)["args"]})
        return expr

    def _sprinkle_params(self, expr: Node, rng: np.random.Generator, under: Path = ()) -> Node:
        """Give each free alpha/beta slot below ``under`` a learnable scalar (init 1) with ``param_probability``."""
        for path, key in self._free_slots(get(expr, under), under):
            if len(param_slots(expr)) >= self.max_params:
                break
            if rng.random() < self.param_probability:
                expr = replace(expr, path, {**get(expr, path), key: 1.0})
        return expr

    @staticmethod
    def _free_slots(expr: Node, under: Path = ()) -> list[tuple[Path, str]]:
        slots = []
        for path, node in walk(expr, under):
            if node["op"] in OPS:
                slots += [(path, "alpha")] if "alpha" not in node else []
                slots += [(path, "beta")] if OPS[node["op"]].arity == 1 and "beta" not in node else []
        return slots

    # -- variation --------------------------------------------------------------------------------------------

    def mutate_expr(self, expr: Node, rng: np.random.Generator) -> tuple[Node, str] | None:
        """A changed tree inside the limits and the name of the operator that made it; None if none was found.

        Only operators that can change this tree are drawn (no parameter mutation of a tree without scalars),
        so every operator the space offers keeps its share of the draws.
        """
        applicable = self._applicable(expr)
        if not applicable:
            return None
        before = normalize(expr)
        operators = {
            "change_op": self._change_op,
            "insert_node": self._insert_node,
            "remove_node": self._remove_node,
            "regenerate_subtree": self._regenerate_subtree,
            "add_param": self._add_param,
            "remove_param": self._remove_param,
            "perturb_param": self._perturb_param,
        }
        for _ in range(MUTATE_ATTEMPTS):
            name = self._pick(applicable, rng)
            child = operators[name](expr, rng)
            if child is not None and self.fits(child) and normalize(child) != before:
                return child, name
        return None

    def _applicable(self, expr: Node) -> list[str]:
        """The space's operators that have something to work on in ``expr``."""
        ops = [node for _, node in walk(expr) if node["op"] in OPS]
        params = param_slots(expr)
        alternatives = {1: len(self.unary_ops) > 1, 2: len(self.binary_ops) > 1}
        possible = {
            "change_op": any(alternatives[OPS[node["op"]].arity] for node in ops),
            "insert_node": size(expr) < self.max_nodes,
            "remove_node": bool(ops),
            "regenerate_subtree": True,
            "add_param": len(params) < self.max_params and bool(self._free_slots(expr)),
            "remove_param": any(key == "alpha" or not OPS[get(expr, path)["op"]].parametric for path, key in params),
            "perturb_param": bool(params),
        }
        return [name for name in self.operators if possible[name]]

    @staticmethod
    def _pick(items: list[Any], rng: np.random.Generator) -> Any:
        return items[rng.integers(len(items))] if items else None

    def _op_paths(self, expr: Node) -> list[Path]:
        return [path for path, node in walk(expr) if node["op"] in OPS]

    def _change_op(self, expr: Node, rng: np.random.Generator) -> Node | None:
        path = self._pick(self._op_paths(expr), rng)
        if path is None:
            return None
        node = get(expr, path)
        spec = OPS[node["op"]]
        choices = [op for op in (self.unary_ops if spec.arity == 1 else self.binary_ops) if op != node["op"]]
        op = self._pick(choices, rng)
        if op is None:
            return None
        new: Node = {"op": op, "args": node["args"]}
        if "alpha" in node:
            new["alpha"] = node["alpha"]
        if spec.arity == 1 and "beta" in node:
            new["beta"] = node["beta"]
        elif OPS[op].parametric:
            new["beta"] = node["beta"] if spec.parametric else OPS[op].beta_init
        return replace(expr, path, new)

    def _insert_node(self, expr: Node, rng: np.random.Generator) -> Node | None:
        path, node = self._pick(walk(expr), rng)
        arity = self._pick([arity for arity, ops in ((1, self.unary_ops), (2, self.binary_ops)) if ops], rng)
        args = [node]
        if arity == 2:
            args.insert(int(rng.integers(2)), self._random_leaf(rng))
        return replace(expr, path, self._new_op(rng, arity, args))

    def _remove_node(self, expr: Node, rng: np.random.Generator) -> Node | None:
        path = self._pick(self._op_paths(expr), rng)
        if path is None:
            return None
        node = get(expr, path)
        kept = node["args"][rng.integers(len(node["args"]))]
        return None if not path and kept["op"] in LEAVES else replace(expr, path, kept)

    def _regenerate_subtree(self, expr: Node, rng: np.random.Generator) -> Node | None:
        """A new random subtree below the root (regenerating the root would be a random restart, not a step);
        in a fixed schema only operator slots are redrawn, since a leaf slot can only hold x."""
        below = [(path, node) for path, node in walk(expr) if path]
        if self.template is not None:
            below = [(path, node) for path, node in below if node["op"] in OPS]
        path, node = self._pick(below, rng) if below else ((), expr)
        nodes_left = self.max_nodes - size(expr) + size(node)
        new = self._random_subtree(rng, path, self.max_depth - len(path), nodes_left, root=not path)
        expr = self._fit_param_count(replace(expr, path, new), rng, path)
        return self._sprinkle_params(expr, rng, path)

    def _add_param(self, expr: Node, rng: np.random.Generator) -> Node | None:
        slot = self._pick(self._free_slots(expr), rng)
        if slot is None or len(param_slots(expr)) >= self.max_params:
            return None
        return replace(expr, slot[0], {**get(expr, slot[0]), slot[1]: 1.0})

    def _remove_param(self, expr: Node, rng: np.random.Generator) -> Node | None:
        optional = [
            (path, key)
            for path, key in param_slots(expr)
            if key == "alpha" or not OPS[get(expr, path)["op"]].parametric
        ]
        slot = self._pick(optional, rng)
        if slot is None:
            return None
        node = dict(get(expr, slot[0]))
        del node[slot[1]]
        return replace(expr, slot[0], node)

    def _perturb_param(self, expr: Node, rng: np.random.Generator) -> Node | None:
        slot = self._pick(param_slots(expr), rng)
        if slot is None:
            return None
        node = get(expr, slot[0])
        value = float(node[slot[1]])
        new_value = round_sig(value + rng.normal(0.0, 0.3 * max(1.0, abs(value))), 4)
        return replace(expr, slot[0], {**node, slot[1]: new_value})

    def crossover_expr(self, a: Node, b: Node, rng: np.random.Generator) -> Node | None:
        """Copy ``a`` with one subtree replaced by a subtree of ``b``; None if no swap fits and differs from both."""
        parents = (normalize(a), normalize(b))
        shape = self.template
        children = []
        for path_a, _ in walk(a):
            for path_b, donor in walk(b):
                if not path_a and (not path_b or donor["op"] in LEAVES):
                    continue
                if shape is not None and template_at(shape, path_a) != template_at(shape, path_b):
                    continue
                child = replace(a, path_a, donor)
                if self.fits(child) and normalize(child) not in parents:
                    children.append(child)
        return children[rng.integers(len(children))] if children else None
