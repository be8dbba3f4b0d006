"""Tensor helpers shared by the platform layer and the exported source.

Every function here imports only torch and is TorchScript-compatible: ``to_source`` copies their source
verbatim into each exported module, so the platform layer and the export run the very same arithmetic.
Layouts: "nchw" is (N, C, *spatial), spatial possibly empty; "nlc" is (N, L, C) tokens, where batch and
instance reduce over positions (like BatchNorm1d / InstanceNorm1d) and group and layer reduce per token
(like nn.LayerNorm).
"""

import torch


def check_input(x: torch.Tensor, channels: int, layout: str):
    if layout == "nlc":
        if x.dim() != 3 or x.shape[2] != channels:
            raise ValueError("expected (N, L, C) input with C=" + str(channels) + ", got " + str(x.shape))
    elif x.dim() < 2 or x.shape[1] != channels:
        raise ValueError("expected (N, C, *spatial) input with C=" + str(channels) + ", got " + str(x.shape))


def channel_shape(layout: str, ndim: int, channels: int) -> list[int]:
    if layout == "nlc":
        return [1, 1, channels]
    return [1, channels] + [1 for _ in range(ndim - 2)]


def region_dims(region: str, layout: str, ndim: int) -> list[int]:
    if layout == "nlc":
        if region == "batch":
            return [0, 1]
        if region == "instance":
            return [1]
        return [2]
    if region == "batch":
        return [0] + [d for d in range(2, ndim)]
    if region == "instance":
        return [d for d in range(2, ndim)]
    return [d for d in range(1, ndim)]


def moment(t: torch.Tensor, kind: str, dims: list[int]) -> torch.Tensor:
    """Mean, biased variance or mean square over ``dims`` in float32 (kept dims)."""
    t = t.float()
    if len(dims) == 0:  # a region of one value: instance statistics of (N, C) features
        if kind == "mean":
            return t
        if kind == "var":
            return torch.zeros_like(t)
        return t.square()
    if kind == "mean":
        return t.mean(dims, keepdim=True)
    if kind == "var":
        return t.var(dims, unbiased=False, keepdim=True)
    return t.square().mean(dims, keepdim=True)


def group_moment(t: torch.Tensor, kind: str, groups: int, channels: int, layout: str) -> torch.Tensor:
    """A moment over channel groups, returned per channel (a small tensor that broadcasts back)."""
    if layout == "nlc":
        if t.shape[2] != channels:
            t = t.expand(t.shape[0], t.shape[1], channels)
        n, length = t.shape[0], t.shape[1]
        stat = moment(t.reshape(n, length, groups, channels // groups), kind, [3])
        return stat.expand(n, length, groups, channels // groups).reshape(n, length, channels)
    if t.shape[1] != channels:
        t = t.expand([t.shape[0], channels] + list(t.shape[2:]))
    n = t.shape[0]
    stat = moment(t.reshape(n, groups, -1), kind, [2])
    return stat.expand(n, groups, channels // groups).reshape([n, channels] + [1 for _ in range(t.dim() - 2)])


def unbiased_factor(x: torch.Tensor, channels: int) -> float:
    """n / (n - 1) for the running-variance update, n the values per channel (1 when n is 1)."""
    n = x.numel() // channels
    return n / max(n - 1, 1)


def update_running(buffer: torch.Tensor, stat: torch.Tensor, momentum: float, factor: float):
    with torch.no_grad():
        buffer.mul_(1.0 - momentum).add_(stat.detach().reshape(-1), alpha=momentum * factor)


def fit_groups(groups: int, channels: int) -> int:
    """The largest group count <= ``groups`` that divides ``channels`` (EvoNorm-S0: 32, reduced until it divides C)."""
    g = max(1, min(groups, channels))
    while channels % g != 0:
        g -= 1
    return g


def away_from_zero(t: torch.Tensor, floor: float) -> torch.Tensor:
    """``t`` with its magnitude raised to at least ``floor`` (sign kept; 0 becomes +floor): a safe divisor."""
    return torch.copysign(t.abs().clamp_min(floor), t)
