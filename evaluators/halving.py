"""Successive halving (ASHA's rungs) as a stage of the cascade: the rule, the rungs' budgets and metric names.

Rung k (k = 0 .. rungs - 1) trains every proxy from scratch for ``round(steps / eta ** (rungs - k))`` steps.
A candidate continues past a rung if, for at least one objective, its value (oriented so that larger is
better) is at least the m-th best of the values the study recorded at that rung so far, its own included,
with m = max(1, n // eta) and n that count: Optuna's ``SuccessiveHalvingPruner``, deciding when a result comes
in (so the first candidate at a rung always continues). Candidates that pass every rung get the full training.

The worker never sees the store, so the driver keeps the study's rung results (``RungHistory``, rebuilt by
replay from the stored metrics ``rung{k}_<objective>``) and sends each job the bars it must clear (``Bars``).
Since only the m-th best matters, a bar is one number per rung and objective, whatever the study's size.

With ``late_promotion`` (ASHA's promotions), a candidate stopped at rung k trains on later, from rung k + 1, once
it ranks in the top ``1 / eta`` of everything the study recorded at rung k: early candidates are judged against
few results, and a bar raised by a run of good ones can stop a candidate that later ones show was good. Its
bars then say ``None`` for the rungs it cleared (no training there); the driver keeps the candidates
(``search.promotion``).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from evaluators.cascade import Rejected
from evaluators.config import Halving, Objective

# Per rung, objective name -> {"cutoff": the value to reach (None: too few results, it continues),
# "results": how many the study recorded at the rung so far}; None for a rung a promoted candidate cleared
# earlier, which it does not train again. Plain JSON: it travels in a job.
Bars = list[dict[str, dict[str, Any]] | None]
STOPPED_AT = "halving_stopped_at"  # metric: the rung whose bar a stopped candidate did not clear


def rung_steps(steps: int, halving: Halving) -> list[int]:
    """The training steps of each rung for a proxy of ``steps`` steps, rung 0 first (at least 1 step each)."""
    return [max(1, round(steps / halving.eta ** (halving.rungs - k))) for k in range(halving.rungs)]


def rung_metric(rung: int, name: str) -> str:
    """Where a rung's metric is stored: ``rung0_val_acc@mlp`` (like the gate's ``gate_val_acc@mlp``)."""
    return f"rung{rung}_{name}"


def _sign(objective: Objective) -> int:
    # search.objectives.sign, which evaluators cannot import (dependencies point search -> evaluators)
    return 1 if objective.direction == "max" else -1


def cutoff(earlier: Sequence[float], eta: int) -> float | None:
    """The value (larger is better) a new result must reach to be in the top ``1 / eta`` of ``earlier`` and itself.

    With n = len(earlier) + 1 results and m = max(1, n // eta), the new one is among the m best iff it is at
    least the m-th best of ``earlier`` (``earlier`` sorted in increasing order); None when ``earlier`` has fewer
    than m values, so it continues whatever its value.
    """
    m = max(1, (len(earlier) + 1) // eta)
    return earlier[-m] if len(earlier) >= m else None


def rung_values(metrics: Mapping[str, Any], objectives: Sequence[Objective]) -> list[dict[str, float]]:
    """An evaluation's objective values at each rung it trained, rung 0 first (its stored ``rung{k}_<objective>``
    metrics; empty without halving). A candidate stopped at rung k has k + 1 entries: what algorithms learn from it."""
    rungs = []
    for k in itertools.count():
        values = {o.name: metrics.get(rung_metric(k, o.name)) for o in objectives}
        found = {name: float(v) for name, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}
        if not found:
            break
        rungs.append(found)
    return rungs


def rung_metrics(rungs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """``rung_values`` stored back as metrics (a duplicate's row keeps its original's)."""
    return {rung_metric(k, name): value for k, values in enumerate(rungs) for name, value in values.items()}


class RungHistory:
    """The driver's record of every value the study reached at each rung, per objective (larger is better)."""

    def __init__(self, halving: Halving, objectives: Sequence[Objective]):
        self.eta = halving.eta
        self.objectives = list(objectives)
        self.values: list[dict[str, list[float]]] = [{o.name: [] for o in objectives} for _ in range(halving.rungs)]

    def record(self, metrics: Mapping[str, Any], first_rung: int = 0) -> None:
        """Add an evaluation's rung results (its ``rung{k}_<objective>`` metrics; other metrics are ignored) from
        ``first_rung`` on: a promoted candidate's stored metrics repeat the lower rungs it trained before."""
        for k, rung in enumerate(self.values):
            if k < first_rung:
                continue
            for objective in self.objectives:
                value = metrics.get(rung_metric(k, objective.name))
                if isinstance(value, int | float) and math.isfinite(value):
                    bisect.insort(rung[objective.name], _sign(objective) * float(value))

    def bars(self, first_rung: int = 0) -> Bars:
        """What the next candidate must reach at each rung, in the objectives' own directions; None below
        ``first_rung`` (a promoted candidate cleared those)."""
        return [
            None
            if k < first_rung
            else {
                o.name: {"cutoff": _unsigned(cutoff(rung[o.name], self.eta), o), "results": len(rung[o.name])}
                for o in self.objectives
            }
            for k, rung in enumerate(self.values)
        ]

    def in_top(self, rung: int, values: Mapping[str, float]) -> bool:
        """Whether ``values`` (a candidate's at ``rung``, already recorded) are, for one objective at least, among
        the best ``max(1, n // eta)`` of the n values the study recorded there: ASHA's promotion rule."""
        for objective in self.objectives:
            recorded, value = self.values[rung][objective.name], values.get(objective.name)
            if value is None or not recorded:
                continue
            m = max(1, len(recorded) // self.eta)
            if _sign(objective) * value >= recorded[-m]:
                return True
        return False


def _unsigned(value: float | None, objective: Objective) -> float | None:
    return None if value is None else _sign(objective) * value


def check_rung(
    rung: int,
    after: str,
    values: Mapping[str, float | None],
    bars: Bars,
    objectives: Sequence[Objective],
    eta: int,
    metrics: dict[str, Any],
) -> None:
    """Raise ``Rejected`` unless one objective's ``values`` (the candidate's at this rung) clears its bar; on a
    stop, ``metrics`` records the rung (``STOPPED_AT``), which late promotion reads.

    ``after`` says how long the rung trained ("222 steps"), for the reason.
    """
    shortfalls = []
    for objective in objectives:
        bar = bars[rung][objective.name]
        value = values.get(objective.name)
        if bar["cutoff"] is None:
            return
        if value is not None and math.isfinite(value) and _sign(objective) * value >= _sign(objective) * bar["cutoff"]:
            return
        shown = "missing" if value is None else f"{value:.4g}"
        worse = "below" if objective.direction == "max" else "above"
        shortfalls.append(
            f"{objective.name} {shown} after {after} is {worse} the top 1/{eta} at rung {rung} "
            f"({bar['cutoff']:.4g} of {bar['results'] + 1} results)"
        )
    metrics[STOPPED_AT] = rung
    raise Rejected("halving: " + "; ".join(shortfalls))


def steps_label(steps: Mapping[str, int]) -> str:
    """``"222 steps"``, or ``"mlp 222, cnn 100 steps"`` where proxies train for different steps."""
    if len(set(steps.values())) == 1:
        return f"{next(iter(steps.values()))} steps"
    return ", ".join(f"{name} {n}" for name, n in steps.items()) + " steps"
