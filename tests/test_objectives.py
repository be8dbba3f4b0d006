"""Orientation and Pareto dominance: the one implementation algorithms, results and the dashboard rank with."""

from __future__ import annotations

import math

import numpy as np

from evaluators.config import Objective
from search.objectives import oriented, pareto_mask, pareto_ranks, signed_values

ACC = Objective(name="val_acc@mlp", direction="max")
LATENCY = Objective(name="latency_ms@mlp", direction="min")


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a >= b) and np.any(a > b))


def test_signed_values_turn_every_objective_to_larger_is_better() -> None:
    assert signed_values({"val_acc@mlp": 0.9, "latency_ms@mlp": 3.0}, [ACC, LATENCY]) == (0.9, -3.0)
    assert oriented(3.0, LATENCY) < oriented(2.0, LATENCY)
    assert signed_values({"val_acc@mlp": 0.9}, [ACC, LATENCY]) is None  # missing
    assert signed_values({"val_acc@mlp": math.nan, "latency_ms@mlp": 1.0}, [ACC, LATENCY]) is None


def test_pareto_mask_and_ranks_match_the_definition_of_dominance() -> None:
    rng = np.random.default_rng(0)
    points = rng.integers(0, 6, size=(200, 3)).astype(float)  # small integers: many ties and equal rows
    mask = pareto_mask(points)
    expected = [not any(_dominates(q, p) for q in points) for p in points]
    assert mask.tolist() == expected
    ranks = pareto_ranks(points)
    assert (ranks == 0).tolist() == expected
    for i, j in ((i, j) for i in range(len(points)) for j in range(len(points))):
        if _dominates(points[i], points[j]):
            assert ranks[i] < ranks[j]
    for r in range(1, ranks.max() + 1):  # every point below the front is dominated by one a rank above it
        for p in points[ranks == r]:
            assert any(_dominates(q, p) for q in points[ranks == r - 1])
    assert pareto_mask(np.empty((0, 2))).tolist() == [] and pareto_ranks(np.empty((0, 2))).tolist() == []
