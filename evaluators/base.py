"""The Evaluator contract: score one genome, cheapest rejection first."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from evaluators.config import EvaluatorConfig
from evaluators.halving import Bars
from evaluators.outcome import Outcome
from evaluators.splits import VAL, Split
from spaces import Genome, Space


class Evaluator(ABC):
    """Built once per worker (it holds its datasets in memory), then called for many genomes."""

    def __init__(self, space: Space, config: EvaluatorConfig, device: str | None = None):
        self.space = space
        self.config = config
        self.device = device

    @abstractmethod
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
        """Run the rejection cascade, then full training; never raises for a bad candidate.

        ``seed`` and ``steps`` override the proxies' training seed and budget (re-ranking);
        ``cascade=False`` skips the rejection stages and trains directly. ``split`` is where the objectives are
        scored: validation for search, test (named ``test_*``) for final reports only. ``halving`` holds the
        bars of the study's successive-halving rungs (``evaluators.halving``), sent with a study's jobs when the
        config enables the stage.
        """

    def info(self) -> dict[str, Any]:
        """What the worker reports about itself (device, threads)."""
        return {"device": self.device or "cpu"}
