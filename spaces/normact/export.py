"""``to_source``: a genome unrolled into a standalone, straight-line torch module.

The forward is one assignment per computed node (single-use element-wise nodes are inlined into their
consumer), with the shared helpers of ``kernels`` copied verbatim, so the export computes exactly what the
platform layer computes and is friendly to ``torch.compile`` and ``torch.jit.script``.
"""

from __future__ import annotations

import inspect
import json
import keyword
from collections import Counter

from spaces.base import Genome, GenomeError
from spaces.normact import kernels
from spaces.normact.genome import Plan, Step
from spaces.normact.module import running_buffer_name
from spaces.normact.ops import AGGREGATES, DIV_TEMPLATES, ELEMENTWISE, RUNNING_BUFFER

_INPUT_VARIABLES = ("x", "zero", "v0", "v1")


def _inlined(plan: Plan) -> set[int]:
    """Element-wise nodes read once, by an element-wise consumer that names its operand once (or the affine)."""
    uses = Counter(i for step in plan.steps for i in step.inputs)
    uses[plan.output] += 1
    consumer = {i: step for step in plan.steps for i in step.inputs}
    inlined = set()
    for step in plan.steps:
        if step.op not in ELEMENTWISE or uses[step.index] != 1:
            continue
        reader = consumer.get(step.index)
        if reader is None or (reader.op in ELEMENTWISE and not ELEMENTWISE[reader.op].repeats_operand):
            inlined.add(step.index)
    return inlined


def _template(step: Step) -> str:
    return DIV_TEMPLATES[step.safe_div] if step.op == "div" else ELEMENTWISE[step.op].template


def _aggregate_lines(step: Step, operand: str, plan: Plan) -> list[str]:
    op = AGGREGATES[step.op]
    name = f"n{step.index}"
    moment = f'"{op.moment}"'
    if op.region == "group":
        lines = [f"{name} = group_moment({operand}, {moment}, self.groups, self.num_channels, self.layout)"]
    elif op.region != "batch":
        lines = [f"{name} = moment({operand}, {moment}, {op.region}_dims)"]
    else:
        buffer = f"self.{running_buffer_name(step)}"
        factor = "unbiased_factor(x, self.num_channels)" if op.moment == "var" else "1.0"
        lines = [
            "if self.training:",
            f"    {name} = moment({operand}, {moment}, batch_dims)",
            f"    update_running({buffer}, {name}, self.momentum, {factor})",
            "else:",
            f"    {name} = {buffer}.view(shape)",
        ]
    if op.stat in ("std", "rms"):
        lines.append(f"{name} = torch.sqrt({name} + {plan.constants.eps!r}).to(x.dtype)")
    else:
        lines.append(f"{name} = {name}.to(x.dtype)")
    return lines


def _forward_lines(plan: Plan) -> tuple[list[str], set[str]]:
    """The forward body and the kernel helpers it calls."""
    lines = [
        "check_input(x, self.num_channels, self.layout)",
        "shape = channel_shape(self.layout, x.dim(), self.num_channels)",
    ]
    helpers = {"check_input", "channel_shape"}
    if 1 in plan.used_inputs:
        lines.append("zero = x.new_zeros([1 for _ in range(x.dim())])")
    for index in (2, 3):
        if index in plan.used_inputs:
            lines.append(f"{_INPUT_VARIABLES[index]} = self.{_INPUT_VARIABLES[index]}.view(shape)")
    regions = sorted({AGGREGATES[s.op].region for s in plan.steps if s.op in AGGREGATES} - {"group"})
    for region in regions:
        lines.append(f'{region}_dims = region_dims("{region}", self.layout, x.dim())')
        helpers.add("region_dims")

    inlined = _inlined(plan)
    expressions: dict[int, str] = dict(enumerate(_INPUT_VARIABLES))
    constants = {"safe_eps": repr(plan.constants.safe_eps), "exp_max": repr(plan.constants.exp_max)}
    steps = plan.steps[:-1] if plan.folded_output else plan.steps
    for step in steps:
        operands = [expressions[i] for i in step.inputs]
        if step.op in AGGREGATES:
            op = AGGREGATES[step.op]
            helpers.add("group_moment" if op.region == "group" else "moment")
            if op.region == "batch":
                helpers.update({"update_running", "unbiased_factor"} if op.moment == "var" else {"update_running"})
            lines.extend(_aggregate_lines(step, operands[0], plan))
            expressions[step.index] = f"n{step.index}"
            continue
        if step.safe_div:
            helpers.add("away_from_zero")
        text = _template(step).format(**dict(zip("ab", operands, strict=False)), **constants)
        if step.index in inlined:
            expressions[step.index] = text
        else:
            lines.append(f"n{step.index} = {text.removeprefix('(').removesuffix(')') if _outer_parens(text) else text}")
            expressions[step.index] = f"n{step.index}"
    if plan.folded_output:
        last = plan.steps[-1]
        full, small = (expressions[i] for i in last.inputs)
        if last.safe_div:
            helpers.add("away_from_zero")
        scale = _template(last).format(a="self.weight.view(shape)", b=small, **constants)
        lines.append(f"return torch.addcmul(self.bias.view(shape), {full}, {scale})")
    else:
        result = f"torch.addcmul(self.bias.view(shape), {expressions[plan.output]}, self.weight.view(shape))"
        lines.append(f"return {result}" if plan.output_elementwise else f"return {result}.expand_as(x)")
    if "group_moment" in helpers:
        helpers.add("moment")
    return lines, helpers


