"""Elementwise activation functions as expression trees (Swish search, PANGAEA, AQuaSurF).

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
``x + {b}*one(x)``.

Text form (``parse`` and ``describe(genome, "text")``)::

    max(relu(x), x*sigmoid(1.0*x))   every op as a call; infix + - * / and ^ (or **) for pow; unary minus;
                                     numbers (1, 0.5, 1e-3; a minus sign right before a number makes it negative)
    {1.5}*tanh({0.5}*x)              learnable scalars are numbers in braces: ``{a}*`` before an operation is its
                                     alpha, ``{b}*`` at the start of a unary call's argument is that call's beta
    sin(({0.5}*cos(x)))              parentheses give the alpha to the inner call instead of a beta to the outer
    blend(x, tanh(x), {0.5})         a parametric op takes its beta as a last argument

A learnable scale starts a product (``x*({a}*sin(x))``, not ``x*{a}*sin(x)``) and needs an operation to attach to
(``{a}*identity(x)``, not ``{a}*x``).

Numerical safety, EPS = 1e-6: log(x) = log(|x| + EPS); sqrt(x) = sqrt(max(x, 0) + EPS);
reciprocal(x) = x / (x^2 + EPS) and div(a, b) = a*b / (b^2 + EPS) (sign-preserving, no pole);
pow(a, b) = max(|a|, EPS)^b (no NaN for negative bases). sinc(x) = sin(x)/x.

``build`` and ``to_source`` compile the tree through ``lower`` first: a subtree that computes Swish (x*sigmoid(x)),
GELU (erf or tanh form) or Mish of one subtree becomes torch's fused op, so the module and the export run the same
fused kernels; the genome, its text and its canonical form are unchanged.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spaces.base import Genome, GenomeError, Space, SpaceConfigError, canonical_json
from spaces.registry import register_space

EPS = 1e-6
Node = dict[str, Any]


@dataclass(frozen=True)
class OpSpec:
    """One whitelisted operation: arity, the torch expression it exports to, and its LaTeX form.

    ``source`` uses ``{0}``/``{1}`` for the arguments, ``{beta}`` for the op's own parameter and ``{eps}``/``{pi}``.
    ``latex`` uses ``#0``/``#1``/``#b``; ``latex_wrap`` parenthesizes compound arguments, ``latex_atomic`` says
    the result needs no parentheses as an operand. ``beta_init`` marks a parametric op (its own learnable beta).
    """

    name: str
    arity: int
    source: str
    latex: str
    infix: str | None = None
    beta_init: float | None = None
    commutative: bool = False
    latex_wrap: bool = False
    latex_atomic: bool = True

    @property
    def parametric(self) -> bool:
        return self.beta_init is not None


def _call(name: str, torch_fn: str, latex_name: str | None = None) -> OpSpec:
    latex_name = latex_name or rf"\operatorname{{{name}}}"
    return OpSpec(name, 1, f"{torch_fn}({{0}})", rf"{latex_name}\left(#0\right)")


_UNARY_LIST = [
    OpSpec("identity", 1, "{0}", "#0", latex_atomic=False),
    OpSpec("neg", 1, "-{0}", "-#0", latex_wrap=True, latex_atomic=False),
    OpSpec("abs", 1, "torch.abs({0})", r"\left|#0\right|"),
    OpSpec("square", 1, "torch.square({0})", "#0^{2}", latex_wrap=True),
    OpSpec("cube", 1, "torch.pow({0}, 3)", "#0^{3}", latex_wrap=True),
    OpSpec("sqrt", 1, "torch.sqrt(torch.relu({0}) + {eps})", r"\sqrt{#0}"),
    OpSpec("log", 1, "torch.log(torch.abs({0}) + {eps})", r"\log\left(\left|#0\right| + \epsilon\right)"),
    OpSpec("exp", 1, "torch.exp({0})", "e^{#0}"),
    _call("sin", "torch.sin", r"\sin"),
    _call("cos", "torch.cos", r"\cos"),
    _call("sinh", "torch.sinh", r"\sinh"),
    _call("cosh", "torch.cosh", r"\cosh"),
    _call("tanh", "torch.tanh", r"\tanh"),
    _call("asinh", "torch.asinh"),
    _call("atan", "torch.atan", r"\arctan"),
    OpSpec("sinc", 1, "torch.sinc({0} / {pi})", r"\frac{\sin\left(#0\right)}{#0}"),
    OpSpec("relu", 1, "torch.relu({0})", r"\max\left(#0, 0\right)"),
    OpSpec("min0", 1, "torch.clamp_max({0}, 0.0)", r"\min\left(#0, 0\right)"),
    _call("sigmoid", "torch.sigmoid", r"\sigma"),
    _call("softplus", "torch.nn.functional.softplus"),
    OpSpec("gaussian", 1, "torch.exp(-torch.square({0}))", r"e^{-\left(#0\right)^{2}}"),
    _call("erf", "torch.erf"),
    _call("erfc", "torch.erfc"),
    OpSpec("expm1", 1, "torch.expm1({0})", r"\left(e^{#0} - 1\right)"),
    OpSpec("reciprocal", 1, "{0} / ({0} * {0} + {eps})", r"\frac{1}{#0}"),
    _call("log_sigmoid", "torch.nn.functional.logsigmoid", r"\log\sigma"),
    _call("bessel_i0e", "torch.special.i0e", r"\operatorname{I_0e}"),
    _call("bessel_i1e", "torch.special.i1e", r"\operatorname{I_1e}"),
    _call("elu", "torch.nn.functional.elu"),
    _call("selu", "torch.selu"),
    _call("silu", "torch.nn.functional.silu"),
    _call("softsign", "torch.nn.functional.softsign"),
    _call("hard_sigmoid", "torch.nn.functional.hardsigmoid"),
    OpSpec("leaky_relu", 1, "torch.nn.functional.leaky_relu({0}, 0.01)", r"\operatorname{leaky\_relu}\left(#0\right)"),
    _call("mish", "torch.nn.functional.mish"),
    _call("gelu", "torch.nn.functional.gelu"),
    OpSpec(
        "gelu_tanh",
        1,
        'torch.nn.functional.gelu({0}, approximate="tanh")',
        r"\operatorname{gelu_{tanh}}\left(#0\right)",
    ),
    OpSpec(
        "elish",
        1,
        "torch.where({0} >= 0.0, {0}, torch.expm1({0})) * torch.sigmoid({0})",
        r"\operatorname{elish}\left(#0\right)",
    ),
    OpSpec("zero", 1, "torch.zeros_like({0})", "0"),
    OpSpec("one", 1, "torch.ones_like({0})", "1"),
]
_BINARY_LIST = [
    OpSpec("add", 2, "{0} + {1}", "#0 + #1", infix="+", commutative=True, latex_atomic=False),
    OpSpec("sub", 2, "{0} - {1}", "#0 - #1", infix="-", latex_atomic=False),
    OpSpec("mul", 2, "{0} * {1}", r"#0 \cdot #1", infix="*", commutative=True, latex_wrap=True, latex_atomic=False),
    OpSpec("div", 2, "{0} * {1} / ({1} * {1} + {eps})", r"\frac{#0}{#1}", infix="/"),
    OpSpec("pow", 2, "torch.pow(torch.clamp_min(torch.abs({0}), {eps}), {1})", "#0^{#1}", infix="^", latex_wrap=True),
    OpSpec("max", 2, "torch.maximum({0}, {1})", r"\max\left(#0, #1\right)", commutative=True),
    OpSpec("min", 2, "torch.minimum({0}, {1})", r"\min\left(#0, #1\right)", commutative=True),
    OpSpec(
        "sigmoid_gate",
        2,
        "torch.sigmoid({0}) * {1}",
        r"\sigma\left(#0\right) \cdot #1",
        latex_wrap=True,
        latex_atomic=False,
    ),
    OpSpec(
        "gauss_diff",
        2,
        "torch.exp(-{beta} * torch.square({0} - {1}))",
        r"e^{-#b\left(#0 - #1\right)^{2}}",
        beta_init=1.0,
        commutative=True,
    ),
    OpSpec(
        "laplace_diff",
        2,
        "torch.exp(-{beta} * torch.abs({0} - {1}))",
        r"e^{-#b\left|#0 - #1\right|}",
        beta_init=1.0,
        commutative=True,
    ),
    OpSpec(
        "blend",
        2,
        "{beta} * {0} + (1.0 - {beta}) * {1}",
        r"#b #0 + \left(1 - #b\right) #1",
        beta_init=0.5,
        latex_wrap=True,
        latex_atomic=False,
    ),
]
UNARY_OPS: dict[str, OpSpec] = {op.name: op for op in _UNARY_LIST}
BINARY_OPS: dict[str, OpSpec] = {op.name: op for op in _BINARY_LIST}
OPS: dict[str, OpSpec] = {**UNARY_OPS, **BINARY_OPS}
# Other names the literature uses; accepted in options and text, stored under the name on the right.
ALIASES = {"swish": "silu", "arcsinh": "asinh", "arctan": "atan", "negative": "neg", "max0": "relu"}
LEAVES = ("x", "const")

# Shapes of the fixed schemas: "x", ("unary", child) or ("binary", left, right).
_UNARY_X = ("unary", "x")
_CORE_UNIT = ("binary", _UNARY_X, _UNARY_X)
# Every binary slot's right operand is a unary slot (``_embed`` pads it with zero(...)).
_TEMPLATES: dict[tuple[str, int | None], Any] = {
    ("unary_unary", None): ("unary", _UNARY_X),
    ("binary_unary", None): _CORE_UNIT,
    ("core_unit", 1): _CORE_UNIT,
    ("core_unit", 2): ("binary", ("unary", _CORE_UNIT), _UNARY_X),
}
SCHEMAS = ("tree", "unary_unary", "binary_unary", "core_unit")
MUTATIONS = (
    "change_op",
    "insert_node",
    "remove_node",
    "regenerate_subtree",
    "add_param",
    "remove_param",
    "perturb_param",
)
_SHAPE_MUTATIONS = ("insert_node", "remove_node")


# ----------------------------------------------------------------------------------------------------------------
# torch semantics: one scriptable interpreter; the exported source uses the same calls in the same order.


def unary_forward(op: str, a: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Apply unary op ``op``; mirrors ``OpSpec.source`` call for call so build and export agree bit for bit.

    ``eps`` is an argument because TorchScript does not read module globals.
    """
    if op == "identity":
        return a
    if op == "neg":
        return -a
    if op == "abs":
        return torch.abs(a)
    if op == "square":
        return torch.square(a)
    if op == "cube":
        return torch.pow(a, 3)
    if op == "sqrt":
        return torch.sqrt(torch.relu(a) + eps)
    if op == "log":
        return torch.log(torch.abs(a) + eps)
    if op == "exp":
        return torch.exp(a)
    if op == "sin":
        return torch.sin(a)
    if op == "cos":
        return torch.cos(a)
    if op == "sinh":
        return torch.sinh(a)
    if op == "cosh":
        return torch.cosh(a)
    if op == "tanh":
        return torch.tanh(a)
    if op == "asinh":
        return torch.asinh(a)
    if op == "atan":
        return torch.atan(a)
    if op == "sinc":
        return torch.sinc(a / math.pi)
    if op == "relu":
        return torch.relu(a)
    if op == "min0":
        return torch.clamp_max(a, 0.0)
    if op == "sigmoid":
        return torch.sigmoid(a)
    if op == "softplus":
        return F.softplus(a)
    if op == "gaussian":
        return torch.exp(-torch.square(a))
    if op == "erf":
        return torch.erf(a)
    if op == "erfc":
        return torch.erfc(a)
    if op == "expm1":
        return torch.expm1(a)
    if op == "reciprocal":
        return a / (a * a + eps)
    if op == "log_sigmoid":
        return F.logsigmoid(a)
    if op == "bessel_i0e":
        return torch.special.i0e(a)
    if op == "bessel_i1e":
        return torch.special.i1e(a)
    if op == "elu":
        return F.elu(a)
    if op == "selu":
        return torch.selu(a)
    if op == "silu":
        return F.silu(a)
    if op == "softsign":
        return F.softsign(a)
    if op == "hard_sigmoid":
        return F.hardsigmoid(a)
    if op == "leaky_relu":
        return F.leaky_relu(a, 0.01)
    if op == "mish":
        return F.mish(a)
    if op == "gelu":
        return F.gelu(a)
    if op == "gelu_tanh":
        return F.gelu(a, approximate="tanh")
    if op == "elish":
        return torch.where(a >= 0.0, a, torch.expm1(a)) * torch.sigmoid(a)
    if op == "zero":
        return torch.zeros_like(a)
    if op == "one":
        return torch.ones_like(a)
    raise ValueError("unknown unary op " + op)


