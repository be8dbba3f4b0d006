"""The evaluator section of a study config: proxies, rejection cascade, objectives."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from evaluators.splits import TEST, split_of

INT32_MAX = 2**31 - 1  # the store's INTEGER columns (32 bits on PostgreSQL) hold nothing larger


class Strict(BaseModel):
    """A config section: unknown keys, infinities and NaN, and true/false where a number belongs are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's ``true`` would otherwise count as 1 (pydantic reads a bool as an int)."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            kinds = set(get_args(annotation)) or {annotation}
            if bool not in kinds and kinds & {int, float}:
                raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


class Recipe(Strict):
    """How a proxy trains: the optimizer and, for KAN models, when the grids are refit to the data.

    ``steps`` (the proxy's) counts iterations: Adam mini-batches, or LBFGS iterations on the whole training
    set (strong Wolfe line search, at most 1.25 loss evaluations per iteration on average). Grid updates run
    before the given steps (0 = before training: the grids take the inputs' range); ``grid_sizes`` gives the
    grid size each update sets (grid extension, coarse to fine), or is empty to keep the sizes.
    """

    optimizer: Literal["adam", "lbfgs"] = "adam"
    lr: float | None = Field(None, gt=0)  # None: the proxy's lr with Adam, 1.0 with LBFGS
    history_size: int = Field(30, ge=1)  # LBFGS memory (pykan uses 10; 30 fit the Feynman equations better)
    grid_updates: list[int] = Field(default_factory=list)
    grid_sizes: list[int] = Field(default_factory=list)
    grid_eps: float = Field(0.02, gt=0, le=1)  # 1: uniform grid over the inputs' range; towards 0: quantiles

    @model_validator(mode="after")
    def _grid_schedule_is_ordered(self) -> Recipe:
        if any(s < 0 for s in self.grid_updates) or self.grid_updates != sorted(set(self.grid_updates)):
            raise ValueError(f"grid_updates must be distinct steps >= 0 in increasing order, got {self.grid_updates}")
        if self.grid_sizes and len(self.grid_sizes) != len(self.grid_updates):
            raise ValueError(
                f"grid_sizes gives {len(self.grid_sizes)} sizes for {len(self.grid_updates)} grid_updates; "
                "give one per update or leave it empty"
            )
        if any(not 2 <= g <= 64 for g in self.grid_sizes):
            raise ValueError(f"grid_sizes must lie in [2, 64] (the KAN space's grid range), got {self.grid_sizes}")
        return self


