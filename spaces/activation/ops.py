"""The op whitelist: one row per op, holding what every consumer needs, so an op is added in one place.

A row carries the op's torch callable (the built module calls it), its source template (the export writes it,
with the same torch calls in the same order, so build and export agree bit for bit) and its LaTeX form.
An op that is one torch call is a row on that callable; any other op is a function decorated with its row.

Numerical safety, EPS = 1e-6: log(x) = log(|x| + EPS); sqrt(x) = sqrt(max(x, 0) + EPS);
reciprocal(x) = x / (x^2 + EPS) and div(a, b) = a*b / (b^2 + EPS) (sign-preserving, no pole);
pow(a, b) = max(|a|, EPS)^b (no NaN for negative bases). sinc(x) = sin(x)/x.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-6
_Fn = TypeVar("_Fn", bound=Callable[..., Tensor])


@dataclass(frozen=True)
class OpSpec:
    """One whitelisted operation: arity, torch callable, the torch expression it exports to, and its LaTeX form.

    ``fn`` takes the arguments (and a parametric op's beta last); it must be TorchScript-compatible, with any
    constant such as EPS as a default argument (TorchScript does not read module globals).
    ``source`` uses ``{0}``/``{1}`` for the arguments, ``{beta}`` for the op's own parameter and ``{eps}``/``{pi}``.
    ``latex`` uses ``#0``/``#1``/``#b``; ``latex_wrap`` parenthesizes compound arguments, ``latex_atomic`` says
    the result needs no parentheses as an operand. ``beta_init`` marks a parametric op (its own learnable beta).
    """

    name: str
    arity: int
    fn: Callable[..., Tensor]
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


UNARY_OPS: dict[str, OpSpec] = {}
BINARY_OPS: dict[str, OpSpec] = {}


def _op(name: str, arity: int, source: str, latex: str, **flags: Any) -> Callable[[_Fn], _Fn]:
    """Register ``fn`` as op ``name`` with its template; rows register in table order, which sampling draws by."""

    def register(fn: _Fn) -> _Fn:
        table = UNARY_OPS if arity == 1 else BINARY_OPS
        table[name] = OpSpec(name, arity, fn, source, latex, **flags)
        return fn

    return register


def _call(name: str, fn: Callable[[Tensor], Tensor], source_fn: str, latex_name: str | None = None) -> None:
    """A unary op that is the single torch call ``source_fn``, drawn as a named function."""
    escaped = name.replace("_", r"\_")
    latex_name = latex_name or rf"\operatorname{{{escaped}}}"
    _op(name, 1, f"{source_fn}({{0}})", rf"{latex_name}\left(#0\right)")(fn)


@_op("identity", 1, "{0}", "#0", latex_atomic=False)
def _identity(a: Tensor) -> Tensor:
    return a


@_op("neg", 1, "-{0}", "-#0", latex_wrap=True, latex_atomic=False)
def _neg(a: Tensor) -> Tensor:
    return -a


_op("abs", 1, "torch.abs({0})", r"\left|#0\right|")(torch.abs)
_op("square", 1, "torch.square({0})", "#0^{2}", latex_wrap=True)(torch.square)


@_op("cube", 1, "torch.pow({0}, 3)", "#0^{3}", latex_wrap=True)
def _cube(a: Tensor) -> Tensor:
    return torch.pow(a, 3)


@_op("sqrt", 1, "torch.sqrt(torch.relu({0}) + {eps})", r"\sqrt{#0}")
def _sqrt(a: Tensor, eps: float = EPS) -> Tensor:
    return torch.sqrt(torch.relu(a) + eps)


@_op("log", 1, "torch.log(torch.abs({0}) + {eps})", r"\log\left(\left|#0\right| + \epsilon\right)")
def _log(a: Tensor, eps: float = EPS) -> Tensor:
    return torch.log(torch.abs(a) + eps)


_op("exp", 1, "torch.exp({0})", "e^{#0}")(torch.exp)
_call("sin", torch.sin, "torch.sin", r"\sin")
_call("cos", torch.cos, "torch.cos", r"\cos")
_call("sinh", torch.sinh, "torch.sinh", r"\sinh")
_call("cosh", torch.cosh, "torch.cosh", r"\cosh")
_call("tanh", torch.tanh, "torch.tanh", r"\tanh")
_call("asinh", torch.asinh, "torch.asinh")
_call("atan", torch.atan, "torch.atan", r"\arctan")


@_op("sinc", 1, "torch.sinc({0} / {pi})", r"\frac{\sin\left(#0\right)}{#0}")
def _sinc(a: Tensor) -> Tensor:
    return torch.sinc(a / math.pi)


_op("relu", 1, "torch.relu({0})", r"\max\left(#0, 0\right)")(torch.relu)


@_op("min0", 1, "torch.clamp_max({0}, 0.0)", r"\min\left(#0, 0\right)")
def _min0(a: Tensor) -> Tensor:
    return torch.clamp_max(a, 0.0)


_call("sigmoid", torch.sigmoid, "torch.sigmoid", r"\sigma")
_call("softplus", F.softplus, "torch.nn.functional.softplus")


@_op("gaussian", 1, "torch.exp(-torch.square({0}))", r"e^{-\left(#0\right)^{2}}")
def _gaussian(a: Tensor) -> Tensor:
    return torch.exp(-torch.square(a))


_call("erf", torch.erf, "torch.erf")
_call("erfc", torch.erfc, "torch.erfc")
_op("expm1", 1, "torch.expm1({0})", r"\left(e^{#0} - 1\right)")(torch.expm1)


@_op("reciprocal", 1, "{0} / ({0} * {0} + {eps})", r"\frac{1}{#0}")
def _reciprocal(a: Tensor, eps: float = EPS) -> Tensor:
    return a / (a * a + eps)


_call("log_sigmoid", F.logsigmoid, "torch.nn.functional.logsigmoid", r"\log\sigma")
_call("bessel_i0e", torch.special.i0e, "torch.special.i0e", r"\operatorname{I_0e}")
_call("bessel_i1e", torch.special.i1e, "torch.special.i1e", r"\operatorname{I_1e}")
_call("elu", F.elu, "torch.nn.functional.elu")
_call("selu", torch.selu, "torch.selu")
_call("silu", F.silu, "torch.nn.functional.silu")
_call("softsign", F.softsign, "torch.nn.functional.softsign")
_call("hard_sigmoid", F.hardsigmoid, "torch.nn.functional.hardsigmoid")


@_op("leaky_relu", 1, "torch.nn.functional.leaky_relu({0}, 0.01)", r"\operatorname{leaky\_relu}\left(#0\right)")
def _leaky_relu(a: Tensor) -> Tensor:
    return F.leaky_relu(a, 0.01)


_call("mish", F.mish, "torch.nn.functional.mish")
_call("gelu", F.gelu, "torch.nn.functional.gelu")


@_op("gelu_tanh", 1, 'torch.nn.functional.gelu({0}, approximate="tanh")', r"\operatorname{gelu_{tanh}}\left(#0\right)")
def _gelu_tanh(a: Tensor) -> Tensor:
    return F.gelu(a, approximate="tanh")


@_op(
    "elish",
    1,
    "torch.where({0} >= 0.0, {0}, torch.expm1({0})) * torch.sigmoid({0})",
    r"\operatorname{elish}\left(#0\right)",
)
def _elish(a: Tensor) -> Tensor:
    return torch.where(a >= 0.0, a, torch.expm1(a)) * torch.sigmoid(a)


_op("zero", 1, "torch.zeros_like({0})", "0")(torch.zeros_like)
_op("one", 1, "torch.ones_like({0})", "1")(torch.ones_like)


@_op("add", 2, "{0} + {1}", "#0 + #1", infix="+", commutative=True, latex_atomic=False)
def _add(a: Tensor, b: Tensor) -> Tensor:
    return a + b


@_op("sub", 2, "{0} - {1}", "#0 - #1", infix="-", latex_atomic=False)
def _sub(a: Tensor, b: Tensor) -> Tensor:
    return a - b


@_op("mul", 2, "{0} * {1}", r"#0 \cdot #1", infix="*", commutative=True, latex_wrap=True, latex_atomic=False)
def _mul(a: Tensor, b: Tensor) -> Tensor:
    return a * b


@_op("div", 2, "{0} * {1} / ({1} * {1} + {eps})", r"\frac{#0}{#1}", infix="/")
def _div(a: Tensor, b: Tensor, eps: float = EPS) -> Tensor:
    return a * b / (b * b + eps)


@_op("pow", 2, "torch.pow(torch.clamp_min(torch.abs({0}), {eps}), {1})", "#0^{#1}", infix="^", latex_wrap=True)
def _pow(a: Tensor, b: Tensor, eps: float = EPS) -> Tensor:
    return torch.pow(torch.clamp_min(torch.abs(a), eps), b)


_op("max", 2, "torch.maximum({0}, {1})", r"\max\left(#0, #1\right)", commutative=True)(torch.maximum)
_op("min", 2, "torch.minimum({0}, {1})", r"\min\left(#0, #1\right)", commutative=True)(torch.minimum)


@_op(
    "sigmoid_gate",
    2,
    "torch.sigmoid({0}) * {1}",
    r"\sigma\left(#0\right) \cdot #1",
    latex_wrap=True,
    latex_atomic=False,
)
def _sigmoid_gate(a: Tensor, b: Tensor) -> Tensor:
    return torch.sigmoid(a) * b


# Swish's similarity kernels exp(-beta * d(a - b)), symmetric in a and b.
_KERNEL = {"beta_init": 1.0, "commutative": True}


@_op("gauss_diff", 2, "torch.exp(-{beta} * torch.square({0} - {1}))", r"e^{-#b\left(#0 - #1\right)^{2}}", **_KERNEL)
def _gauss_diff(a: Tensor, b: Tensor, beta: Tensor) -> Tensor:
    return torch.exp(-beta * torch.square(a - b))


@_op("laplace_diff", 2, "torch.exp(-{beta} * torch.abs({0} - {1}))", r"e^{-#b\left|#0 - #1\right|}", **_KERNEL)
def _laplace_diff(a: Tensor, b: Tensor, beta: Tensor) -> Tensor:
    return torch.exp(-beta * torch.abs(a - b))


@_op(
    "blend",
    2,
    "{beta} * {0} + (1.0 - {beta}) * {1}",
    r"#b #0 + \left(1 - #b\right) #1",
    beta_init=0.5,
    latex_wrap=True,
    latex_atomic=False,
)
def _blend(a: Tensor, b: Tensor, beta: Tensor) -> Tensor:
    return beta * a + (1.0 - beta) * b


OPS: dict[str, OpSpec] = {**UNARY_OPS, **BINARY_OPS}
# Other names the literature uses; accepted in options and text, stored under the name on the right.
ALIASES = {"swish": "silu", "arcsinh": "asinh", "arctan": "atan", "negative": "neg", "max0": "relu"}
LEAVES = ("x", "const")


def known_ops_text() -> str:
    """The whitelist in words, for error messages."""
    return (
        f"known unary ops: {', '.join(UNARY_OPS)}; known binary ops: {', '.join(BINARY_OPS)}; "
        f"leaves: {', '.join(LEAVES)}"
    )