def binary_forward(
    op: str, a: torch.Tensor, b: torch.Tensor, beta: torch.Tensor | None, eps: float = EPS
) -> torch.Tensor:
    """Apply binary op ``op``; ``beta`` is the learnable parameter of the parametric ops."""
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "div":
        return a * b / (b * b + eps)
    if op == "pow":
        return torch.pow(torch.clamp_min(torch.abs(a), eps), b)
    if op == "max":
        return torch.maximum(a, b)
    if op == "min":
        return torch.minimum(a, b)
    if op == "sigmoid_gate":
        return torch.sigmoid(a) * b
    assert beta is not None, "parametric op without beta"
    if op == "gauss_diff":
        return torch.exp(-beta * torch.square(a - b))
    if op == "laplace_diff":
        return torch.exp(-beta * torch.abs(a - b))
    if op == "blend":
        return beta * a + (1.0 - beta) * b
    raise ValueError("unknown binary op " + op)


def _scalar(value: float | None) -> nn.Parameter | None:
    return None if value is None else nn.Parameter(torch.tensor(float(value)))


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
        y = unary_forward(self.op, a)
        alpha = self.alpha
        if alpha is not None:
            y = alpha * y
        return y


class _BinaryNode(nn.Module):
    def __init__(self, op: str, left: nn.Module, right: nn.Module, alpha: float | None, beta: float | None):
        super().__init__()
        self.op = op
        self.left = left
        self.right = right
        self.alpha = _scalar(alpha)
        self.beta = _scalar(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = binary_forward(self.op, self.left(x), self.right(x), self.beta)
        alpha = self.alpha
        if alpha is not None:
            y = alpha * y
        return y


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
    if op in UNARY_OPS:
        return _UnaryNode(op, children[0], node.get("alpha"), node.get("beta"))
    return _BinaryNode(op, children[0], children[1], node.get("alpha"), node.get("beta"))


# ----------------------------------------------------------------------------------------------------------------
# Tree helpers. Nodes are plain dicts; every edit returns a new tree and shares untouched subtrees.

Path = tuple[int, ...]


def _walk(node: Node, path: Path = ()) -> list[tuple[Path, Node]]:
    """All (path, node) pairs in preorder; a path lists the argument indices from the root."""
    found = [(path, node)]
    for index, arg in enumerate(node.get("args", ())):
        found.extend(_walk(arg, (*path, index)))
    return found


def _get(node: Node, path: Path) -> Node:
    for index in path:
        node = node["args"][index]
    return node


def _replace(node: Node, path: Path, new: Node) -> Node:
    if not path:
        return new
    args = list(node["args"])
    args[path[0]] = _replace(args[path[0]], path[1:], new)
    return {**node, "args": args}


def _depth(node: Node) -> int:
    """Operator nesting: 0 for a leaf, 1 for f(x), 2 for g(f(x), x)."""
    return 1 + max(_depth(arg) for arg in node["args"]) if "args" in node else 0


def _size(node: Node) -> int:
    return 1 + sum(_size(arg) for arg in node.get("args", ()))


def _param_slots(node: Node) -> list[tuple[Path, str]]:
    """Learnable scalars in export order: preorder, alpha before beta."""
    return [(path, key) for path, sub in _walk(node) for key in ("alpha", "beta") if key in sub]


def _round_sig(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}") + 0.0  # + 0.0 turns -0.0 into 0.0


def _normalize(node: Node, digits: int = 6) -> Node:
    """Canonical form of a node: commutative arguments sorted, numbers rounded to ``digits`` significant digits."""
    out: Node = {"op": node["op"]}
    for key in ("value", "alpha", "beta"):
        if key in node:
            out[key] = _round_sig(float(node[key]), digits)
    if "args" in node:
        args = [_normalize(arg, digits) for arg in node["args"]]
        if OPS[node["op"]].commutative:
            args.sort(key=canonical_json)
        out["args"] = args
    return out


def _matches(node: Node, template: Any) -> bool:
    if template == "x":
        return node["op"] == "x"
    kind, *children = template
    arity = 1 if kind == "unary" else 2
    if node["op"] not in OPS or OPS[node["op"]].arity != arity:
        return False
    return all(_matches(arg, child) for arg, child in zip(node["args"], children, strict=True))


def _template_at(template: Any, path: Path) -> Any:
    for index in path:
        template = template[1 + index]
    return template


def _template_text(template: Any) -> str:
    if template == "x":
        return "x"
    return f"{template[0]}({', '.join(_template_text(child) for child in template[1:])})"


def _template_size(template: Any) -> tuple[int, int, int]:
    """(depth, nodes, binary nodes) of a schema shape."""
    if template == "x":
        return 0, 1, 0
    sizes = [_template_size(child) for child in template[1:]]
    binary = 1 if template[0] == "binary" else 0
    return 1 + max(s[0] for s in sizes), 1 + sum(s[1] for s in sizes), binary + sum(s[2] for s in sizes)


def _depends_on_x(node: Node) -> bool:
    """Structural dependence on the input; x - x, gauss_diff(a, a) and zero/one count as constant."""
    op = node["op"]
    if op in LEAVES:
        return op == "x"
    if op in ("zero", "one"):
        return False
    args = node["args"]
    if op in ("sub", "gauss_diff", "laplace_diff") and _normalize(args[0]) == _normalize(args[1]):
        return False
    return any(_depends_on_x(arg) for arg in args)


# ----------------------------------------------------------------------------------------------------------------
# Text form: rendering and a recursive-descent parser. Precedences decide where parentheses go.

_PREC_ADD, _PREC_MUL, _PREC_UNARY, _PREC_POW, _PREC_ATOM = 1, 2, 3, 4, 5
_INFIX_PREC = {"+": _PREC_ADD, "-": _PREC_ADD, "*": _PREC_MUL, "/": _PREC_MUL, "^": _PREC_POW}


def _num(value: float) -> str:
    return repr(float(value))


def _wrap(text: str, prec: int, needed: int) -> str:
    return f"({text})" if prec < needed else text


def _text(node: Node) -> tuple[str, int]:
    """Text and precedence of a node; ``parse`` reads the text back to the same node."""
    op = node["op"]
    if op == "x":
        return "x", _PREC_ATOM
    if op == "const":
        text = _num(node["value"])
        return text, _PREC_UNARY if text.startswith("-") else _PREC_ATOM
    text, prec = _text_unscaled(node)
    if "alpha" in node:
        return f"{{{_num(node['alpha'])}}}*{_wrap(text, prec, _PREC_ATOM)}", _PREC_MUL
    return text, prec


def _text_unscaled(node: Node) -> tuple[str, int]:
    spec = OPS[node["op"]]
    args = node["args"]
    if spec.arity == 1:
        child, child_prec = _text(args[0])
        if spec.name == "neg" and "beta" not in node:
            needs_parens = child.startswith("-") or args[0]["op"] == "const" or child_prec < _PREC_UNARY
            return "-" + (f"({child})" if needs_parens else child), _PREC_UNARY
        if "beta" in node:
            needs_parens = child.startswith("-") or child_prec <= _PREC_MUL
            inner = f"{{{_num(node['beta'])}}}*" + (f"({child})" if needs_parens else child)
        else:
            inner = f"({child})" if child.startswith("{") else child  # else the parser reads a beta
        return f"{spec.name}({inner})", _PREC_ATOM
    (left, left_prec), (right, right_prec) = _text(args[0]), _text(args[1])
    if spec.infix:
        prec = _INFIX_PREC[spec.infix]
        left_needed, right_needed = (_PREC_ATOM, _PREC_POW) if spec.infix == "^" else (prec, prec + 1)
        left = _wrap(left, left_prec, left_needed)
        right = f"({right})" if right.startswith("-") else _wrap(right, right_prec, right_needed)
        joiner = f" {spec.infix} " if prec == _PREC_ADD else spec.infix
        return left + joiner + right, prec
    extra = f", {{{_num(node['beta'])}}}" if spec.parametric else ""
    return f"{spec.name}({left}, {right}{extra})", _PREC_ATOM


_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<param>\{\s*-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*\})"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<symbol>\*\*|[-+*/^(),]))"
)
_INFIX_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


