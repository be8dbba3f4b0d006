"""The platform norm-act layer: runs a genome's live graph step by step (the export unrolls it instead)."""

from __future__ import annotations

import torch
from torch import nn

from spaces.normact.genome import Plan, Step
from spaces.normact.kernels import (
    channel_shape,
    check_input,
    fit_groups,
    group_moment,
    moment,
    region_dims,
    unbiased_factor,
    update_running,
)
from spaces.normact.ops import AGGREGATES, ELEMENTWISE, RUNNING_BUFFER, divide

LAYOUTS = ("nchw", "nlc")


def running_buffer_name(step: Step) -> str:
    return f"{RUNNING_BUFFER[AGGREGATES[step.op].moment][0]}_{step.index}"


class NormActLayer(nn.Module):
    """A searched normalization-activation layer ``gamma * graph(x) + beta``.

    Parameters: ``weight`` (gamma), ``bias`` (beta), and ``v0`` / ``v1`` where the graph reads them.
    In mode B every batch statistic keeps a running buffer (``running_mean_<node>``, ``running_var_<node>``
    with the unbiased n/(n-1) update, ``running_sq_<node>``) that eval mode uses instead of the batch.
    """

    def __init__(self, plan: Plan, channels: int, layout: str = "nchw", formula: str = ""):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        self.plan = plan
        self.channels = channels
        self.layout = layout
        self.groups = fit_groups(plan.groups, channels)
        self.formula = formula
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.v0 = nn.Parameter(torch.zeros(channels)) if 2 in plan.used_inputs else None
        self.v1 = nn.Parameter(torch.ones(channels)) if 3 in plan.used_inputs else None
        for step in plan.batch_steps:
            init = RUNNING_BUFFER[AGGREGATES[step.op].moment][1]
            self.register_buffer(running_buffer_name(step), torch.full((channels,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, self.layout)
        plan = self.plan
        shape = channel_shape(self.layout, x.dim(), self.channels)
        values: dict[int, torch.Tensor] = {0: x}
        if 1 in plan.used_inputs:
            values[1] = x.new_zeros([1] * x.dim())
        if self.v0 is not None:
            values[2] = self.v0.view(shape)
        if self.v1 is not None:
            values[3] = self.v1.view(shape)
        steps = plan.steps[:-1] if plan.folded_output else plan.steps
        for step in steps:
            operands = [values[i] for i in step.inputs]
            if step.op == "div":
                values[step.index] = divide(plan.constants, *operands, safe=step.safe_div)
            elif step.op in ELEMENTWISE:  # an op without inputs (the constant 1) reads x's rank, dtype, device
                values[step.index] = ELEMENTWISE[step.op].fn(plan.constants, *(operands if step.inputs else [x]))
            else:
                values[step.index] = self._aggregate(step, operands[0], x, shape)
        if plan.folded_output:
            last = plan.steps[-1]
            full, small = values[last.inputs[0]], values[last.inputs[1]]
            weight = self.weight.view(shape)
            if last.op == "mul":
                scale = weight * small
            else:
                scale = divide(plan.constants, weight, small, safe=last.safe_div)
            return torch.addcmul(self.bias.view(shape), full, scale)
        y = torch.addcmul(self.bias.view(shape), values[plan.output], self.weight.view(shape))
        return y if plan.output_elementwise else y.expand_as(x)

    def _aggregate(self, step: Step, t: torch.Tensor, x: torch.Tensor, shape: list[int]) -> torch.Tensor:
        op = AGGREGATES[step.op]
        if op.region == "group":
            stat = group_moment(t, op.moment, self.groups, self.channels, self.layout)
        elif op.region != "batch":
            stat = moment(t, op.moment, region_dims(op.region, self.layout, x.dim()))
        elif self.training:
            stat = moment(t, op.moment, region_dims("batch", self.layout, x.dim()))
            factor = unbiased_factor(x, self.channels) if op.moment == "var" else 1.0
            update_running(getattr(self, running_buffer_name(step)), stat, self.plan.momentum, factor)
        else:
            stat = getattr(self, running_buffer_name(step)).view(shape)
        if op.stat in ("std", "rms"):
            stat = torch.sqrt(stat + self.plan.constants.eps)
        return stat.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.channels}, layout={self.layout!r}, groups={self.groups}, formula={self.formula!r}"
