"""Norm-act genomes: the whitelist parser, the static analysis both torch back ends share, canonical form, seeds.

Genome (JSON)::

    {"space": "normact", "v": 1, "mode": "B",
     "nodes": [{"op": "batch_std", "in": [0]}, ...], "output": 9,
     "groups": 32, "momentum": 0.1, "eps": 1e-05, "safe_eps": 1e-05, "exp_max": 20.0}

Node indices 0..3 are the initial nodes x, 0, v0 (per channel, init 0) and v1 (per channel, init 1);
``nodes[i]`` is node ``4 + i`` and may only read earlier nodes. ``output`` names the node fed to the
per-channel affine ``gamma * out + beta``. The genome says nothing about the layout or the channel count.
A node ``{"op": "one", "in": []}`` is the constant 1 (added in v1 without renumbering: older genomes read the same).
"""

from __future__ import annotations

import hashlib
import math
import reprlib
from dataclasses import dataclass
from typing import Any

from spaces.base import Genome, GenomeError, canonical_json
from spaces.normact.ops import (
    AGGREGATES,
    BATCH_OPS,
    ELEMENTWISE,
    INPUT_NAMES,
    NODE_OPS,
    NUM_INPUTS,
    Constants,
)

KIND = "normact"
VERSION = 1
MODES = ("B", "S")
MAX_NODES = 64
MAX_EXP_CLAMP = 80.0  # exp(80) is still finite in float32
FIELDS = ("space", "v", "mode", "nodes", "output", "groups", "momentum", "eps", "safe_eps", "exp_max")


@dataclass(frozen=True)
class Step:
    """One live node: what the layer computes, in order."""

    index: int
    op: str
    inputs: tuple[int, ...]
    safe_div: bool = False  # a division whose divisor is not provably >= safe_eps


@dataclass(frozen=True)
class Plan:
    """The analysed live graph of a valid genome; the platform layer and the export both run from it."""

    mode: str
    steps: tuple[Step, ...]
    output: int
    constants: Constants
    groups: int
    momentum: float
    used_inputs: frozenset[int]  # which of x, 0, v0, v1 the live graph reads
    output_depends_on_x: bool
    output_elementwise: bool  # an element-wise path from x reaches the output (it has x's full shape)
    # An output ``full * small`` or ``full / small`` (small: a per-channel or statistic-shaped node) is folded
    # into the affine, gamma * (full / small) + beta == addcmul(beta, full, gamma / small): one full-size pass less.
    folded_output: bool = False

    @property
    def batch_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.op in BATCH_OPS)


def _finite(value: Any) -> bool:
    """A JSON number that is finite as a float: an integer of hundreds of digits is not (``float()`` overflows)."""
    try:
        return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:
        return False


def _number(genome: Genome, field: str, low: float, high: float) -> float:
    value = genome.get(field)
    if not _finite(value):
        raise GenomeError(f"field {field!r} must be a finite number, got {reprlib.repr(value)}")
    if not low < value <= high:
        raise GenomeError(f"field {field!r} must be in ({low}, {high}], got {value!r}")
    return float(value)


def _index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_genome(genome: Genome) -> None:
    """Whitelist parse; every message names the field or node and says what is allowed."""
    unknown = sorted(set(genome) - set(FIELDS))
    if unknown:
        raise GenomeError(f"unknown genome field(s) {unknown}; allowed fields: {', '.join(FIELDS)}")
    missing = [f for f in FIELDS if f not in genome]
    if missing:
        raise GenomeError(f"genome is missing field(s) {missing}")
    mode = genome["mode"]
    if not isinstance(mode, str) or mode not in MODES:
        raise GenomeError(
            f"mode must be 'B' (batch statistics allowed) or 'S' (sample-based), got {reprlib.repr(mode)}"
        )
    nodes = genome["nodes"]
    if not isinstance(nodes, list) or not 1 <= len(nodes) <= MAX_NODES:
        raise GenomeError(f"'nodes' must be a list of 1 to {MAX_NODES} nodes")
    for offset, node in enumerate(nodes):
        index = NUM_INPUTS + offset
        if not isinstance(node, dict) or set(node) != {"op", "in"}:
            raise GenomeError(
                f"node {index} must be an object with exactly the fields 'op' and 'in', got {reprlib.repr(node)}"
            )
        op, inputs = node["op"], node["in"]
        if not isinstance(op, str) or op not in NODE_OPS:
            raise GenomeError(f"unknown op {reprlib.repr(op)} at node {index}; known ops: {', '.join(NODE_OPS)}")
        if mode == "S" and op in BATCH_OPS:
            raise GenomeError(
                f"node {index} uses the batch statistic {op!r}, which mode 'S' (sample-based) forbids; "
                "use mode 'B' or an instance/group/layer statistic"
            )
        if not isinstance(inputs, list) or len(inputs) != NODE_OPS[op].arity:
            raise GenomeError(f"node {index} ({op}) takes {NODE_OPS[op].arity} input(s), got {reprlib.repr(inputs)}")
        for source in inputs:
            if not _index(source) or not 0 <= source < index:
                raise GenomeError(
                    f"node {index} ({op}) input {reprlib.repr(source)} is not an earlier node; "
                    f"allowed indices are 0..{index - 1}"
                )
    output = genome["output"]
    last = NUM_INPUTS + len(nodes) - 1
    if not _index(output) or not NUM_INPUTS <= output <= last:
        raise GenomeError(
            f"'output' must be an intermediate node index {NUM_INPUTS}..{last}, got {reprlib.repr(output)}"
        )
    groups = genome["groups"]
    if not _index(groups) or not 1 <= groups <= 4096:
        raise GenomeError(f"'groups' must be an integer in 1..4096, got {reprlib.repr(groups)}")
    _number(genome, "momentum", 0.0, 1.0)
    _number(genome, "eps", 0.0, 1.0)
    _number(genome, "safe_eps", 0.0, 1.0)
    _number(genome, "exp_max", 0.0, MAX_EXP_CLAMP)


