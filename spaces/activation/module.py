"""The built activation: one small submodule per tree node, learnable scalars as ``nn.Parameter``.

TorchScript has no function values, so every op gets a node class of its own that holds the op's callable as the
static method ``fn``; TorchScript compiles ``self.fn(...)`` like any call, and eager mode calls it directly.
"""

from __future__ import annotations

import torch
from torch import nn

from spaces.activation.ops import OPS, OpSpec
from spaces.activation.tree import Node


def _scalar(value: float | None) -> nn.Parameter | None:
    return None if value is None else nn.Parameter(torch.tensor(float(value)))


def _scaled(y: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    return y if alpha is None else alpha * y


class _Input(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Constant(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.value)


class _UnaryNode(nn.Module):
    """alpha * fn(beta * arg); an absent alpha or beta is a fixed 1."""

    def __init__(self, op: str, arg: nn.Module, alpha: float | None, beta: float | None):
        super().__init__()
        self.op = op
        self.arg = arg
        self.alpha = _scalar(alpha)
        self.beta = _scalar(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.arg(x)
        beta = self.beta
        if beta is not None:
            a = beta * a
        return _scaled(self.fn(a), self.alpha)


class _BinaryNode(nn.Module):
    """alpha * fn(left, right), or alpha * fn(left, right, beta) for a parametric op (beta is its own scalar)."""

    def __init__(self, op: str, left: nn.Module, right: nn.Module, alpha: float | None, beta: float | None):
        super().__init__()
        self.op = op
        self.left = left
        self.right = right
        self.alpha = _scalar(alpha)
        self.beta = _scalar(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = self.left(x), self.right(x)
        beta = self.beta  # TorchScript compiles only the branch that the type of beta (None or a tensor) can take
        y = self.fn(left, right) if beta is None else self.fn(left, right, beta)
        return _scaled(y, self.alpha)


def _node_class(spec: OpSpec) -> type[nn.Module]:
    """The node class of one op. It prints as its base; its qualified name is unique, for TorchScript and pickle."""
    base = _UnaryNode if spec.arity == 1 else _BinaryNode
    namespace = {"fn": staticmethod(spec.fn), "__module__": __name__, "__qualname__": f"{base.__name__}_{spec.name}"}
    return type(base.__name__, (base,), namespace)


_NODE_CLASSES = {name: _node_class(spec) for name, spec in OPS.items()}
# Module attributes under their qualified names, so pickle and torch.save find the classes.
globals().update({cls.__qualname__: cls for cls in _NODE_CLASSES.values()})


class EvolvedActivation(nn.Module):
    """An activation genome as a module: one small submodule per tree node, learnable scalars as parameters."""

    def __init__(self, expr: Node, formula: str):
        super().__init__()
        self.formula = formula
        self.expr = _module_tree(expr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expr(x)

    def extra_repr(self) -> str:
        return f"f(x) = {self.formula}"


def _module_tree(node: Node) -> nn.Module:
    op = node["op"]
    if op == "x":
        return _Input()
    if op == "const":
        return _Constant(node["value"])
    children = [_module_tree(arg) for arg in node["args"]]
    return _NODE_CLASSES[op](op, *children, node.get("alpha"), node.get("beta"))


def evaluate(node: Node, x: torch.Tensor) -> torch.Tensor:
    """What ``EvolvedActivation(node, ...)`` computes on ``x``, op for op, without building it: describing thousands
    of candidates a second (a surrogate's pool) costs their arithmetic, not their modules."""
    op = node["op"]
    if op == "x":
        return x
    if op == "const":
        return torch.full_like(x, float(node["value"]))
    beta = None if "beta" not in node else torch.tensor(float(node["beta"]))
    fn = OPS[op].fn
    if OPS[op].arity == 1:
        a = evaluate(node["args"][0], x)
        y = fn(a if beta is None else beta * a)
    else:
        left, right = evaluate(node["args"][0], x), evaluate(node["args"][1], x)
        y = fn(left, right) if beta is None else fn(left, right, beta)
    return _scaled(y, None if "alpha" not in node else torch.tensor(float(node["alpha"])))
