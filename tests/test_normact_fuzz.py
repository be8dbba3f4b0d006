"""Seeded fuzz of the norm-act space: sampled, mutated and corrupted genomes on random batches.

Every genome must either build and run with finite outputs and gradients in train and eval mode, or be
turned away with a reason (a static problem, which includes validation errors, or a non-finite check);
no other exception may escape.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from spaces import GenomeError
from spaces.normact import NormActSpace
from spaces.normact.genome import make_genome
from spaces.normact.ops import OPS


def _corrupt(genome: dict, rng: np.random.Generator) -> dict:
    """One malformed edit of the kinds a hand-written or damaged genome has."""
    genome = NormActSpace.copy(genome)
    node = genome["nodes"][int(rng.integers(len(genome["nodes"])))]
    kind = int(rng.integers(7))
    if kind == 0:
        node["op"] = "softmax"
    elif kind == 1:
        node["in"] = [len(genome["nodes"]) + 10] * len(node["in"])
    elif kind == 2:
        node["in"] = node["in"] + [0]
    elif kind == 3:
        genome["output"] = "last"
    elif kind == 4:
        genome["eps"] = -1.0
    elif kind == 5:
        genome.pop("groups")
    else:
        genome["mode"], node["op"], node["in"] = "S", "batch_var", [0]
    return genome


def _finite(*tensors: torch.Tensor | None) -> bool:
    return all(t is None or bool(torch.isfinite(t).all()) for t in tensors)


def run_genome(space: NormActSpace, genome: dict, layout: str, rng: np.random.Generator) -> str:
    """Empty when the layer runs finite in train (forward + backward) and eval mode, else why it did not."""
    problems = space.static_problems(genome)
    if problems:
        return problems[0]
    channels = int(rng.choice([4, 6, 8]))
    layer = space.build(genome, channels=channels, layout=layout)
    with torch.no_grad():  # parameters as training may leave them: any sign, up to large magnitudes
        for parameter in layer.parameters():
            parameter.mul_(
                torch.from_numpy(rng.standard_normal(channels).astype(np.float32)) * 10 ** rng.uniform(-2, 4)
            )
    shape = (2, channels, 3, 3) if layout == "nchw" else (2, 3, channels)
    scale = 10 ** rng.uniform(-4, 8)
    x = (torch.from_numpy(rng.standard_normal(shape).astype(np.float32)) * scale).requires_grad_()
    y = layer(x)
    if y.shape != x.shape:
        raise AssertionError(f"output shape {tuple(y.shape)} != input shape {tuple(x.shape)}")
    if not _finite(y):
        return "non-finite output in train mode"
    y.backward(torch.ones_like(y))
    if not _finite(x.grad, *(p.grad for p in layer.parameters())):
        return "non-finite gradient"
    layer.eval()
    with torch.no_grad():
        if not _finite(layer(x)):
            return "non-finite output in eval mode"
    return ""


def fuzz(count: int, seed: int) -> Counter:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    spaces = {mode: NormActSpace(mode=mode, nodes=int(rng.integers(3, 12)), groups=2) for mode in ("B", "S")}
    parents = {mode: space.sample(rng) for mode, space in spaces.items()}
    outcomes: Counter = Counter()
    for i in range(count):
        mode = "B" if i % 2 == 0 else "S"
        layout = "nchw" if i % 4 < 2 else "nlc"
        space = spaces[mode]
        draw = rng.random()
        if draw < 0.3:
            genome = space.sample(rng)
        else:
            genome, _ = space.mutate(parents[mode], rng)
        if draw > 0.9:
            genome = _corrupt(genome, rng)
            with pytest.raises(GenomeError):
                space.validate(genome)
        try:
            reason = run_genome(space, genome, layout, rng)
        except Exception as exc:  # the fuzz's point: report the genome that escaped with an unhandled error
            raise AssertionError(f"genome {i} ({mode}, {layout}) raised {exc!r}: {genome}") from exc
        if not reason and draw <= 0.9:
            parents[mode] = genome  # evolve from working layers, as a search would
        outcomes["ok" if not reason else reason.split(";")[0][:60]] += 1
    return outcomes


def _check(outcomes: Counter, count: int) -> None:
    assert sum(outcomes.values()) == count
    assert outcomes["ok"] > count * 0.3, outcomes
    assert any("does not depend on x" in reason or "statistic of x" in reason for reason in outcomes), outcomes
    assert any("unknown op" in reason for reason in outcomes), outcomes


def test_fuzz_10000_genomes():
    """About 10 s on one CPU thread, so it stays in the default run."""
    _check(fuzz(10_000, seed=1), 10_000)


def test_overflow_is_reported_as_non_finite():
    space = NormActSpace(mode="S")
    chain = [("exp", 0), ("square", 4), ("square", 5), ("square", 6), ("mul", 7, 0)]
    genome = make_genome("S", chain, **space.defaults)
    assert run_genome(space, genome, "nchw", np.random.default_rng(0)) == "non-finite output in train mode"


def test_every_op_is_exercised_by_sampling():
    space = NormActSpace(mode="B")
    rng = np.random.default_rng(0)
    seen = {node["op"] for _ in range(300) for node in space.sample(rng)["nodes"]}
    assert seen == set(OPS)
    assert math.isclose(len(OPS), 13 + 16)