class ProxyConfig(Strict):
    """One (dataset, architecture, training budget) triple; its name suffixes objective names (`val_acc@mlp`).

    ``recipe`` is how it trains (default: Adam); ``recipes`` are named alternatives that a genome can pick with
    its ``recipe`` field (the KAN space's ``recipes`` option lets the search choose among them).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    arch: str
    dataset: str
    arch_options: dict[str, Any] = Field(default_factory=dict)
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    steps: int = Field(300, ge=1)
    # Adam at lr 1e-2, batch 100: the MNIST-1D paper's settings (BENCHMARKS.md, "Proxy optimizer defaults").
    batch_size: int = Field(100, ge=1)
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    # Adam's lr over training: a linear warm-up over this share of the steps, then constant or cosine to zero.
    # The 5% warm-up keeps softplus-like layers from diverging at lr 1e-2 (BENCHMARKS.md, "Proxy optimizer defaults").
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    seed: int = 0
    recipe: Recipe = Field(default_factory=Recipe)
    recipes: dict[str, Recipe] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _lbfgs_has_no_weight_decay(self) -> ProxyConfig:
        lbfgs = [name for name, r in [("recipe", self.recipe), *self.recipes.items()] if r.optimizer == "lbfgs"]
        if lbfgs and self.weight_decay > 0:
            raise ValueError(f"weight_decay applies to Adam only; set it to 0 or drop the LBFGS recipes {lbfgs}")
        return self


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


class PlacementCheck(Strict):
    """A deep residual stack at initialization, in the post-activation BasicBlock and the pre-activation block.

    ``on_fail`` "reject" rejects a candidate whose activations or input gradients go non-finite, or whose RMS
    grows more than ``max_activation_growth`` / ``max_gradient_growth`` times over the stack; "warn" keeps it,
    with a warning the export's manifest carries. The limits sit far above what ReLU, GELU, SiLU, Mish, tanh and
    the norm-act baselines reach (at most 7x and 75x over 20 blocks, BENCHMARKS.md "Placement robustness").
    ``norm`` says whether the stack puts a BatchNorm before each candidate ("batchnorm", for activations) or the
    candidate is the norm ("candidate", for norm-act layers); "auto" picks by space (see ``evaluators.placement``).
    """

    enabled: bool = False  # on in the shipped configs, like the stability test
    on_fail: Literal["reject", "warn"] = "reject"
    blocks: int = Field(20, ge=1)
    channels: int = Field(16, ge=1)
    size: int = Field(8, ge=1)  # height and width of the feature maps
    batch: int = Field(16, ge=2)
    max_activation_growth: float = Field(100.0, gt=1)
    max_gradient_growth: float = Field(1e4, gt=1)
    norm: Literal["auto", "batchnorm", "candidate"] = "auto"


class QualityGate(Strict):
    enabled: bool = True
    steps: int = Field(50, ge=1)
    min_chance_multiple: float = Field(2.0, gt=0)  # every proxy must reach this multiple of chance accuracy
    min_val_acc: float | None = Field(None, ge=0, le=1)  # absolute threshold, overrides the chance multiple
    # The gate's short run warms the lr up over this share of its steps (10 of 50 by default) in place of the
    # proxy's own share: 5% of 50 steps is too short for softplus at lr 1e-2 (BENCHMARKS.md, proxy defaults).
    warmup_fraction: float = Field(0.2, ge=0, lt=1)


class Halving(Strict):
    """Successive halving (ASHA's rungs) before the full training: rung k (k = 0 .. rungs - 1) trains every proxy
    from scratch for ``round(steps / eta ** (rungs - k))`` of its steps, and a candidate continues only if one of
    its objectives is in the top ``1 / eta`` of the values the study recorded at that rung so far, its own included
    (``evaluators.halving``). eta 3 with 2 rungs trains 1/9 and 1/3 of the steps: the budgets that
    ``layerforge tabulate`` records by default, so table studies can use it too. With ``late_promotion`` (the
    default, chosen on a recorded table: BENCHMARKS.md) a stopped candidate trains on from the next rung once it
    ranks in the top ``1 / eta`` of all the study's results at its rung (ASHA's promotions; the driver starts it
    before asking the algorithm for a new candidate).
    """

    enabled: bool = False
    eta: int = Field(3, ge=2)
    rungs: int = Field(2, ge=1)
    late_promotion: bool = True


class Rejection(Strict):
    static: StaticCheck = Field(default_factory=StaticCheck)
    numeric_probe: NumericProbe = Field(default_factory=NumericProbe)
    placement: PlacementCheck = Field(default_factory=PlacementCheck)
    stability: StabilityCheck = Field(default_factory=StabilityCheck)
    quality_gate: QualityGate = Field(default_factory=QualityGate)
    halving: Halving = Field(default_factory=Halving)


class Objective(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+(@[A-Za-z0-9_\-]+)?$")
    direction: Literal["max", "min"] = "max"

    @field_validator("name")
    @classmethod
    def _not_on_the_test_split(cls, name: str) -> str:
        if split_of(name) == TEST:
            raise ValueError(
                f"objective {name!r} reads the test split, which nothing may select on; "
                f"select on the validation split ({name.replace('test_', 'val_', 1)!r}) and read test with rerank"
            )
        return name


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


class TableSource(Strict):
    """Recorded outcomes (a CSV from ``layerforge tabulate``, keyed by fingerprint) that ``kind: table`` answers
    from, so algorithms run through the real runner in seconds (``evaluators.table``)."""

    path: str = Field(min_length=1)
    seed: int | Literal["mean"] = "mean"  # the recorded training seed that answers; "mean" averages them all
    steps: int | None = Field(None, ge=1)  # the recorded training budget that answers; None: the full one
    metrics: dict[str, str] = Field(default_factory=dict)  # objective -> recorded metric (default: its own name)


class EvaluatorConfig(Strict):
    kind: Literal["proxy", "synthetic", "table"] = "proxy"
    proxies: list[ProxyConfig] = Field(default_factory=list)
    rejection: Rejection = Field(default_factory=Rejection)
    objectives: list[Objective] = Field(default_factory=lambda: [Objective(name="val_acc@mlp")])
    fingerprint: Fingerprint = Field(default_factory=Fingerprint)
    synthetic: Synthetic = Field(default_factory=Synthetic)
    table: TableSource | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False  # bfloat16 autocast for proxy training on CUDA (Ampere or newer); ignored on CPU
    threads: int = Field(1, ge=1)  # torch threads per worker
    # Jobs a worker takes at once, training them as one stacked model per proxy where it can (evaluators.batched);
    # "auto" picks from the proxies' sizes and the device, 1 trains one candidate at a time.
    candidates_per_batch: int | Literal["auto"] = 1
    timeout_seconds: float = Field(600.0, gt=0)  # per evaluation, enforced by the driver

    @field_validator("candidates_per_batch")
    @classmethod
    def _at_least_one(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"must be 'auto' or an integer >= 1 (1 trains one candidate at a time), got {value}")
        return value

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
        if self.kind == "table":
            if self.table is None:
                raise ValueError("evaluator.kind is 'table' but evaluator.table is missing; give table.path")
            unknown = sorted(set(self.table.metrics) - {o.name for o in self.objectives})
            if unknown:
                raise ValueError(f"evaluator.table.metrics maps {unknown}, which are not objectives")
        return self
