"""K proxy models of one architecture as one stacked model, each member computing on its own inputs.

A small proxy (the quickstart's 64-wide MLPs) spends most of a step on per-op overhead; stacking K members turns
K small matrix products into one batched product (``torch.baddbmm``) and K convolutions into one grouped
convolution, so the overhead is paid once per step instead of K times. Each member's candidate layer (its own
module, with its own learnable scalars) is applied to that member's slice, so members never mix: a NaN in one
stays in its slice. The products are bit for bit each member's own (``_BatchedLinear``); the grouped convolution
rounds differently in float32.

The stacked model is built from the members' ordinary models (``nn.Sequential`` of Flatten, Unflatten, Linear,
Conv1d, MaxPool1d and candidate slots: the ``mlp`` and ``cnn1d`` proxies) and writes its weights back into them
after training, so scoring, diagnostics and latency run on each member's own model, as one at a time.

Two layouts: "members" is (K, batch, ...) and feeds ``baddbmm``; "channels" is (batch, K * channels, length),
member k owning channel block k, and feeds the grouped convolution and pooling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from evaluators.archs import CandidateSlot

MEMBERS, CHANNELS = "members", "channels"


class NotStackable(ValueError):
    """The members' models hold a layer the stacked model has no batched form of; train them one at a time."""


class _BatchedLinear(torch.autograd.Function):
    """x (K, B, in) @ w (K, out, in)^T + b (K, 1, out), with each gradient computed by the same product as
    ``nn.Linear``'s (``g @ w``, ``g^T @ x``), one member per batch entry: every member's numbers are bit for bit
    those of its own Linear (autograd's own ``baddbmm`` gradient multiplies in another order, which rounds
    differently for narrow outputs such as a 10-class head)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias, x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x), grad.sum(dim=1, keepdim=True)


class StackedLinear(nn.Module):
    """K ``nn.Linear`` as one (K, out, in) weight: (K, batch, in) -> (K, batch, out)."""

    layout = MEMBERS

    def __init__(self, members: list[nn.Linear]):
        super().__init__()
        if any(m.bias is None for m in members):
            raise NotStackable("a Linear without bias")
        self.members = members  # a plain list: the members' modules are not parameters of the stack
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in members]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in members]).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BatchedLinear.apply(x, self.weight, self.bias)

    @torch.no_grad()
    def write_back(self) -> None:
        for k, member in enumerate(self.members):
            member.weight.copy_(self.weight[k])
            member.bias.copy_(self.bias[k, 0])


class StackedConv1d(nn.Module):
    """K ``nn.Conv1d`` as one grouped convolution (groups = K) on the channels layout."""

    layout = CHANNELS

    def __init__(self, members: list[nn.Conv1d]):
        super().__init__()
        first = members[0]
        if any(m.bias is None or m.groups != 1 or m.padding_mode != "zeros" for m in members):
            raise NotStackable("a Conv1d with groups, no bias or non-zero padding")
        self.members = members
        self.options = {"stride": first.stride, "padding": first.padding, "dilation": first.dilation}
        self.weight = nn.Parameter(torch.cat([m.weight.detach() for m in members]).contiguous())
        self.bias = nn.Parameter(torch.cat([m.bias.detach() for m in members]).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight, self.bias, groups=len(self.members), **self.options)

    @torch.no_grad()
    def write_back(self) -> None:
        for member, weight, bias in zip(
            self.members, self.weight.chunk(len(self.members)), self.bias.chunk(len(self.members)), strict=True
        ):
            member.weight.copy_(weight)
            member.bias.copy_(bias)


class StackedSlot(nn.Module):
    """Each member's own candidate layer on its own slice; works in either layout."""

    def __init__(self, members: list[CandidateSlot], layout: str):
        super().__init__()
        self.layers = nn.ModuleList(slot.layer for slot in members)  # the members' modules, shared, not copied
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == MEMBERS:
            return torch.stack([layer(part) for layer, part in zip(self.layers, x.unbind(0), strict=True)])
        parts = x.chunk(len(self.layers), dim=1)
        return torch.cat([layer(part) for layer, part in zip(self.layers, parts, strict=True)], dim=1)


