"""Late promotion (ASHA's): a candidate successive halving stopped trains on once the study's later results at
its rung show it in the top ``1 / eta`` there.

The driver keeps the stopped candidates, one per layer (canonical key), with what they reached; before asking
the algorithm for a new candidate it promotes the best one that now qualifies, highest rung first. A promotion is
a new candidate row of the same genome (origin ``promotion``, its parent the stopped one) whose proposal data
(``PROMOTION``) say the rung it starts from and the rung values it brings, so a resumed study rebuilds all of this
from the store. Each layer is promoted from a rung at most once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from evaluators.halving import STOPPED_AT, RungHistory, rung_metrics
from search.dedupe import Pending
from search.objectives import sign

PROMOTION = "promotion"  # proposal data of a promotion: {"from_rung": k + 1, "rungs": the values of rungs 0 .. k}


@dataclass
class Stopped:
    """A candidate stopped at ``rung``, with its values at rungs 0 .. ``rung``."""

    candidate: Pending
    rung: int
    rungs: list[dict[str, float]]


def promoted_from(proposal_data: dict[str, Any] | None) -> int:
    """The rung a candidate's evaluation starts at: 0, or the rung after the one a promotion was stopped at."""
    return int((proposal_data or {}).get(PROMOTION, {}).get("from_rung", 0))


def earlier_rung_metrics(proposal_data: dict[str, Any] | None) -> dict[str, float]:
    """What a promotion's stored metrics repeat of the rungs it cleared before (``Result.rungs`` starts at 0)."""
    return rung_metrics((proposal_data or {}).get(PROMOTION, {}).get("rungs", []))


class Promotions:
    """The study's stopped candidates and which of them to promote next."""

    def __init__(self, history: RungHistory):
        self.history = history
        self.stopped: dict[str, Stopped] = {}  # by canonical key: the layer's latest stop
        self.done: set[tuple[str, int]] = set()  # (key, rung) a layer was promoted from

    def record(self, candidate: Pending, metrics: dict[str, Any], rungs: list[dict[str, float]]) -> None:
        """A finished evaluation: remembered if halving stopped it (``rungs`` holds rungs 0 .. its stop)."""
        if candidate.key is None:
            return
        rung = metrics.get(STOPPED_AT)
        if rung is None or len(rungs) != rung + 1 or (candidate.key, rung) in self.done:
            self.stopped.pop(candidate.key, None)  # trained further, or failed: nothing to promote
            return
        self.stopped[candidate.key] = Stopped(candidate, int(rung), rungs)

    def started(self, candidate: Pending) -> None:
        """A promotion of ``candidate``'s layer was created (now, or before a resume)."""
        if candidate.key is not None:
            self.done.add((candidate.key, promoted_from(candidate.proposal_data) - 1))
            self.stopped.pop(candidate.key, None)

    def next(self) -> tuple[Stopped, dict[str, Any]] | None:
        """The stopped candidate to train on now, with its promotion's proposal data; None if none qualifies."""
        ready = [s for s in self.stopped.values() if self.history.in_top(s.rung, s.rungs[s.rung])]
        if not ready:
            return None
        first = self.history.objectives[0]
        oriented = sign(first)
        best = max(ready, key=lambda s: (s.rung, oriented * s.rungs[s.rung].get(first.name, -oriented * math.inf)))
        return best, {PROMOTION: {"from_rung": best.rung + 1, "rungs": best.rungs}}
