"""``to_source``: an expression tree as a standalone module that imports only torch.

Each node is written as one fused torch expression from its op's source template, in the same calls and order as
the op's callable, so the export matches ``build`` bit for bit; an argument a template uses several times is bound
to a local first. Both go through ``lower`` first. The docstring shows the formula simplified for reading
(``simplify``); the code computes the real tree.
"""

from __future__ import annotations

import keyword
import math
import re

from spaces.activation.lowering import lower
from spaces.activation.ops import EPS, OPS
from spaces.activation.text import display_formula, display_scalars, number_text, short_number_text
from spaces.activation.tree import Node, Path, get, param_slots, walk
from spaces.base import Genome

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
        self.names = {slot: f"{slot[1]}_{index}" for index, slot in enumerate(param_slots(expr))}
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
            return f"torch.full_like(x, {number_text(node['value'])})", True
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


_GUARDED_OPS = ("log", "sqrt", "reciprocal", "div", "pow")  # the ops that add EPS to stay off their poles


def module_docstring(expr: Node, class_name: str) -> str:
    """What the exported module computes, for reading: the simplified formula and what its braces mean."""
    lines = [f"{class_name}: an activation function found by LayerForge.", "", f"f(x) = {display_formula(expr)}"]
    shown = display_scalars(expr)
    if shown:
        example = short_number_text(shown[0][1])
        names = ", ".join(f"{name} = {value!r}" for name, value in shown)
        lines += [
            "",
            "A number in braces is a learnable scalar (a torch.nn.Parameter) shown at its initial value:",
            f"{{{example}}} starts at {example} and trains with the model. Left to right: {names}.",
        ]
    unused = sorted({name for name, _ in _all_scalars(expr)} - {name for name, _ in shown})
    if unused:
        lines.append(f"Parameters that do not reach the output (inside zero(...) or one(...)): {', '.join(unused)}.")
    guarded = sorted({node["op"] for _, node in walk(expr)} & set(_GUARDED_OPS))
    if guarded:
        lines.append(f"Guarded against their poles with eps = {EPS!r} (see forward): {', '.join(guarded)}.")
    return '"""' + "\n".join(lines).replace("\\", "\\\\") + '\n"""'


def _all_scalars(expr: Node) -> list[tuple[str, float]]:
    return [(f"{key}_{index}", float(get(expr, path)[key])) for index, (path, key) in enumerate(param_slots(expr))]


def to_source(genome: Genome, class_name: str) -> str:
    """The module source of a valid genome; it computes the real tree (lowered), the docstring shows it simplified."""
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise ValueError(f"class_name must be a Python identifier, got {class_name!r}")
    expr = lower(genome["expr"])
    writer = _SourceWriter(expr)
    result, _ = writer.render(expr)
    init = [f"        self.{name} = torch.nn.Parameter(torch.tensor({value!r}))" for name, value in _all_scalars(expr)]
    body = [f"        {line}" for line in writer.lines] + [f"        return {result}"]
    return "\n".join(
        [
            module_docstring(genome["expr"], class_name),
            "",
            "import torch",
            "",
            "",
            f"class {class_name}(torch.nn.Module):",
            f'    """f(x) = {display_formula(genome["expr"])}"""',
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