def live_indices(genome: Genome) -> list[int]:
    """Intermediate nodes the output reads, directly or not, in index order."""
    nodes = genome["nodes"]
    live, stack = set(), [genome["output"]]
    while stack:
        index = stack.pop()
        if index >= NUM_INPUTS and index not in live:
            live.add(index)
            stack.extend(nodes[index - NUM_INPUTS]["in"])
    return sorted(live)


def _lower_bound(op: str, bounds: list[float], eps: float) -> float:
    """A sound lower bound of a node's value from its inputs' bounds (-inf when unknown)."""
    if op == "one":
        return 1.0
    a = bounds[0]
    b = bounds[1] if len(bounds) > 1 else 0.0
    if op in AGGREGATES:
        stat = AGGREGATES[op].stat
        if stat == "mean":
            # A batch mean is a running mean (initialised at 0) in eval mode.
            return min(a, 0.0) if AGGREGATES[op].region == "batch" else a
        return 0.0 if stat == "var" else math.sqrt(eps)
    if op == "add":
        return a + b
    if op == "mul":
        return a * b if a >= 0 and b >= 0 else -math.inf
    if op == "div":
        return 0.0 if a >= 0 and b >= 0 else -math.inf
    if op == "max":
        return max(a, b)
    if op in ("abs", "square", "exp", "sigmoid"):
        return 0.0
    if op == "tanh":
        return -1.0
    if op == "ssqrt":
        return 0.0 if a >= 0 else -math.inf
    return -math.inf


def analyse(genome: Genome) -> Plan:
    """The live graph of a valid genome with what both back ends must agree on (safe divisions, shapes)."""
    nodes = genome["nodes"]
    constants = Constants(float(genome["eps"]), float(genome["safe_eps"]), float(genome["exp_max"]))
    bound = {0: -math.inf, 1: 0.0, 2: -math.inf, 3: -math.inf}
    depends = {0: True, 1: False, 2: False, 3: False}
    elementwise = dict(depends)
    steps, used = [], set()
    for index in live_indices(genome):
        op, inputs = nodes[index - NUM_INPUTS]["op"], tuple(nodes[index - NUM_INPUTS]["in"])
        used.update(i for i in inputs if i < NUM_INPUTS)
        bound[index] = _lower_bound(op, [bound[i] for i in inputs], constants.eps)
        depends[index] = any(depends[i] for i in inputs)
        elementwise[index] = op in ELEMENTWISE and any(elementwise[i] for i in inputs)
        safe = op == "div" and bound[inputs[1]] < constants.safe_eps
        steps.append(Step(index, op, inputs, safe))
    output = genome["output"]
    last = steps[-1]
    folded = last.op in ("mul", "div") and elementwise[last.inputs[0]] and not elementwise[last.inputs[1]]
    if last.op == "mul" and not folded and elementwise[last.inputs[1]] and not elementwise[last.inputs[0]]:
        last = Step(last.index, last.op, last.inputs[::-1])  # the full operand first
        steps[-1], folded = last, True
    return Plan(
        mode=genome["mode"],
        steps=tuple(steps),
        output=output,
        constants=constants,
        groups=int(genome["groups"]),
        momentum=float(genome["momentum"]),
        used_inputs=frozenset(used),
        output_depends_on_x=depends[output],
        output_elementwise=elementwise[output],
        folded_output=folded,
    )


