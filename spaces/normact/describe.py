"""Human-readable forms of a norm-act graph: a text formula, LaTeX, node/edge JSON, and the Graphviz DOT the
dashboard draws."""

from __future__ import annotations

import json
from collections.abc import Callable

from spaces.normact.genome import Plan
from spaces.normact.ops import AGGREGATES, is_aggregate

MAX_INLINE_CHARS = 400  # longer formulas are written as a list of node assignments instead

# Precedence: 1 sums, 2 products and quotients, 3 prefix minus, 4 powers, 5 atoms and calls.
_REGION_LATEX = {"batch": "N,H,W", "instance": "H,W", "group": "H,W,C/g", "layer": "C,H,W"}
_STAT_LATEX = {"mean": r"\mu", "var": r"\mathrm{Var}", "std": r"\mathrm{Std}", "rms": r"\mathrm{RMS}"}
_INPUT_TEXT = ("x", "0", "v0", "v1")
_INPUT_LATEX = ("x", "0", "v_0", "v_1")
_LP, _RP = r"\left(", r"\right)"
_DOT_SHAPES = {
    "input": "ellipse",
    "constant": "plaintext",
    "parameter": "ellipse",
    "aggregate": "box",
    "output": "doubleoctagon",
}
_DOT_COLOURS = {"input": "#cfe8ff", "parameter": "#e8e8e8", "aggregate": "#ffe0b3", "output": "#c9f2c9"}

Term = tuple[str, int]


def _wrap(term: Term, minimum: int, open_: str = "(", close: str = ")") -> str:
    text, precedence = term
    return text if precedence >= minimum else f"{open_}{text}{close}"


def _text(op: str, args: list[Term]) -> Term:
    if op == "one":
        return "1", 5
    if is_aggregate(op) or op in ("sigmoid", "tanh", "gelu", "exp", "slog", "ssqrt"):
        return f"{op}({args[0][0]})", 5
    if op == "max":
        return f"max({args[0][0]}, {args[1][0]})", 5
    if op == "abs":
        return f"|{args[0][0]}|", 5
    if op == "square":
        return f"{_wrap(args[0], 5)}^2", 4
    if op == "neg":
        return f"-{_wrap(args[0], 3)}", 3
    if op == "add":
        return f"{args[0][0]} + {args[1][0]}", 1
    symbol = " * " if op == "mul" else " / "
    return f"{_wrap(args[0], 2)}{symbol}{_wrap(args[1], 3)}", 2


def _latex(op: str, args: list[Term]) -> Term:
    if op == "one":
        return "1", 5
    a = args[0][0]
    if is_aggregate(op):
        agg = AGGREGATES[op]
        return rf"{_STAT_LATEX[agg.stat]}_{{{_REGION_LATEX[agg.region]}}}\left({a}\right)", 5
    simple = {
        "sigmoid": rf"\sigma\left({a}\right)",
        "tanh": rf"\tanh\left({a}\right)",
        "gelu": rf"\mathrm{{GELU}}\left({a}\right)",
        "exp": rf"e^{{{a}}}",
        "slog": rf"\operatorname{{sign}}({a})\log\left|{a}\right|",
        "ssqrt": rf"\operatorname{{sign}}({a})\sqrt{{\left|{a}\right|}}",
        "abs": rf"\left|{a}\right|",
    }
    if op in simple:
        return simple[op], 5
    if op == "max":
        return rf"\max\left({a}, {args[1][0]}\right)", 5
    if op == "div":
        return rf"\frac{{{a}}}{{{args[1][0]}}}", 5
    if op == "square":
        return f"{{{_wrap(args[0], 5, _LP, _RP)}}}^{{2}}", 4
    if op == "neg":
        return f"-{_wrap(args[0], 3, _LP, _RP)}", 3
    if op == "add":
        return f"{a} + {args[1][0]}", 1
    return rf"{_wrap(args[0], 2, _LP, _RP)} \cdot {_wrap(args[1], 3, _LP, _RP)}", 2


