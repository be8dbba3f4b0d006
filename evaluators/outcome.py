"""What an evaluation returns to the driver."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from evaluators.vocabulary import Status


@dataclass
class Outcome:
    status: Status  # DONE, REJECTED or FAILED
    stage: str  # the Stage that rejected or failed it; Stage.FULL when done
    reason: str = ""
    objectives: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(**{**data, "status": Status(data["status"])})

    def finite_objectives(self) -> dict[str, float]:
        """The objectives that are finite numbers (the store's JSON has no NaN, and algorithms rank only these)."""
        return {k: v for k, v in self.objectives.items() if isinstance(v, int | float) and math.isfinite(v)}