def structural_problems(plan: Plan) -> list[str]:
    problems = []
    if not plan.output_depends_on_x:
        problems.append("the output does not depend on x (it is built from constants and parameters only)")
    elif not plan.output_elementwise:
        problems.append(
            "the output is a statistic of x with no element-wise path from x, "
            "so it is constant over every normalized region"
        )
    return problems


def canonical_genome(genome: Genome) -> Genome:
    """The live graph with shared subexpressions merged, commutative inputs ordered, nodes renumbered.

    Nodes are identified by a hash of their expression, so two genomes that compute the same graph in a
    different node order, with different dead nodes or with swapped commutative inputs get one form.
    """
    nodes = genome["nodes"]
    signature: dict[int, str] = {i: name for i, name in enumerate(INPUT_NAMES)}
    for index in live_indices(genome):
        op, inputs = nodes[index - NUM_INPUTS]["op"], nodes[index - NUM_INPUTS]["in"]
        parts = [signature[i] for i in inputs]
        if op in ELEMENTWISE and ELEMENTWISE[op].commutative:
            parts.sort()
        signature[index] = hashlib.sha256("|".join([op, *parts]).encode()).hexdigest()[:24]

    renumbered: dict[str, int] = {name: i for i, name in enumerate(INPUT_NAMES)}
    out_nodes: list[dict[str, Any]] = []

    def emit(index: int) -> int:
        key = signature[index]
        if key not in renumbered:
            op, inputs = nodes[index - NUM_INPUTS]["op"], list(nodes[index - NUM_INPUTS]["in"])
            if op in ELEMENTWISE and ELEMENTWISE[op].commutative:
                inputs.sort(key=lambda i: signature[i])
            new_inputs = [emit(i) for i in inputs]
            renumbered[key] = NUM_INPUTS + len(out_nodes)
            out_nodes.append({"op": op, "in": new_inputs})
        return renumbered[key]

    output = emit(genome["output"])
    canonical = {field: genome[field] for field in FIELDS if field not in ("nodes", "output")}
    canonical.update(nodes=out_nodes, output=output)
    return canonical


def canonical_string(genome: Genome) -> str:
    return canonical_json(canonical_genome(genome))


def make_genome(
    mode: str,
    nodes: list[tuple[str, ...]],
    *,
    groups: int,
    momentum: float,
    eps: float,
    safe_eps: float,
    exp_max: float,
) -> Genome:
    """A genome from ``(op, input, ...)`` tuples; the last node is the output."""
    return {
        "space": KIND,
        "v": VERSION,
        "mode": mode,
        "nodes": [{"op": op, "in": list(inputs)} for op, *inputs in nodes],
        "output": NUM_INPUTS + len(nodes) - 1,
        "groups": groups,
        "momentum": momentum,
        "eps": eps,
        "safe_eps": safe_eps,
        "exp_max": exp_max,
    }


X, ZERO, V0, V1 = range(NUM_INPUTS)


def _normalize_act(region: str, activation: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """(x - mean) / std over ``region``, then v1 * . + v0 (the norm's own affine), then the activation."""
    return [
        (f"{region}_mean", X),  # 4
        ("neg", 4),  # 5
        ("add", X, 5),  # 6
        (f"{region}_std", X),  # 7
        ("div", 6, 7),  # 8
        ("mul", 8, V1),  # 9
        ("add", 9, V0),  # 10
        activation,  # 11
    ]


SEED_GRAPHS: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {
    # name: (modes it is valid in, nodes)
    "bn_relu": (("B",), _normalize_act("batch", ("max", 10, ZERO))),
    "gn_relu": (("B", "S"), _normalize_act("group", ("max", 10, ZERO))),
    "ln_gelu": (("B", "S"), _normalize_act("layer", ("gelu", 10))),
    # x / max(sqrt(var_NHW(x) + eps), v1 * x + sqrt(var_HW(x) + eps))
    "evonorm_b0": (
        ("B",),
        [("batch_std", X), ("mul", X, V1), ("instance_std", X), ("add", 5, 6), ("max", 4, 7), ("div", X, 8)],
    ),
    # x * sigmoid(v1 * x) / sqrt(var_HWC/g(x) + eps)
    "evonorm_s0": (
        ("B", "S"),
        [("mul", X, V1), ("sigmoid", 4), ("mul", X, 5), ("group_std", X), ("div", 6, 7)],
    ),
}

DEFAULT_EPS = 1e-5  # torch's norms, timm's EvoNorm-B1 and -S0
# Seeds whose published layer uses another eps: timm's EvoNorm2dB0 defaults to 1e-3.
SEED_EPS = {"evonorm_b0": 1e-3}