def _known_ops_text() -> str:
    return (
        f"known unary ops: {', '.join(UNARY_OPS)}; known binary ops: {', '.join(BINARY_OPS)}; "
        f"leaves: {', '.join(LEAVES)}"
    )


class _Parser:
    """Recursive descent over the grammar::

    expr    = term (("+" | "-") term)*
    term    = scaled (("*" | "/") unary)*
    scaled  = PARAM "*" unary | unary                   PARAM: alpha of the operation that follows
    unary   = "-" NUMBER | "-" unary | power            "-" NUMBER is a negative constant unless "^" follows
    power   = primary (("^" | "**") unary)?
    primary = NUMBER | "x" | NAME "(" args ")" | "(" expr ")"
    """

    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                if not text[position:].strip():
                    break
                rest = text[position:]
                where = position + len(rest) - len(rest.lstrip())
                raise GenomeError(f"unexpected character {rest.lstrip()[:1]!r} at position {where} in {text!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind), match.start(kind)))
            position = match.end()
        self.index = 0

    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        index = self.index + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "", len(self.text))

    def next(self) -> tuple[str, str, int]:
        token = self.peek()
        self.index += 1
        return token

    def fail(self, message: str, position: int | None = None) -> GenomeError:
        position = self.peek()[2] if position is None else position
        return GenomeError(f"{message} at position {position} in {self.text!r}")

    def expect(self, symbol: str, hint: str = "") -> None:
        kind, value, position = self.next()
        if value != symbol or kind != "symbol":
            found = repr(value) if kind != "end" else "end of text"
            raise self.fail(f"expected {symbol!r}, found {found}{hint}", position)

    def is_symbol(self, *symbols: str, offset: int = 0) -> bool:
        kind, value, _ = self.peek(offset)
        return kind == "symbol" and value in symbols

    def number(self, text: str, position: int) -> float:
        value = float(text.strip("{} "))
        if not math.isfinite(value):
            raise self.fail(f"number {text!r} is not finite", position)
        return value

    def parse(self) -> Node:
        node = self.expr()
        kind, value, position = self.peek()
        if kind != "end":
            raise self.fail(f"unexpected {value!r}; expected an operator or the end", position)
        return node

    def expr(self) -> Node:
        node = self.term()
        while self.is_symbol("+", "-"):
            op = _INFIX_OPS[self.next()[1]]
            node = {"op": op, "args": [node, self.term()]}
        return node

    def term(self) -> Node:
        node = self.scaled()
        while self.is_symbol("*", "/"):
            op = _INFIX_OPS[self.next()[1]]
            node = {"op": op, "args": [node, self.unary()]}
        return node

    def scaled(self) -> Node:
        if self.peek()[0] != "param":
            return self.unary()
        _, text, position = self.next()
        self.expect("*", f": a learnable scalar {text} scales the operation after it, as in {text}*sin(x)")
        return self.attach("alpha", self.number(text, position), self.unary(), text, position)

    def attach(self, key: str, value: float, node: Node, text: str, position: int) -> Node:
        if node["op"] in LEAVES:
            raise self.fail(
                f"learnable scalar {text} needs an operation to scale, write {text}*identity(...)", position
            )
        if key in node:
            raise self.fail(f"the operation after {text} already has an {key}", position)
        return {**node, key: value}

    def unary(self) -> Node:
        if self.is_symbol("-"):
            self.next()
            kind, text, position = self.peek()
            if kind == "number" and not self.is_symbol("^", "**", offset=1):
                self.next()
                return {"op": "const", "value": -self.number(text, position)}
            return {"op": "neg", "args": [self.unary()]}
        if self.peek()[0] == "param":
            text = self.peek()[1]
            raise self.fail(f"a learnable scalar starts a product; put it in parentheses: ({text}*...)")
        return self.power()

    def power(self) -> Node:
        base = self.primary()
        if self.is_symbol("^", "**"):
            self.next()
            return {"op": "pow", "args": [base, self.unary()]}
        return base

    def primary(self) -> Node:
        kind, text, position = self.next()
        if kind == "number":
            return {"op": "const", "value": self.number(text, position)}
        if kind == "symbol" and text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if kind == "name":
            if not self.is_symbol("("):
                if text == "x":
                    return {"op": "x"}
                raise self.fail(f"unknown name {text!r}; the only variable is x", position)
            self.next()
            return self.call(text, position)
        found = repr(text) if kind != "end" else "end of text"
        raise self.fail(f"expected a number, x, a call or '(', found {found}", position)

    def call(self, name: str, position: int) -> Node:
        op = ALIASES.get(name, name)
        if op not in OPS:
            raise self.fail(f"unknown function {name!r}; {_known_ops_text()}", position)
        spec = OPS[op]
        if spec.arity == 1:
            node: Node = {"op": op}
            if self.peek()[0] == "param" and self.is_symbol("*", offset=1):
                _, text, param_position = self.next()
                self.next()
                node["beta"] = self.number(text, param_position)
                node["args"] = [self.unary()]
                self.expect(")", f"; {text}* scales one factor, parenthesize a longer argument: {name}({text}*(...))")
            else:
                node["args"] = [self.expr()]
                self.expect(")", f"; {name} takes one argument")
            return node
        args = [self.expr()]
        self.expect(",", f"; {name} takes two arguments")
        args.append(self.expr())
        node = {"op": op, "args": args}
        if spec.parametric:
            self.expect(",", f"; {name} takes a learnable scalar as third argument, as in {name}(x, y, {{1.0}})")
            kind, text, param_position = self.next()
            if kind != "param":
                raise self.fail(f"the third argument of {name} is a learnable scalar like {{1.0}}", param_position)
            node["beta"] = self.number(text, param_position)
        self.expect(")", f"; {name} takes {3 if spec.parametric else 2} arguments")
        return node


