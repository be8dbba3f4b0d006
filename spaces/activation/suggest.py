"""Optuna's define-by-run view of activation trees, so the TPE and NSGA-II samplers can drive the space.

Each tree position has a name: ``n`` for the root, ``n.0`` and ``n.1`` for its arguments, and so on. A position
draws, in order:

- in a fixed schema, its op: a categorical over the unary or the binary ops (``n:unary``, ``n:binary``; the
  template fixes the arity), so ``unary_unary`` is two categoricals and ``binary_unary`` three;
- in a free tree, its kind first ("x", "const", "unary" or "binary": only those that still fit the depth and
  node limits, listed in the parameter's name because Optuna needs one fixed choice list per name), then its
  op, or a constant's value from ``constants``;
- after the whole shape, while ``max_params`` has room: whether each op's alpha (and a unary op's beta) is a
  learnable scalar, and its initial value on a log scale in [0.1, 10].

Parametric binary ops (blend, gauss_diff, laplace_diff) start at their default beta; once the scalar budget is
spent, a binary position draws from the plain binary ops under another name (``n:binary_plain``). So the encoding
covers every tree within ``max_depth`` and ``max_nodes`` over the enabled ops, x and the configured constants,
with up to ``max_params`` scalars whose initial values are positive; negative initial values come only from
mutation.
"""

from __future__ import annotations

from typing import Any

from spaces.activation.ops import OPS
from spaces.activation.tree import Node, Path, get, replace, round_sig, size, walk

PARAM_INIT_RANGE = (0.1, 10.0)


def position_name(path: Path) -> str:
    return "n" + "".join(f".{index}" for index in path)


class TreeSuggestion:
    """Trees drawn through an Optuna trial; ``ActivationSpace`` mixes it in and sets the options it reads."""

    unary_ops: list[str]
    binary_ops: list[str]
    template: Any
    max_depth: int
    max_nodes: int
    max_params: int
    const_probability: float
    constants: list[float]

    def suggest_expr(self, trial: Any) -> Node:
        budget = [self.max_params]  # learnable scalars left, spent first by parametric binary ops
        expr = self._suggest_node(trial, (), self.template, self.max_depth, self.max_nodes, budget)
        return self._suggest_params(trial, expr, budget[0])

    def _suggest_node(
        self, trial: Any, path: Path, template: Any, depth: int, nodes: int, budget: list[int]
    ) -> Node:
        if template is None:
            kind = self._suggest_kind(trial, path, depth, nodes)
            children: tuple[Any, ...] = (None,) * {"unary": 1, "binary": 2}.get(kind, 0)
        else:
            kind, children = ("x", ()) if template == "x" else (template[0], tuple(template[1:]))
        if kind == "x":
            return {"op": "x"}
        if kind == "const":
            value = trial.suggest_categorical(f"{position_name(path)}:const", self.constants)
            return {"op": "const", "value": float(value)}
        op = self._suggest_op(trial, path, len(children), budget)
        args: list[Node] = []
        for index, child in enumerate(children):
            left = nodes - 1 - sum(size(arg) for arg in args) - (len(children) - 1 - index)
            args.append(self._suggest_node(trial, (*path, index), child, depth - 1, left, budget))
        node: Node = {"op": op, "args": args}
        if OPS[op].parametric:
            node["beta"] = OPS[op].beta_init
        return node

    def _suggest_kind(self, trial: Any, path: Path, depth: int, nodes: int) -> str:
        kinds = [] if not path else ["x"] + (["const"] if self.const_probability > 0 and self.constants else [])
        if depth >= 1 and nodes >= 2 and self.unary_ops:
            kinds.append("unary")
        if depth >= 1 and nodes >= 3 and self.binary_ops:
            kinds.append("binary")
        if len(kinds) <= 1:
            return kinds[0] if kinds else "x"
        return trial.suggest_categorical(f"{position_name(path)}:kind[{'/'.join(kinds)}]", kinds)

    def _suggest_op(self, trial: Any, path: Path, arity: int, budget: list[int]) -> str:
        name = position_name(path)
        if arity == 1:
            return trial.suggest_categorical(f"{name}:unary", self.unary_ops)
        plain = [op for op in self.binary_ops if not OPS[op].parametric]
        if budget[0] < 1 and plain:
            return trial.suggest_categorical(f"{name}:binary_plain", plain)
        op = trial.suggest_categorical(f"{name}:binary", self.binary_ops)
        budget[0] -= int(OPS[op].parametric)
        return op

    def _suggest_params(self, trial: Any, expr: Node, left: int) -> Node:
        slots = [
            (path, key)
            for path, node in walk(expr)
            if node["op"] in OPS
            for key in ("alpha", "beta")
            if key not in node and (key == "alpha" or OPS[node["op"]].arity == 1)
        ]
        for path, key in slots:
            if left <= 0:
                break
            name = f"{position_name(path)}:{key}"
            if trial.suggest_categorical(name, [False, True]):
                value = round_sig(trial.suggest_float(f"{name}_init", *PARAM_INIT_RANGE, log=True), 4)
                expr = replace(expr, path, {**get(expr, path), key: value})
                left -= 1
        return expr