def _outer_parens(text: str) -> bool:
    """Whether the whole expression is wrapped in one pair of parentheses (dropped on assignment)."""
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for position, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if depth == 0 and position < len(text) - 1:
            return False
    return True


# Helpers in the order they are written out (a helper only calls ones above it).
_HELPER_ORDER = (
    "check_input",
    "channel_shape",
    "region_dims",
    "moment",
    "group_moment",
    "unbiased_factor",
    "update_running",
    "away_from_zero",
    "fit_groups",
)


def to_source(plan: Plan, genome: Genome, class_name: str, formula: str) -> str:
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise GenomeError(f"class name {class_name!r} is not a valid Python identifier")
    body, helpers = _forward_lines(plan)
    init = [
        "super().__init__()",
        'if layout not in ("nchw", "nlc"):',
        "    raise ValueError(\"layout must be 'nchw' or 'nlc', got \" + layout)",
        "self.num_channels = num_channels",
        "self.layout = layout",
    ]
    if "group_moment" in helpers:
        helpers.add("fit_groups")
        init.append(f"self.groups = fit_groups({plan.groups}, num_channels)")
    if plan.batch_steps:
        init.append(f"self.momentum = {plan.momentum!r}")
    init += [
        "self.weight = nn.Parameter(torch.ones(num_channels))",
        "self.bias = nn.Parameter(torch.zeros(num_channels))",
    ]
    if 2 in plan.used_inputs:
        init.append("self.v0 = nn.Parameter(torch.zeros(num_channels))")
    if 3 in plan.used_inputs:
        init.append("self.v1 = nn.Parameter(torch.ones(num_channels))")
    for step in plan.batch_steps:
        initial = RUNNING_BUFFER[AGGREGATES[step.op].moment][1]
        init.append(f'self.register_buffer("{running_buffer_name(step)}", torch.full((num_channels,), {initial!r}))')

    helper_source = "\n\n\n".join(
        inspect.getsource(getattr(kernels, name)).rstrip() for name in _HELPER_ORDER if name in helpers
    )
    genome_json = json.dumps(genome, sort_keys=True)
    uses_gelu = any(step.op == "gelu" for step in plan.steps)
    imports = (
        "import torch\nimport torch.nn.functional as F\nfrom torch import nn"
        if uses_gelu
        else "import torch\nfrom torch import nn"
    )
    indent = "\n" + " " * 8
    return f'''"""{class_name}: a normalization-activation layer found by LayerForge (space "normact").

    {formula}

Standalone (imports only torch). Input layouts: "nchw" (N, C, *spatial) and "nlc" (N, L, C) tokens.
Parameters weight/bias are gamma/beta; v0/v1 are the graph's per-channel vectors; in training mode batch
statistics (if any) update the running_* buffers, which eval mode uses.

Genome: {genome_json}
"""

{imports}


{helper_source}


class {class_name}(nn.Module):
    def __init__(self, num_channels: int, layout: str = "nchw"):
        {indent.join(init)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        {indent.join(body)}
'''