# ----------------------------------------------------------------------------------------------------------------
# LaTeX (for humans; not parsed back). Learnable scalars are numbered like the exported parameters.


class _LatexWriter:
    def __init__(self, expr: Node):
        self.names = {slot: f"\\{slot[1]}_{{{index}}}" for index, slot in enumerate(_param_slots(expr))}

    def render(self, node: Node, path: Path = ()) -> tuple[str, bool]:
        """LaTeX text and whether it is atomic (safe as an operand without parentheses)."""
        op = node["op"]
        if op == "x":
            return "x", True
        if op == "const":
            return f"{float(node['value']):g}", float(node["value"]) >= 0
        spec = OPS[op]
        args = [self.render(arg, (*path, index)) for index, arg in enumerate(node["args"])]
        if "beta" in node and not spec.parametric:
            text, atomic = args[0]
            args[0] = (f"{self.names[(path, 'beta')]} {self.paren(text, atomic)}", False)
        text = spec.latex
        for index, (arg_text, atomic) in enumerate(args):
            text = text.replace(f"#{index}", self.paren(arg_text, atomic) if spec.latex_wrap else arg_text)
        if spec.parametric:
            text = text.replace("#b", self.names[(path, "beta")])
        if "alpha" in node:
            return f"{self.names[(path, 'alpha')]} {self.paren(text, spec.latex_atomic)}", False
        return text, spec.latex_atomic

    @staticmethod
    def paren(text: str, atomic: bool) -> str:
        return text if atomic else rf"\left({text}\right)"


