"""Study config: pydantic models (extra="forbid") loaded from YAML; errors name the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from evaluators.config import EvaluatorConfig, Strict
from search.algorithms import ALGORITHMS
from search.store import DEFAULT_URL


class ConfigError(ValueError):
    """A study config or CLI argument is invalid; the message says where and how to fix it."""


class SpaceSection(Strict):
    kind: str
    options: dict[str, Any] = Field(default_factory=dict)
    seeds: list[str] = Field(default_factory=list)  # names from space.seeds() evaluated first, as baselines


class AlgorithmSection(Strict):
    name: str = "evolution"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(sorted(ALGORITHMS))}")
        return name


class BudgetSection(Strict):
    evaluations: int | None = Field(None, ge=1)  # finished evaluations (done + rejected + failed, duplicates excluded)
    minutes: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _some_budget(self) -> BudgetSection:
        if self.evaluations is None and self.minutes is None:
            raise ValueError("set budget.evaluations and/or budget.minutes")
        return self


class ResourcesSection(Strict):
    workers: int | None = Field(None, ge=1)  # default: as many as the cluster's CPUs (and GPUs) hold
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)  # fractions share a GPU: 0.25 puts four workers on each
    autoscale: bool = False  # follow the cluster: add workers when nodes join (up to `workers`, if set)
    max_in_flight: int | None = Field(None, ge=1)  # default: 2 per worker
    max_attempts: int = Field(3, ge=1)  # per candidate, counting worker loss and timeouts

    @model_validator(mode="after")
    def _whole_gpus_above_one(self) -> ResourcesSection:
        if self.gpus_per_worker > 1 and not float(self.gpus_per_worker).is_integer():
            raise ValueError("gpus_per_worker above 1 must be a whole number (Ray's rule); fractions go up to 1")
        return self


class StoreSection(Strict):
    url: str = DEFAULT_URL


class RaySection(Strict):
    address: str | None = None  # None: private local instance; "auto" or "ray://host:10001" for a cluster
    object_store_memory_mb: int = Field(256, ge=64)
    tmpdir: str | None = None  # default: runs/ray


class ExportSection(Strict):
    out: str | None = None  # write the best layers here when the study ends
    top: int = Field(5, ge=1)
    pareto: bool = False


class StudyConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    seed: int = 0
    space: SpaceSection
    algorithm: AlgorithmSection = Field(default_factory=AlgorithmSection)
    evaluator: EvaluatorConfig
    budget: BudgetSection
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    store: StoreSection = Field(default_factory=StoreSection)
    ray: RaySection = Field(default_factory=RaySection)
    export: ExportSection = Field(default_factory=ExportSection)


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid study config {source}:"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/quickstart.yaml for the schema)"
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<dict>") -> StudyConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"study config {source} must be a YAML mapping, got {type(data).__name__}")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def load_config(path: str | Path) -> StudyConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    return parse_config(data, str(path))