def _expand(plan: Plan, render: Callable[[str, list[Term]], Term], inputs: tuple[str, ...]) -> dict[int, Term]:
    terms: dict[int, Term] = {i: (name, 5) for i, name in enumerate(inputs)}
    for step in plan.steps:
        terms[step.index] = render(step.op, [terms[i] for i in step.inputs])
    return terms


def formula(plan: Plan, fmt: str = "text") -> str:
    """``y = gamma * f(x) + beta`` written out; a list of node assignments when the inline form is too long."""
    if fmt == "latex":
        terms = _expand(plan, _latex, _INPUT_LATEX)
        body = terms[plan.output][0]
        if len(body) <= MAX_INLINE_CHARS:
            return rf"y = \gamma \left({body}\right) + \beta"
        names = {i: (n, 5) for i, n in enumerate(_INPUT_LATEX)}
        names.update({s.index: (f"n_{{{s.index}}}", 5) for s in plan.steps})
        lines = [rf"n_{{{s.index}}} &= {_latex(s.op, [names[i] for i in s.inputs])[0]}" for s in plan.steps]
        return (
            "\\begin{aligned}"
            + r" \\ ".join([*lines, rf"y &= \gamma\, n_{{{plan.output}}} + \beta"])
            + r"\end{aligned}"
        )
    terms = _expand(plan, _text, _INPUT_TEXT)
    body = terms[plan.output][0]
    if len(body) <= MAX_INLINE_CHARS:
        return f"y = gamma * ({body}) + beta"
    names = {i: (n, 5) for i, n in enumerate(_INPUT_TEXT)}
    names.update({s.index: (f"n{s.index}", 5) for s in plan.steps})
    lines = [f"n{s.index} = {_text(s.op, [names[i] for i in s.inputs])[0]}" for s in plan.steps]
    return "; ".join([*lines, f"y = gamma * n{plan.output} + beta"])


def graph(plan: Plan) -> dict:
    """Live nodes and edges: {"nodes": [{id, label, op, kind}], "edges": [{source, target, arg}], "output"}."""
    kinds = ("input", "constant", "parameter", "parameter")
    labels = _INPUT_TEXT
    used = {0} | set(plan.used_inputs)
    nodes = [{"id": i, "label": labels[i], "op": labels[i], "kind": kinds[i]} for i in sorted(used)]
    edges = []
    for step in plan.steps:
        kind = "aggregate" if is_aggregate(step.op) else "constant" if step.op == "one" else "elementwise"
        nodes.append({"id": step.index, "label": step.op, "op": step.op, "kind": kind})
        edges.extend({"source": src, "target": step.index, "arg": arg} for arg, src in enumerate(step.inputs))
    affine = plan.steps[-1].index + 1
    nodes.append({"id": affine, "label": "gamma * . + beta", "op": "affine", "kind": "output"})
    edges.append({"source": plan.output, "target": affine, "arg": 0})
    return {"nodes": nodes, "edges": edges, "output": affine}


def graph_json(plan: Plan) -> str:
    """The live graph as compact JSON (``describe(genome, "graph")``)."""
    return json.dumps(graph(plan), separators=(",", ":"))


def graph_dot(plan: Plan) -> str:
    """The live graph as Graphviz DOT: inputs, parameters, aggregates and the output affine drawn apart."""
    drawn = graph(plan)
    lines = ["digraph G {", "rankdir=LR;", 'node [fontname="Helvetica", style=filled, fillcolor="#ffffff"];']
    for node in drawn["nodes"]:
        kind = node["kind"]
        label = str(node["label"]).replace('"', "'")
        lines.append(
            f'n{node["id"]} [label="{label}", shape={_DOT_SHAPES.get(kind, "box")}, '
            f'fillcolor="{_DOT_COLOURS.get(kind, "#ffffff")}"];'
        )
    for edge in drawn["edges"]:
        lines.append(f'n{edge["source"]} -> n{edge["target"]} [label="{edge["arg"]}", fontsize=9];')
    lines.append("}")
    return "\n".join(lines)
