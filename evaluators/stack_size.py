"""How many candidates to train as one stacked model on a proxy, from its size and the device.

On a CPU a stack pays off while a step is mostly per-op overhead: the quickstart's 64-wide MLPs (12,800
activation values per batch of 100) stack well, while its 1-D CNN (about 224,000) is compute- and memory-bound
already, gains less, and stacked rounds differently from one at a time (BENCHMARKS.md, "Batched training"). So a
CPU stack holds about ``CPU_STACK_VALUES`` activation values per step and thread. On a GPU these proxies are far
too small to fill the device, so every proxy stacks, as many members as a share of the free memory holds.
"""

from __future__ import annotations

import torch
from torch import nn

from evaluators.archs import candidate_slots
from evaluators.config import ProxyConfig
from evaluators.registry import Dataset
from evaluators.stacked import NotStackable, StackedModel
from evaluators.training import build_model, seeded
from spaces import Space

CPU_STACK_VALUES = 2**18  # activation values per step and thread that a CPU stack stays within
MAX_CPU_STACK = 16
CPU_JOBS_PER_BATCH = 8  # auto on a CPU: a batch of 8 quickstart candidates is about a minute of CPU time
GPU_MEMORY_SHARE = 0.5  # of the memory free when the worker starts
MAX_GPU_STACK = 64  # a batch of more proposals than an evolving population holds learns little from them
BYTES_PER_VALUE = 4 * 8  # float32, and about eight saved tensors per activation value for the backward pass


def slot_values(model: nn.Module, sample: torch.Tensor) -> int:
    """Activation values the candidate slots produce for one input sample (what a step keeps for backward)."""
    sizes: list[int] = []
    slots = candidate_slots(model)
    hooks = [slot.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel())) for slot in slots]
    try:
        with torch.no_grad():
            model.eval()(sample)
    finally:
        for hook in hooks:
            hook.remove()
    return sum(sizes)


def auto_stack_size(
    space: Space, dataset: Dataset, proxy: ProxyConfig, device: torch.device, threads: int
) -> int:
    """The stack size for ``candidates_per_batch: auto`` on this proxy; 1 where the proxy does not stack."""
    seeds = space.seeds()
    if not seeds:
        return 1
    try:
        with seeded(0, device):
            model = build_model(space, next(iter(seeds.values())), dataset, proxy, device)
        StackedModel([model, model])
    except (NotStackable, ValueError, TypeError):
        return 1
    per_member = proxy.batch_size * max(1, slot_values(model, dataset.x_val[:1]))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        params = sum(p.numel() for p in model.parameters())
        member_bytes = BYTES_PER_VALUE * per_member + 16 * params  # + weights, gradients and Adam's two moments
        return max(1, min(MAX_GPU_STACK, int(GPU_MEMORY_SHARE * free // member_bytes)))
    return max(1, min(MAX_CPU_STACK, CPU_STACK_VALUES * threads // per_member))


def jobs_per_batch(stack_sizes: list[int], device: torch.device) -> int:
    """How many jobs a worker takes at once under ``auto``: enough to fill its largest stack (on a CPU at most
    ``CPU_JOBS_PER_BATCH``, so a batch stays well inside a study's minutes); 1 when nothing stacks."""
    largest = max(stack_sizes, default=1)
    return largest if device.type == "cuda" else min(largest, CPU_JOBS_PER_BATCH)