class _PairMax(nn.Module):
    """``MaxPool1d(2)``, exactly (the first of equal maxima takes the gradient, NaN wins), as the max over pairs:
    CPU's max_pool kernel costs several times more on these small maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = x.shape[-1] // 2
        return x[..., : 2 * pairs].unflatten(-1, (pairs, 2)).max(dim=-1).values


def _pairwise(pool: nn.MaxPool1d) -> bool:
    size, stride = _one(pool.kernel_size), _one(pool.stride)
    plain = _one(pool.padding) == 0 and _one(pool.dilation) == 1 and not pool.ceil_mode and not pool.return_indices
    return size == 2 and stride == 2 and plain


def _one(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else value


class _ToChannels(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (K, B, C, L) -> (B, K*C, L)
        return x.transpose(0, 1).flatten(1, 2)


class _ToMembers(nn.Module):
    def __init__(self, count: int):
        super().__init__()
        self.count = count

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, K*C, ...) -> (K, B, C, ...)
        return x.unflatten(1, (self.count, -1)).transpose(0, 1)


class _PerMember(nn.Module):
    """A shape op of the members' models (Flatten, Unflatten) shifted one dim right, past the member dim."""

    def __init__(self, module: nn.Module):
        super().__init__()
        if isinstance(module, nn.Flatten):
            self.module: nn.Module = nn.Flatten(_shifted(module.start_dim), _shifted(module.end_dim))
        else:
            self.module = nn.Unflatten(_shifted(module.dim), module.unflattened_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _shifted(dim: int) -> int:
    if dim == 0:
        raise NotStackable("a shape op on the batch dimension")
    return dim + 1 if dim > 0 else dim


class StackedModel(nn.Module):
    """K models of one ``nn.Sequential`` architecture: input (K, batch, ...) -> output (K, batch, outputs)."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not all(isinstance(m, nn.Sequential) for m in models):
            raise NotStackable("only nn.Sequential proxy models stack")
        count = len(models)
        layers: list[nn.Module] = []
        layout = MEMBERS
        for position, first in enumerate(models[0]):
            group = [model[position] for model in models]
            if any(type(m) is not type(first) for m in group):
                raise NotStackable(f"layer {position} differs between members")
            if isinstance(first, CandidateSlot):
                layers.append(StackedSlot(group, layout))
                continue
            stacked, wanted = _stacked_layer(first, group)
            if wanted != layout:
                layers.append(_ToChannels() if wanted == CHANNELS else _ToMembers(count))
                layout = wanted
            layers.append(stacked)
        if layout != MEMBERS:
            raise NotStackable("the model does not end in a Linear head")
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def write_back(self) -> None:
        """Copy the trained weights into the members' own models (their candidate layers are shared already)."""
        for layer in self.layers:
            if isinstance(layer, StackedLinear | StackedConv1d):
                layer.write_back()


def _stacked_layer(first: nn.Module, group: list[nn.Module]) -> tuple[nn.Module, str]:
    """The batched form of one layer and the layout it computes in."""
    if isinstance(first, nn.Linear):
        return StackedLinear(group), MEMBERS
    if isinstance(first, nn.Conv1d):
        return StackedConv1d(group), CHANNELS
    if isinstance(first, nn.MaxPool1d) and _pairwise(first):
        return _PairMax(), CHANNELS
    if isinstance(first, nn.MaxPool1d | nn.AvgPool1d):
        return first, CHANNELS
    if isinstance(first, nn.Flatten | nn.Unflatten):
        return _PerMember(first), MEMBERS
    raise NotStackable(f"no batched form of {type(first).__name__}")
