"""A fault-injecting evaluator with a fixed cost and no training, for benchmarks and resilience tests.

Matching is on the canonical form, so a test chooses which candidates fail, hang or return NaN by
putting a marker (an op name, a constant) into their genomes.
"""

from __future__ import annotations

import hashlib
import math
import time

from evaluators.base import Evaluator
from evaluators.cascade import Rejected, check_finite_objectives, one_line
from evaluators.halving import Bars
from evaluators.outcome import Outcome
from evaluators.splits import VAL, Split, on_split
from evaluators.vocabulary import Stage, Status
from spaces import Genome


class SyntheticFailure(RuntimeError):
    """Raised on purpose for candidates matching ``synthetic.fail_on``."""


def _hash_unit(text: str) -> float:
    """A deterministic value in [0, 1) from a string."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) / 16**16


def _first_match(canonical: str, markers: list[str]) -> str | None:
    return next((marker for marker in markers if marker in canonical), None)


class SyntheticEvaluator(Evaluator):
    """Sleeps ``synthetic.seconds``, then fails, hangs, returns NaN, or returns hash-derived objectives."""

    def evaluate(
        self,
        genome: Genome,
        *,
        seed: int = 0,
        steps: int | None = None,
        cascade: bool = True,
        split: Split = VAL,
        halving: Bars | None = None,
    ) -> Outcome:
        """``halving`` is ignored: nothing here trains, so there are no shorter runs to stop early."""
        start = time.perf_counter()
        settings = self.config.synthetic
        objectives: dict[str, float] = {}
        try:
            canonical = self.space.canonical(genome)
            time.sleep(settings.seconds)
            if _first_match(canonical, settings.hang_on) is not None:
                while True:  # a real hang: only the driver's timeout ends it
                    time.sleep(1.0)
            marker = _first_match(canonical, settings.fail_on)
            if marker is not None:
                raise SyntheticFailure(f"canonical form contains fail_on marker {marker!r}")
            nan = _first_match(canonical, settings.nan_on) is not None
            names = [on_split(objective.name, split) for objective in self.config.objectives]
            objectives = {name: math.nan if nan else _hash_unit(f"{canonical}|{name}") for name in names}
            check_finite_objectives(objectives)
        except Rejected as exc:
            return self._outcome(Status.REJECTED, str(exc), {}, start)
        except Exception as exc:
            return self._outcome(Status.FAILED, one_line(exc), {}, start)
        return self._outcome(Status.DONE, "", objectives, start)

    def _outcome(self, status: Status, reason: str, objectives: dict[str, float], start: float) -> Outcome:
        seconds = time.perf_counter() - start
        return Outcome(
            status=status,
            stage=Stage.FULL,
            reason=reason,
            objectives=objectives,
            metrics=dict(objectives),
            seconds=seconds,
            stage_seconds={Stage.FULL: seconds},
        )
