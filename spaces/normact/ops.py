"""The op vocabulary of the norm-act graph: element-wise primitives and aggregates (EvoNorm, Liu et al. 2020).

Each element-wise op has one Python expression template (used by the export) and one callable (used by the
platform layer) written with the same torch calls in the same order, so both compute identical values.
Safe numerics are fixed here and parametrised by the genome's constants: ``exp`` clamps its input at
``exp_max``, ``slog``/``ssqrt`` add ``safe_eps`` inside the log / sqrt, and a division whose divisor is not
provably at least ``safe_eps`` divides by ``away_from_zero(divisor, safe_eps)``.

``one`` takes no input: it is the constant 1 (EvoNorm-B1's ``x + 1``), a node any later node may read, shaped
like the ``0`` initial node (all ones of x's rank); the platform layer hands it x for its rank, dtype and device.
It is in ``NODE_OPS`` (what a genome may hold), not in ``OPS`` (what a space draws by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spaces.normact.kernels import away_from_zero

REGIONS = ("batch", "instance", "group", "layer")
STATS = ("mean", "var", "std", "rms")
# The moment each statistic is computed from; std and rms are sqrt(moment + eps).
STAT_MOMENT = {"mean": "mean", "var": "var", "std": "var", "rms": "sq"}
# Running buffer per moment (B mode, batch region): name prefix and initial value.
RUNNING_BUFFER = {"mean": ("running_mean", 0.0), "var": ("running_var", 1.0), "sq": ("running_sq", 1.0)}

INPUT_NAMES = ("x", "zero", "v0", "v1")
NUM_INPUTS = len(INPUT_NAMES)


@dataclass(frozen=True)
class Constants:
    """Numeric constants of a genome; they are part of its definition so the export matches exactly."""

    eps: float
    safe_eps: float
    exp_max: float


@dataclass(frozen=True)
class ElementwiseOp:
    name: str
    arity: int  # 0: a constant, computed from x's rank alone
    template: str  # Python source with {a}, {b} operands and {safe_eps}, {exp_max} constants
    fn: Callable[..., torch.Tensor]  # fn(constants, *operands)
    commutative: bool = False
    repeats_operand: bool = False  # the template names an operand twice: the export keeps it in a variable


@dataclass(frozen=True)
class AggregateOp:
    name: str
    region: str
    stat: str
    arity: int = 1

    @property
    def moment(self) -> str:
        return STAT_MOMENT[self.stat]


ELEMENTWISE: dict[str, ElementwiseOp] = {
    op.name: op
    for op in (
        ElementwiseOp("add", 2, "({a} + {b})", lambda k, a, b: a + b, commutative=True),
        ElementwiseOp("mul", 2, "({a} * {b})", lambda k, a, b: a * b, commutative=True),
        # The division template is chosen per node (plain or safe), see DIV_TEMPLATES.
        ElementwiseOp("div", 2, "", lambda k, a, b: a / b),
        ElementwiseOp("max", 2, "torch.maximum({a}, {b})", lambda k, a, b: torch.maximum(a, b), commutative=True),
        ElementwiseOp("one", 0, "x.new_ones([1 for _ in range(x.dim())])", lambda k, x: x.new_ones([1] * x.dim())),
        ElementwiseOp("neg", 1, "(-{a})", lambda k, a: -a),
        ElementwiseOp("abs", 1, "torch.abs({a})", lambda k, a: torch.abs(a)),
        ElementwiseOp("square", 1, "torch.square({a})", lambda k, a: torch.square(a)),
        ElementwiseOp(
            "exp",
            1,
            "torch.exp(torch.clamp({a}, max={exp_max}))",
            lambda k, a: torch.exp(torch.clamp(a, max=k.exp_max)),
        ),
        ElementwiseOp("sigmoid", 1, "torch.sigmoid({a})", lambda k, a: torch.sigmoid(a)),
        ElementwiseOp("tanh", 1, "torch.tanh({a})", lambda k, a: torch.tanh(a)),
        ElementwiseOp("gelu", 1, "F.gelu({a})", lambda k, a: F.gelu(a)),
        ElementwiseOp(
            "slog",
            1,
            "(torch.sign({a}) * torch.log(torch.abs({a}) + {safe_eps}))",
            lambda k, a: torch.sign(a) * torch.log(torch.abs(a) + k.safe_eps),
            repeats_operand=True,
        ),
        ElementwiseOp(
            "ssqrt",
            1,
            "(torch.sign({a}) * torch.sqrt(torch.abs({a}) + {safe_eps}))",
            lambda k, a: torch.sign(a) * torch.sqrt(torch.abs(a) + k.safe_eps),
            repeats_operand=True,
        ),
    )
}

DIV_TEMPLATES = {False: "({a} / {b})", True: "({a} / away_from_zero({b}, {safe_eps}))"}


def divide(constants: Constants, a: torch.Tensor, b: torch.Tensor, safe: bool) -> torch.Tensor:
    return a / away_from_zero(b, constants.safe_eps) if safe else a / b


AGGREGATES: dict[str, AggregateOp] = {
    f"{region}_{stat}": AggregateOp(f"{region}_{stat}", region, stat) for region in REGIONS for stat in STATS
}

#: Every op a genome's node may name.
NODE_OPS: dict[str, ElementwiseOp | AggregateOp] = {**ELEMENTWISE, **AGGREGATES}
#: The ops a space draws unless its ``ops`` option says otherwise: EvoNorm's vocabulary, without the constant 1
#: (a space opts in by listing "one"), so a default search draws what it always drew.
OPS: dict[str, ElementwiseOp | AggregateOp] = {name: op for name, op in NODE_OPS.items() if op.arity > 0}
BATCH_OPS = frozenset(name for name, op in AGGREGATES.items() if op.region == "batch")


def is_aggregate(name: str) -> bool:
    return name in AGGREGATES