# ----------------------------------------------------------------------------------------------------------------
# Lowering: a compile step that ``build`` and ``to_source`` share (the genome, its text and canonical form stay as
# they are). A subtree computing silu, gelu, gelu_tanh or mish of one subtree s becomes that fused op: one kernel
# forward and one backward instead of a chain of elementwise kernels with their intermediates. Products and sums
# are read as linear forms (coefficient per atom), so any arrangement of factors and terms matches, and constants
# match to a relative tolerance. A learnable scalar inside a pattern blocks it: s occurs several times, each copy
# with parameters of its own, and a learnable scale such as Swish's beta has no fused op that stays safe at 0. Only
# the pattern root's alpha is kept, on the fused op, so parameters keep their preorder, names and module paths.

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
        found = [sub for _, sub in _walk(node) if not _param_slots(sub) and _close(_terms(sub), terms)]
        if found:
            return op, min(found, key=_size)
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
    return canonical_json(_normalize(node, digits=17))


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


# ----------------------------------------------------------------------------------------------------------------
# Export: one fused torch expression; an argument used several times by a template is bound to a local first.

_PLACEHOLDER = re.compile(r"\{(\d)\}")


def _bare_placeholders(template: str) -> bool:
    """True when every argument placeholder is a whole call argument (or the whole template): no parentheses."""
    for match in _PLACEHOLDER.finditer(template):
        before, after = template[: match.start()], template[match.end() :]
        if not (before == "" or before.endswith(("(", ", "))) or not (after == "" or after.startswith((")", ","))):
            return False
    return True


def _is_call(code: str) -> bool:
    """True for ``name(...)`` where the first parenthesis closes at the end."""
    match = re.match(r"[A-Za-z_][\w.]*\(", code)
    if match is None or not code.endswith(")"):
        return False
    depth = 0
    for position in range(match.end() - 1, len(code)):
        depth += {"(": 1, ")": -1}.get(code[position], 0)
        if depth == 0:
            return position == len(code) - 1
    return False


