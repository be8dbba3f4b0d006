"""The evaluator section of a study config: proxies, rejection cascade, objectives."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProxyConfig(Strict):
    """One (dataset, architecture, training budget) triple; its name suffixes objective names (`val_acc@mlp`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    arch: str
    dataset: str
    arch_options: dict[str, Any] = Field(default_factory=dict)
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    steps: int = Field(300, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0


class StaticCheck(Strict):
    enabled: bool = True


class NumericProbe(Strict):
    enabled: bool = True
    low: float = -20.0
    high: float = 20.0
    points: int = Field(2001, ge=10)
    max_flat_fraction: float = Field(0.95, ge=0, le=1)  # reject if the gradient is ~0 on more than this share
    max_abs_output: float = Field(1e6, gt=0)


class StabilityCheck(Strict):
    enabled: bool = False
    ascent_steps: int = Field(5, ge=1)
    step_size: float = Field(1.0, gt=0)
    threshold: float = Field(1e8, gt=0)


class QualityGate(Strict):
    enabled: bool = True
    steps: int = Field(50, ge=1)
    min_chance_multiple: float = Field(2.0, gt=0)  # every proxy must reach this multiple of chance accuracy
    min_val_acc: float | None = Field(None, ge=0, le=1)  # absolute threshold, overrides the chance multiple


class Rejection(Strict):
    static: StaticCheck = Field(default_factory=StaticCheck)
    numeric_probe: NumericProbe = Field(default_factory=NumericProbe)
    stability: StabilityCheck = Field(default_factory=StabilityCheck)
    quality_gate: QualityGate = Field(default_factory=QualityGate)


class Objective(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+(@[A-Za-z0-9_\-]+)?$")
    direction: Literal["max", "min"] = "max"


class Fingerprint(Strict):
    enabled: bool = True
    points: int = Field(1000, ge=10)
    decimals: int = Field(4, ge=1, le=12)
    seed: int = 1234


class Synthetic(Strict):
    """Fault-injecting evaluator with a fixed cost, for benchmarks and resilience tests (no training)."""

    seconds: float = Field(0.0, ge=0)
    fail_on: list[str] = Field(default_factory=list)  # canonical-form substrings that raise
    hang_on: list[str] = Field(default_factory=list)  # ... that never return
    nan_on: list[str] = Field(default_factory=list)  # ... that return NaN objectives


class EvaluatorConfig(Strict):
    kind: Literal["proxy", "synthetic"] = "proxy"
    proxies: list[ProxyConfig] = Field(default_factory=list)
    rejection: Rejection = Field(default_factory=Rejection)
    objectives: list[Objective] = Field(default_factory=lambda: [Objective(name="val_acc@mlp")])
    fingerprint: Fingerprint = Field(default_factory=Fingerprint)
    synthetic: Synthetic = Field(default_factory=Synthetic)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False  # bfloat16 autocast for proxy training on CUDA (Ampere or newer); ignored on CPU
    threads: int = Field(1, ge=1)  # torch threads per worker
    timeout_seconds: float = Field(600.0, gt=0)  # per evaluation, enforced by the driver

    @model_validator(mode="after")
    def _objectives_name_known_proxies(self) -> EvaluatorConfig:
        if self.kind == "proxy":
            if not self.proxies:
                raise ValueError("evaluator.proxies is empty: a proxy evaluator needs at least one proxy")
            names = [p.name for p in self.proxies]
            if len(set(names)) != len(names):
                raise ValueError(f"evaluator.proxies: duplicate proxy names {names}")
            for obj in self.objectives:
                if "@" in obj.name and obj.name.split("@", 1)[1] not in names:
                    raise ValueError(
                        f"objective {obj.name!r} names proxy {obj.name.split('@', 1)[1]!r}, but the proxies are {names}"
                    )
        return self
