"""The text form and LaTeX of an expression tree.

Text form (``parse`` and ``describe(genome, "text")``)::

    max(relu(x), x*sigmoid(1.0*x))   every op as a call; infix + - * / and ^ (or **) for pow; unary minus;
                                     numbers (1, 0.5, 1e-3; a minus sign right before a number makes it negative)
    {1.5}*tanh({0.5}*x)              learnable scalars are numbers in braces: ``{a}*`` before an operation is its
                                     alpha, ``{b}*`` at the start of a unary call's argument is that call's beta
    sin(({0.5}*cos(x)))              parentheses give the alpha to the inner call instead of a beta to the outer
    blend(x, tanh(x), {0.5})         a parametric op takes its beta as a last argument

A learnable scale starts a product (``x*({a}*sin(x))``, not ``x*{a}*sin(x)``) and needs an operation to attach to
(``{a}*identity(x)``, not ``{a}*x``). ``{0.92}`` is a learnable scalar initialised at 0.92: a parameter of the
module, not a constant.

``display_formula`` and ``latex`` are for reading and are not parsed back exactly: both draw the tree after
``simplify`` (identity, unit and zero constants, padding such as ``+ zero(x)``, double negation and constant
subtrees gone; ``x*x`` as ``x^2``), with numbers to four significant digits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from spaces.activation.ops import ALIASES, LEAVES, OPS, known_ops_text
from spaces.activation.simplify import simplify
from spaces.activation.tree import MAX_DEPTH, Node
from spaces.base import GenomeError

# Precedences decide where the text form needs parentheses.
_PREC_ADD, _PREC_MUL, _PREC_UNARY, _PREC_POW, _PREC_ATOM = 1, 2, 3, 4, 5
_INFIX_PREC = {"+": _PREC_ADD, "-": _PREC_ADD, "*": _PREC_MUL, "/": _PREC_MUL, "^": _PREC_POW}


def number_text(value: float) -> str:
    """A number as the text form and the export write it: repr of the float, so it reads back exactly."""
    return repr(float(value))


def short_number_text(value: float) -> str:
    """A number for reading: four significant digits, written as a float (1.0, 0.7071, 1e-06)."""
    text = f"{float(value):.4g}"
    return text if any(mark in text for mark in ".en") else f"{text}.0"


def _wrap(text: str, prec: int, needed: int) -> str:
    return f"({text})" if prec < needed else text


def _text(node: Node, display: bool = False) -> tuple[str, int]:
    """Text and precedence of a node; ``parse`` reads the text back to the same node.

    ``display`` writes numbers short and square/cube as powers: for reading, not for parsing back exactly.
    """
    op = node["op"]
    number = short_number_text if display else number_text
    if op == "x":
        return "x", _PREC_ATOM
    if op == "const":
        text = number(node["value"])
        return text, _PREC_UNARY if text.startswith("-") else _PREC_ATOM
    text, prec = _text_unscaled(node, display)
    if "alpha" in node:
        return f"{{{number(node['alpha'])}}}*{_wrap(text, prec, _PREC_ATOM)}", _PREC_MUL
    return text, prec


_POWERS = {"square": "2", "cube": "3"}


def _small_integer(node: Node) -> bool:
    return node["op"] == "const" and float(node["value"]).is_integer() and abs(node["value"]) < 1e4


def _text_unscaled(node: Node, display: bool) -> tuple[str, int]:
    spec = OPS[node["op"]]
    args = node["args"]
    number = short_number_text if display else number_text
    if spec.arity == 1:
        child, child_prec = _text(args[0], display)
        if display and spec.name in _POWERS and "beta" not in node:
            return f"{_wrap(child, child_prec, _PREC_ATOM)}^{_POWERS[spec.name]}", _PREC_POW
        if spec.name == "neg" and "beta" not in node:
            needs_parens = child.startswith("-") or args[0]["op"] == "const" or child_prec < _PREC_UNARY
            return "-" + (f"({child})" if needs_parens else child), _PREC_UNARY
        if "beta" in node:
            needs_parens = child.startswith("-") or child_prec <= _PREC_MUL
            inner = f"{{{number(node['beta'])}}}*" + (f"({child})" if needs_parens else child)
        else:
            inner = f"({child})" if child.startswith("{") else child  # else the parser reads a beta
        return f"{spec.name}({inner})", _PREC_ATOM
    (left, left_prec), (right, right_prec) = _text(args[0], display), _text(args[1], display)
    if display and spec.infix == "^" and _small_integer(args[1]):
        right = str(int(args[1]["value"]))  # x^2, not x^2.0
    if spec.infix:
        prec = _INFIX_PREC[spec.infix]
        left_needed, right_needed = (_PREC_ATOM, _PREC_POW) if spec.infix == "^" else (prec, prec + 1)
        left = _wrap(left, left_prec, left_needed)
        right = f"({right})" if right.startswith("-") else _wrap(right, right_prec, right_needed)
        joiner = f" {spec.infix} " if prec == _PREC_ADD else spec.infix
        return left + joiner + right, prec
    extra = f", {{{number(node['beta'])}}}" if spec.parametric else ""
    return f"{spec.name}({left}, {right}{extra})", _PREC_ATOM


_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<param>\{\s*-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*\})"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<symbol>\*\*|[-+*/^(),]))"
)
_INFIX_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
# The text form writes a tree of depth d at most 2d + 2 levels deep (a call or minus sign and a parenthesis per
# operation), so every tree a space accepts reads back; a level costs the parser about seven Python frames.
MAX_NESTING = 2 * MAX_DEPTH + 2


def _shown(text: str, limit: int = 60) -> str:
    """``text`` quoted for a message, cut so that a message stays one short line whatever was typed."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


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
        self.shown = _shown(text)
        self.nesting = 0  # parentheses, calls, minus signs and powers open around the current token
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                if not text[position:].strip():
                    break
                rest = text[position:]
                where = position + len(rest) - len(rest.lstrip())
                raise GenomeError(f"unexpected character {rest.lstrip()[:1]!r} at position {where} in {self.shown}")
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
        return GenomeError(f"{message} at position {position} in {self.shown}")

    def expect(self, symbol: str, hint: str = "") -> None:
        kind, value, position = self.next()
        if value != symbol or kind != "symbol":
            found = _shown(value) if kind != "end" else "end of text"
            raise self.fail(f"expected {symbol!r}, found {found}{hint}", position)

    def is_symbol(self, *symbols: str, offset: int = 0) -> bool:
        kind, value, _ = self.peek(offset)
        return kind == "symbol" and value in symbols

    def number(self, text: str, position: int) -> float:
        value = float(text.strip("{} "))
        if not math.isfinite(value):
            raise self.fail(f"number {_shown(text)} is not finite", position)
        return value

    def parse(self) -> Node:
        node = self.expr()
        kind, value, position = self.peek()
        if kind != "end":
            raise self.fail(f"unexpected {_shown(value)}; expected an operator or the end", position)
        return node

    def expr(self) -> Node:
        return self.left_associative(self.term(), ("+", "-"), self.term)

    def term(self) -> Node:
        return self.left_associative(self.scaled(), ("*", "/"), self.unary)

    def left_associative(self, node: Node, symbols: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        """``node`` followed by any number of ``symbol operand`` pairs, grouped from the left."""
        while self.is_symbol(*symbols):
            op = _INFIX_OPS[self.next()[1]]
            node = {"op": op, "args": [node, operand()]}
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

    @contextmanager
    def nested(self) -> Iterator[None]:
        """One more level of parentheses, calls, minus signs or powers; past the limit, a GenomeError."""
        self.nesting += 1
        try:
            if self.nesting > MAX_NESTING:
                raise self.fail(
                    f"the formula nests more than {MAX_NESTING} parentheses, calls, minus signs and powers deep; "
                    "simplify it"
                )
            yield
        finally:
            self.nesting -= 1

    def unary(self) -> Node:
        with self.nested():  # every nesting passes through here: this bounds the recursion before Python does
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
                raise self.fail(f"unknown name {_shown(text)}; the only variable is x", position)
            self.next()
            return self.call(text, position)
        found = _shown(text) if kind != "end" else "end of text"
        raise self.fail(f"expected a number, x, a call or '(', found {found}", position)

    def call(self, name: str, position: int) -> Node:
        op = ALIASES.get(name, name)
        if op not in OPS:
            raise self.fail(f"unknown function {_shown(name)}; {known_ops_text()}", position)
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


# LaTeX is drawn from the simplified tree; learnable scalars are named like the exported parameters.


def _latex_number(value: float) -> str:
    mantissa, _, exponent = f"{float(value):.4g}".partition("e")
    return rf"{mantissa} \times 10^{{{int(exponent)}}}" if exponent else mantissa


def _latex_paren(text: str, atomic: bool) -> str:
    return text if atomic else rf"\left({text}\right)"


def _latex_product(factor: str, text: str, atomic: bool) -> str:
    """``factor`` times an operand, side by side unless the operand starts with a digit (then with a dot)."""
    operand = _latex_paren(text, atomic)
    return rf"{factor} \cdot {operand}" if operand[:1].isdigit() else f"{factor} {operand}"


def _latex_symbol(node: Node, key: str) -> str:
    return f"\\{key}_{{{node['slots'][key]}}}"


def _needs_parens_after_sign(template: str, index: int, arg: Node) -> bool:
    """An operand after + or - that starts with a minus sign, or after - that is itself a sum: x - (a + b)."""
    if f"- #{index}" not in template and f"+ #{index}" not in template:
        return False
    first = arg if arg["op"] != "mul" or "alpha" in arg else arg["args"][0]  # -2 x starts with its number
    negative = (first["op"] == "const" and first["value"] < 0) or (arg["op"] == "neg" and "alpha" not in arg)
    a_sum = arg["op"] in ("add", "sub", "blend") and "alpha" not in arg
    return negative or (a_sum and f"- #{index}" in template)


def _latex(node: Node) -> tuple[str, bool]:
    """LaTeX text of a simplified node and whether it is atomic (safe as an operand without parentheses)."""
    op = node["op"]
    if op == "x":
        return "x", True
    if op == "const":
        return _latex_number(node["value"]), node["value"] >= 0
    spec = OPS[op]
    args = [_latex(arg) for arg in node["args"]]
    if "beta" in node and not spec.parametric:
        args[0] = (_latex_product(_latex_symbol(node, "beta"), *args[0]), False)
    if op == "mul" and node["args"][0]["op"] == "const":
        text, atomic = _latex_product(args[0][0], *args[1]), False  # 2 x, not 2 \cdot x
    else:
        text = spec.latex
        for index, (arg_text, arg_atomic) in enumerate(args):
            braced = f"{{#{index}}}" in text  # an exponent in braces needs no parentheses
            wrap = (spec.latex_wrap and not braced) or _needs_parens_after_sign(text, index, node["args"][index])
            text = text.replace(f"#{index}", _latex_paren(arg_text, arg_atomic) if wrap else arg_text)
        atomic = args[0][1] if spec.latex == "#0" else spec.latex_atomic  # identity is as atomic as its argument
    if spec.parametric:
        text = text.replace("#b", _latex_symbol(node, "beta"))
    if op == "one" and "alpha" in node:
        return _latex_symbol(node, "alpha"), True  # a learnable constant
    if "alpha" in node:
        return _latex_product(_latex_symbol(node, "alpha"), text, atomic), False
    return text, atomic


def formula(expr: Node) -> str:
    """The text form of ``expr``; ``parse_formula`` reads it back to the same tree."""
    return _text(expr)[0]


def parse_formula(text: str) -> Node:
    """The tree of a text form; a whitelist parser, no eval."""
    return _Parser(text).parse()


def display_formula(expr: Node) -> str:
    """The text form of the simplified tree, for reading: what ``expr`` computes, without its padding."""
    return _text(simplify(expr), display=True)[0]


def display_scalars(expr: Node) -> list[tuple[str, float]]:
    """(exported parameter name, initial value) of each learnable scalar ``display_formula`` shows, left to right."""
    return list(_scalars_left_to_right(simplify(expr)))


def _scalars_left_to_right(node: Node) -> Iterator[tuple[str, float]]:
    """The text form writes ``{alpha}*f({beta}*arg)`` and ``{alpha}*g(left, right, {beta})``."""
    named = {key: (f"{key}_{node['slots'][key]}", float(node[key])) for key in ("alpha", "beta") if key in node}
    if "alpha" in named:
        yield named["alpha"]
    if "beta" in named and len(node["args"]) == 1:
        yield named["beta"]
    for arg in node.get("args", ()):
        yield from _scalars_left_to_right(arg)
    if "beta" in named and len(node["args"]) == 2:
        yield named["beta"]


def latex(expr: Node) -> str:
    """LaTeX of the simplified tree; learnable scalars are alpha_i/beta_i, i their index in the exported module."""
    return _latex(simplify(expr))[0]