class _SourceWriter:
    def __init__(self, expr: Node):
        self.names = {slot: f"{slot[1]}_{index}" for index, slot in enumerate(_param_slots(expr))}
        self.lines: list[str] = []

    def bind(self, code: str) -> str:
        name = f"t{len(self.lines)}"
        self.lines.append(f"{name} = {code}")
        return name

    def render(self, node: Node, path: Path = ()) -> tuple[str, bool]:
        """Python code and whether it is atomic (a name, attribute or call)."""
        op = node["op"]
        if op == "x":
            return "x", True
        if op == "const":
            return f"torch.full_like(x, {_num(node['value'])})", True
        spec = OPS[op]
        args = [self.render(arg, (*path, index)) for index, arg in enumerate(node["args"])]
        if "beta" in node and not spec.parametric:
            args[0] = (f"self.{self.names[(path, 'beta')]} * {self.paren(*args[0])}", False)
        bare = _bare_placeholders(spec.source)
        codes = []
        for index, (code, atomic) in enumerate(args):
            if spec.source.count(f"{{{index}}}") > 1 and not re.fullmatch(r"[\w.]+", code):
                code, atomic = self.bind(code), True
            codes.append(code if bare else self.paren(code, atomic))
        beta = f"self.{self.names[(path, 'beta')]}" if spec.parametric else ""
        code = spec.source.format(*codes, beta=beta, eps=repr(EPS), pi=repr(math.pi))
        atomic = _is_call(code) or re.fullmatch(r"[\w.]+", code) is not None
        if "alpha" in node:
            return f"self.{self.names[(path, 'alpha')]} * {self.paren(code, atomic)}", False
        return code, atomic

    @staticmethod
    def paren(code: str, atomic: bool) -> str:
        return code if atomic else f"({code})"


# ----------------------------------------------------------------------------------------------------------------
# Seeds: well-known activations in text form, embedded into the fixed schemas with identity and "+ zero(x)".

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


def _embed(node: Node, template: Any) -> Node | None:
    """The same function in the shape ``template``, padding with identity and ``+ zero(x)``; None if impossible."""
    if template == "x":
        return node if node["op"] == "x" else None
    kind = template[0]
    if node["op"] in OPS and OPS[node["op"]].arity == (1 if kind == "unary" else 2):
        args = [_embed(arg, child) for arg, child in zip(node["args"], template[1:], strict=True)]
        if all(arg is not None for arg in args):
            return {**node, "args": args}
    if kind == "unary":
        inner = _embed(node, template[1])
        return None if inner is None else {"op": "identity", "args": [inner]}
    left = _embed(node, template[1])
    zero = {"op": "zero", "args": [_fill(template[2][1])]}
    return None if left is None else {"op": "add", "args": [left, zero]}


def _fill(template: Any) -> Node:
    """Any node of shape ``template`` (its value is discarded by zero)."""
    if template == "x":
        return {"op": "x"}
    if template[0] == "unary":
        return {"op": "identity", "args": [_fill(template[1])]}
    return {"op": "add", "args": [_fill(template[1]), _fill(template[2])]}


