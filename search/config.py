"""Study config: pydantic models (extra="forbid") loaded from YAML; errors name the key path.

Everything the store keeps in a bounded column is checked against that column here, before a study row exists
or Ray starts, so SQLite (which ignores VARCHAR lengths) and PostgreSQL (which enforces them) refuse alike.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from evaluators.config import INT32_MAX, EvaluatorConfig, Strict
from search.algorithms import ALGORITHMS
from search.db_urls import store_url
from search.store import CandidateRow, StudyRow

NAME_LENGTH = StudyRow.__table__.c.name.type.length
KIND_LENGTH = StudyRow.__table__.c.space.type.length
ALGORITHM_LENGTH = StudyRow.__table__.c.algorithm.type.length
SEED_NAME_LENGTH = CandidateRow.__table__.c.seed_name.type.length
NAME_PATTERN = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")
MAX_NESTING = 100  # YAML nested deeper than this is refused before it can exhaust Python's stack


class ConfigError(ValueError):
    """A study config or CLI argument is invalid; the message says where and how to fix it."""


class SpaceSection(Strict):
    kind: str = Field(max_length=KIND_LENGTH)
    options: dict[str, Any] = Field(default_factory=dict)
    # Names from space.seeds() or genomes in the space's text form, evaluated first as baselines; the store keeps
    # each as the candidate's seed name.
    seeds: list[str] = Field(default_factory=list)

    @field_validator("seeds")
    @classmethod
    def _seeds_fit_the_store(cls, seeds: list[str]) -> list[str]:
        for index, seed in enumerate(seeds):
            if len(seed) > SEED_NAME_LENGTH:
                raise ValueError(
                    f"seed {index} ({seed[:20]!r}...) is {len(seed)} characters; the store keeps a seed's name or "
                    f"formula in at most {SEED_NAME_LENGTH}: shorten it (spaces are optional)"
                )
        return seeds


class AlgorithmSection(Strict):
    name: str = Field("evolution", max_length=ALGORITHM_LENGTH)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(sorted(ALGORITHMS))}")
        return name

    @field_validator("options")
    @classmethod
    def _plain_values(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Every algorithm option is one number, true/false, a word or a list of words (e.g. study names);
        a list of numbers or a mapping is a typo."""
        for key, value in options.items():
            words = isinstance(value, list) and all(isinstance(v, str) for v in value)
            if value is not None and not words and not isinstance(value, bool | int | float | str):
                raise ValueError(
                    f"option {key!r} must be a single number, true/false, a word or a list of words, "
                    f"got a {_kind(value)}"
                )
        return options


class BudgetSection(Strict):
    # Finished evaluations (done + rejected + failed, duplicates excluded).
    evaluations: int | None = Field(None, ge=1, le=INT32_MAX)
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
    url: str = Field(default_factory=store_url)  # default: $LAYERFORGE_DB, else the SQLite file under runs/


class RaySection(Strict):
    address: str | None = None  # None: private local instance; "auto" or "ray://host:10001" for a cluster
    object_store_memory_mb: int = Field(256, ge=64)
    tmpdir: str | None = None  # default: runs/ray


class ExportSection(Strict):
    out: str | None = None  # write the best layers here when the study ends
    top: int = Field(5, ge=1)
    pareto: bool = False


class StudyConfig(Strict):
    name: str
    # Plug-in modules, imported in the driver and in every worker before anything else, so the datasets,
    # architectures, spaces and objectives they register work on a cluster too (see ``import_plugins``).
    imports: list[str] = Field(default_factory=list)
    seed: int = Field(0, ge=0, le=INT32_MAX)
    space: SpaceSection
    algorithm: AlgorithmSection = Field(default_factory=AlgorithmSection)
    evaluator: EvaluatorConfig
    budget: BudgetSection
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    store: StoreSection = Field(default_factory=StoreSection)
    ray: RaySection = Field(default_factory=RaySection)
    export: ExportSection = Field(default_factory=ExportSection)

    @field_validator("name")
    @classmethod
    def _a_file_name(cls, name: str) -> str:
        """Exports and downloads are named after the study, so its name is a plain file name too."""
        if not 1 <= len(name) <= NAME_LENGTH or not NAME_PATTERN.fullmatch(name):
            raise ValueError(
                f"a study name is 1 to {NAME_LENGTH} letters, digits, '_', '-' and '.', not starting with a dot "
                f"(it names files), got {_shortened(name)}"
            )
        return name


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid study config {source}:"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/quickstart.yaml for the schema)"
        elif err["type"] == "value_error":
            msg = str(err["ctx"]["error"])  # our own validators' messages, without pydantic's "Value error, "
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def importable_from_here() -> None:
    """Modules in the current folder are found, as with `python -m` (a console script's path starts at its own
    folder instead). Ray passes the driver's path on to its workers."""
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))


def import_plugins(modules: Sequence[str]) -> None:
    """Import a config's plug-in modules, which register their datasets, architectures, spaces and objectives."""
    if modules:
        importable_from_here()
    for module in modules:
        if not all(part.isidentifier() for part in module.split(".")):
            raise ConfigError(f"imports: {module!r} is not a module name; give dotted names such as mypkg.tasks")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"imports: cannot import {module!r} ({type(exc).__name__}: {exc}); install the package that "
                "provides it or put the folder that holds it on PYTHONPATH"
            ) from None


def parse_config(data: Any, source: str = "<dict>") -> StudyConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"study config {source} must be a YAML mapping, got {type(data).__name__}")
    plugins = data.get("imports")
    if isinstance(plugins, list) and all(isinstance(module, str) for module in plugins):
        import_plugins(plugins)  # before anything is checked against the registries they add to
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def _kind(value: Any) -> str:
    return {"dict": "mapping"}.get(type(value).__name__, type(value).__name__)


def _shortened(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...") + f" ({len(text)} characters)"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last one, hiding typos)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.depth = 0

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base loader explains it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping; keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """PyYAML composes recursively: a file of 100,000 "[" would exhaust Python's stack."""
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_NESTING} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what is wrong and where (PyYAML's own message spans several lines with a source excerpt)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        text = "; ".join(str(part) for part in (exc.context, exc.problem) if part)
        mark = exc.problem_mark
        return text + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark else "")
    return " ".join(str(exc).split())


def config_from_bytes(data: bytes, source: str) -> StudyConfig:
    """A study config from the bytes of a YAML file; every problem is one ConfigError naming ``source``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    try:
        parsed = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source} is not valid YAML: {_yaml_problem(exc)}") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits, a date like 2024-13-45
        raise ConfigError(f"config file {source} holds a value that cannot be read: {str(exc).split(';')[0]}") from None
    return parse_config(parsed, source)


def load_config(path: str | Path) -> StudyConfig:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config path {path} is a directory; give the study's YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return config_from_bytes(data, str(path))
