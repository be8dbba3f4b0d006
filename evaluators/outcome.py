"""What an evaluation returns to the driver."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["done", "rejected", "failed"]

# Stage names, cheapest first. The driver adds "fingerprint" (functional duplicate) and "timeout" / "worker_lost".
STAGES = ("static", "fingerprint", "numeric_probe", "stability", "quality_gate", "full")


@dataclass
class Outcome:
    status: Status
    stage: str  # the stage that rejected or failed it; "full" when done
    reason: str = ""
    objectives: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(**data)