# ----------------------------------------------------------------------------------------------------------------


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


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpaceConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise SpaceConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@register_space
class ActivationSpace(Space):
    """Elementwise activation functions: expression trees over whitelisted ops with learnable scalars.

    Options: ``schema`` ("tree": free trees; "unary_unary": u(u(x)); "binary_unary": b(u(x), u(x));
    "core_unit": Swish core units b(u1(x), u2(x)), ``units`` 1 or 2, where unit 2 is b(u(unit1), u(x))),
    ``max_depth`` (operator nesting, x alone is 0), ``max_nodes`` (leaves included), ``max_params`` (learnable
    scalars), ``unary_ops``/``binary_ops`` (None: all), ``param_probability`` (chance a sampled slot gets a
    learnable scalar), ``const_probability`` (chance a tree leaf is a constant) and ``constants`` (their values).
    """

    kind = "activation"
    version = 1

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
        self.template = _TEMPLATES.get((schema, self.units))
        self.unary_ops = _resolve_ops("unary", unary_ops, UNARY_OPS)
        self.binary_ops = _resolve_ops("binary", binary_ops, BINARY_OPS)
        needed_depth, needed_nodes, _ = (1, 2, 0) if self.template is None else _template_size(self.template)
        default_depth, default_nodes = (4, 12) if self.template is None else (needed_depth, needed_nodes)
        self.max_depth = _check_count("max_depth", default_depth if max_depth is None else max_depth, 1)
        self.max_nodes = _check_count("max_nodes", default_nodes if max_nodes is None else max_nodes, 2)
        if self.max_depth < needed_depth or self.max_nodes < needed_nodes:
            raise SpaceConfigError(
                f"schema {self._schema_name()} needs max_depth >= {needed_depth} and max_nodes >= {needed_nodes}, "
                f"got {self.max_depth} and {self.max_nodes}"
            )
        self.max_params = _check_count("max_params", max_params, 0)
        self.param_probability = _check_probability("param_probability", param_probability)
        self.const_probability = _check_probability("const_probability", const_probability)
        if not all(_is_number(value) and math.isfinite(value) for value in constants):
            raise SpaceConfigError(f"constants must be finite numbers, got {constants!r}")
        if self.const_probability > 0 and not constants:
            raise SpaceConfigError("const_probability > 0 needs at least one value in constants")
        self.constants = [float(value) for value in constants]
        self._check_ops_suffice()
        self.operators = [op for op in MUTATIONS if self.template is None or op not in _SHAPE_MUTATIONS]

    def _schema_name(self) -> str:
        return f"core_unit(units={self.units})" if self.schema == "core_unit" else self.schema

    def _check_ops_suffice(self) -> None:
        if self.template is None:
            if not self.unary_ops and not self.binary_ops:
                raise SpaceConfigError("schema 'tree' needs at least one unary or binary op")
            binary_slots = (self.max_nodes - 1) // 2
        else:
            binary_slots = _template_size(self.template)[2]
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

    def _fits(self, expr: Node) -> bool:
        return (
            _depth(expr) <= self.max_depth
            and _size(expr) <= self.max_nodes
            and len(_param_slots(expr)) <= self.max_params
        )

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
        depth, size, params = _depth(expr), _size(expr), len(_param_slots(expr))
        if size > self.max_nodes:
            raise GenomeError(f"expression has {size} nodes, over max_nodes={self.max_nodes}; remove nodes")
        if params > self.max_params:
            raise GenomeError(
                f"expression has {params} learnable scalars, over max_params={self.max_params}; drop alpha/beta keys"
            )
        if self.template is not None and not _matches(expr, self.template):
            raise GenomeError(
                f"expression does not have the {self._schema_name()} shape {_template_text(self.template)}, "
                f"depth {depth}; rebuild it in that shape"
            )

    def _check_node(self, node: Any, path: str, depth: int) -> None:
        if not isinstance(node, dict):
            raise GenomeError(f"{path} must be a JSON object like {{'op': 'x'}}, got {type(node).__name__}")
        op = node.get("op")
        if not isinstance(op, str):
            raise GenomeError(f'{path} has no "op" string; every node names its op, e.g. {{"op": "x"}}')
        if op not in OPS and op not in LEAVES:
            raise GenomeError(f"unknown op {op!r} at {path}; {_known_ops_text()}")
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
        if not _is_number(value) or not math.isfinite(value):
            raise GenomeError(f"{path}.{key} must be a finite number, got {value!r}")

    def canonical(self, genome: Genome) -> str:
        self.validate(genome)
        return canonical_json(self._genome(_normalize(genome["expr"])))

    # -- sampling ---------------------------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Genome:
        expr = self._random_subtree(rng, (), self.max_depth, self.max_nodes, root=True)
        expr = self._fit_param_count(expr, rng)
        return self._genome(self._sprinkle_params(expr, rng))

    def _random_subtree(self, rng: np.random.Generator, path: Path, depth: int, nodes: int, root: bool = False) -> Node:
        """A random subtree for position ``path`` within ``depth`` levels and ``nodes`` nodes, params not counted."""
        if self.template is not None:
            return self._from_template(rng, _template_at(self.template, path))
        arities = [
            arity for arity, ops, cost in ((1, self.unary_ops, 2), (2, self.binary_ops, 3)) if ops and nodes >= cost
        ]
        if depth == 0 or not arities or (not root and rng.random() < 0.3):
            return self._random_leaf(rng)
        arity = arities[rng.integers(len(arities))]
        if arity == 1:
            return self._new_op(rng, 1, [self._random_subtree(rng, (), depth - 1, nodes - 1)])
        left = self._random_subtree(rng, (), depth - 1, int(rng.integers(1, nodes - 1)))
        right = self._random_subtree(rng, (), depth - 1, nodes - 1 - _size(left))
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
        while len(_param_slots(expr)) > self.max_params:
            below = _walk(_get(expr, under), under)
            paths = [path for path, node in below if node["op"] in OPS and OPS[node["op"]].parametric]
            if not paths or not plain:
                return expr
            path = self._pick(paths, rng)
            expr = _replace(expr, path, {"op": self._pick(plain, rng), "args": _get(expr, path)["args"]})
        return expr

    def _sprinkle_params(self, expr: Node, rng: np.random.Generator, under: Path = ()) -> Node:
        """Give each free alpha/beta slot below ``under`` a learnable scalar (init 1) with ``param_probability``."""
        for path, key in self._free_slots(_get(expr, under), under):
            if len(_param_slots(expr)) >= self.max_params:
                break
            if rng.random() < self.param_probability:
                expr = _replace(expr, path, {**_get(expr, path), key: 1.0})
        return expr

    @staticmethod
    def _free_slots(expr: Node, under: Path = ()) -> list[tuple[Path, str]]:
        slots = []
        for path, node in _walk(expr, under):
            if node["op"] in OPS:
                slots += [(path, "alpha")] if "alpha" not in node else []
                slots += [(path, "beta")] if OPS[node["op"]].arity == 1 and "beta" not in node else []
        return slots

    # -- variation --------------------------------------------------------------------------------------------

    def mutate(self, genome: Genome, rng: np.random.Generator) -> tuple[Genome, str]:
        """Apply one randomly drawn operator that changes the genome; raises if this space offers none."""
        self.validate(genome)
        expr = genome["expr"]
        before = _normalize(expr)
        operators = {
            "change_op": self._change_op,
            "insert_node": self._insert_node,
            "remove_node": self._remove_node,
            "regenerate_subtree": self._regenerate_subtree,
            "add_param": self._add_param,
            "remove_param": self._remove_param,
            "perturb_param": self._perturb_param,
        }
        for _ in range(64):
            name = self._pick(self.operators, rng)
            child = operators[name](expr, rng)
            if child is not None and self._fits(child) and _normalize(child) != before:
                return self._genome(child), name
        raise GenomeError(
            f"no mutation of {self.describe(genome)} stays inside this space; widen the op sets or limits"
        )

    @staticmethod
    def _pick(items: list[Any], rng: np.random.Generator) -> Any:
        return items[rng.integers(len(items))] if items else None

    def _op_paths(self, expr: Node) -> list[Path]:
        return [path for path, node in _walk(expr) if node["op"] in OPS]

    def _change_op(self, expr: Node, rng: np.random.Generator) -> Node | None:
        path = self._pick(self._op_paths(expr), rng)
        if path is None:
            return None
        node = _get(expr, path)
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
        return _replace(expr, path, new)

    def _insert_node(self, expr: Node, rng: np.random.Generator) -> Node | None:
        path, node = self._pick(_walk(expr), rng)
        arity = self._pick([arity for arity, ops in ((1, self.unary_ops), (2, self.binary_ops)) if ops], rng)
        args = [node]
        if arity == 2:
            args.insert(int(rng.integers(2)), self._random_leaf(rng))
        return _replace(expr, path, self._new_op(rng, arity, args))

    def _remove_node(self, expr: Node, rng: np.random.Generator) -> Node | None:
        path = self._pick(self._op_paths(expr), rng)
        if path is None:
            return None
        node = _get(expr, path)
        kept = node["args"][rng.integers(len(node["args"]))]
        return None if not path and kept["op"] in LEAVES else _replace(expr, path, kept)

    def _regenerate_subtree(self, expr: Node, rng: np.random.Generator) -> Node | None:
        path, node = self._pick(_walk(expr), rng)
        nodes_left = self.max_nodes - _size(expr) + _size(node)
        new = self._random_subtree(rng, path, self.max_depth - len(path), nodes_left, root=not path)
        expr = self._fit_param_count(_replace(expr, path, new), rng, path)
        return self._sprinkle_params(expr, rng, path)

    def _add_param(self, expr: Node, rng: np.random.Generator) -> Node | None:
        slot = self._pick(self._free_slots(expr), rng)
        if slot is None or len(_param_slots(expr)) >= self.max_params:
            return None
        return _replace(expr, slot[0], {**_get(expr, slot[0]), slot[1]: 1.0})

    def _remove_param(self, expr: Node, rng: np.random.Generator) -> Node | None:
        optional = [
            (path, key)
            for path, key in _param_slots(expr)
            if key == "alpha" or not OPS[_get(expr, path)["op"]].parametric
        ]
        slot = self._pick(optional, rng)
        if slot is None:
            return None
        node = dict(_get(expr, slot[0]))
        del node[slot[1]]
        return _replace(expr, slot[0], node)

    def _perturb_param(self, expr: Node, rng: np.random.Generator) -> Node | None:
        slot = self._pick(_param_slots(expr), rng)
        if slot is None:
            return None
        node = _get(expr, slot[0])
        value = float(node[slot[1]])
        new_value = _round_sig(value + rng.normal(0.0, 0.3 * max(1.0, abs(value))), 4)
        return _replace(expr, slot[0], {**node, slot[1]: new_value})

    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> Genome | None:
        """Copy ``a`` with one subtree replaced by a subtree of ``b``; None if no swap fits and differs from both."""
        self.validate(a)
        self.validate(b)
        parents = (_normalize(a["expr"]), _normalize(b["expr"]))
        shape = self.template
        children = []
        for path_a, _ in _walk(a["expr"]):
            for path_b, donor in _walk(b["expr"]):
                if not path_a and (not path_b or donor["op"] in LEAVES):
                    continue
                if shape is not None and _template_at(shape, path_a) != _template_at(shape, path_b):
                    continue
                child = _replace(a["expr"], path_a, donor)
                if self._fits(child) and _normalize(child) not in parents:
                    children.append(child)
        return self._genome(children[rng.integers(len(children))]) if children else None

    # -- text, torch, export ----------------------------------------------------------------------------------

    def parse(self, text: str) -> Genome:
        """Genome from the text form (see the module docstring); no eval, a whitelist parser."""
        if not isinstance(text, str):
            raise GenomeError(f"text form must be a string, got {type(text).__name__}")
        genome = self._genome(_Parser(text).parse())
        self.validate(genome)
        return genome

    def describe(self, genome: Genome, fmt: str = "text") -> str:
        self.validate(genome)
        if fmt == "text":
            return _text(genome["expr"])[0]
        if fmt == "latex":
            return _LatexWriter(genome["expr"]).render(genome["expr"])[0]
        raise ValueError(f"unknown describe format {fmt!r}; use 'text' or 'latex'")

    def build(self, genome: Genome, **shape: Any) -> nn.Module:
        """The activation as a module (``shape`` is ignored: the function is elementwise), lowered to fused ops."""
        self.validate(genome)
        return EvolvedActivation(lower(genome["expr"]), self.describe(genome))

    def to_source(self, genome: Genome, class_name: str) -> str:
        """A standalone module (imports only torch) whose forward matches ``build`` bit for bit on the same input."""
        self.validate(genome)
        if not class_name.isidentifier() or keyword.iskeyword(class_name):
            raise ValueError(f"class_name must be a Python identifier, got {class_name!r}")
        expr = lower(genome["expr"])
        writer = _SourceWriter(expr)
        result, _ = writer.render(expr)
        formula = self.describe(genome)
        params = [(writer.names[slot], float(_get(expr, slot[0])[slot[1]])) for slot in _param_slots(expr)]
        param_doc = ", ".join(f"{name}={value!r}" for name, value in params) or "none"
        init = [f"        self.{name} = torch.nn.Parameter(torch.tensor({value!r}))" for name, value in params]
        body = [f"        {line}" for line in writer.lines] + [f"        return {result}"]
        genome_json = json.dumps(genome, sort_keys=True).replace("\\", "\\\\")
        return "\n".join(
            [
                f'"""{class_name}: an activation function found by LayerForge.',
                "",
                f"f(x) = {formula}",
                "",
                "LaTeX: " + self.describe(genome, "latex").replace("\\", "\\\\"),
                f"Genome: {genome_json}",
                '"""',
                "",
                "import torch",
                "",
                "",
                f"class {class_name}(torch.nn.Module):",
                f'    """f(x) = {formula}',
                "",
                f"    Learnable scalars (initial values): {param_doc}. Safe-op epsilon: {EPS!r}.",
                '    """',
                "",
                "    def __init__(self) -> None:",
                "        super().__init__()",
                *init,
                "",
                "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
                *body,
                "",
            ]
        )

    def seeds(self) -> dict[str, Genome]:
        """Well-known activations that fit this space; fixed schemas get them padded with identity and + zero(x)."""
        found = {}
        for name, text in SEED_TEXTS.items():
            expr = _Parser(text).parse()
            if self.template is not None:
                expr = _embed(expr, self.template)
            if expr is None:
                continue
            genome = self._genome(expr)
            try:
                self.validate(genome)
            except GenomeError:
                continue
            found[name] = genome
        return found

    def static_problems(self, genome: Genome) -> list[str]:
        try:
            self.validate(genome)
        except GenomeError as exc:
            return [str(exc)]
        if not _depends_on_x(genome["expr"]):
            return ["output does not depend on x: the function is constant, so a layer using it passes no signal"]
        return []
