"""Evaluators on real data with real (short) training: datasets, proxy models, cascade, fingerprints."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from evaluators import (
    EvaluatorConfig,
    EvaluatorSetupError,
    ProxyEvaluator,
    SyntheticEvaluator,
    fingerprint,
    make_evaluator,
)
from evaluators.archs import candidate_slots
from evaluators.cascade import Rejected, check_finite_objectives, gate_proxy
from evaluators.config import Fingerprint, ProxyConfig, QualityGate
from evaluators.fingerprint import fingerprint_or_none
from evaluators.fitting import lr_factor
from evaluators.proxy import resolve_device
from evaluators.registry import Dataset, get_arch, get_dataset, register_dataset
from evaluators.training import NonFiniteLoss, loss_metrics, train_proxy
from spaces import GenomeError, Space, canonical_json, get_space

torch.set_num_threads(1)
CPU = torch.device("cpu")


def _where_sqrt(x: torch.Tensor) -> torch.Tensor:
    """Finite everywhere, but its gradient is NaN for x < 0 (the classic torch.where trap)."""
    return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))


TOY_FUNCTIONS = {
    "relu": torch.relu,
    "max0": lambda x: torch.maximum(x, torch.zeros_like(x)),
    "tanh": torch.tanh,
    "softplus": torch.nn.functional.softplus,
    "swish": lambda x: x * torch.sigmoid(x),
    "identity": lambda x: x,
    "log": torch.log,
    "exp": torch.exp,
    "sign": torch.sign,
    "hardsigmoid": torch.nn.functional.hardsigmoid,  # no second derivative in torch
    "where_sqrt": _where_sqrt,
    "times_zero": lambda x: x * 0,  # -0.0 for negative x
    "zeros": torch.zeros_like,
}


class ToyActivation(nn.Module):
    def __init__(self, fn: str, learnable: bool):
        super().__init__()
        self.fn = fn
        self.scale = nn.Parameter(torch.ones(())) if learnable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = TOY_FUNCTIONS[self.fn](x)
        return y if self.scale is None else self.scale * y


class ToySpace(Space):
    """A tiny elementwise space: one named function, optionally times a learnable scale."""

    kind = "toy"

    def sample(self, rng: np.random.Generator) -> dict:
        return self.genome(str(rng.choice(sorted(TOY_FUNCTIONS))))

    def mutate(self, genome: dict, rng: np.random.Generator) -> tuple[dict, str]:
        return self.sample(rng), "resample"

    def validate(self, genome: dict) -> None:
        self._check_header(genome)
        if genome.get("fn") not in TOY_FUNCTIONS and genome.get("fn") != "broken":
            raise GenomeError(f"unknown function {genome.get('fn')!r}; known: {sorted(TOY_FUNCTIONS)}")

    def canonical(self, genome: dict) -> str:
        return canonical_json(genome)

    def build(self, genome: dict, **shape) -> nn.Module:
        if genome["fn"] == "broken":
            raise RuntimeError("cannot build broken\nsecond line")
        return ToyActivation(genome["fn"], genome.get("learnable", False))

    def to_source(self, genome: dict, class_name: str) -> str:
        return f"import torch\n\n\nclass {class_name}(torch.nn.Module):\n    pass\n"

    def describe(self, genome: dict, fmt: str = "text") -> str:
        return f"{genome['fn']}(x)"

    def static_problems(self, genome: dict) -> list[str]:
        return ["output does not depend on x"] if genome["fn"] in ("zeros", "times_zero") else []

    @staticmethod
    def genome(fn: str, **extra) -> dict:
        return {"space": "toy", "v": 1, "fn": fn, **extra}


SPACE = ToySpace()
G = ToySpace.genome


@register_dataset("test_sine")
def _sine_regression(seed: int = 0) -> Dataset:
    """y = sin(2x) on [-2, 2]: a tiny regression task for the regression paths."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.uniform(-2, 2, size=(600, 1)).astype(np.float32))
    y = torch.sin(2 * x)
    return Dataset(x[:500], y[:500], x[500:], y[500:], task="regression", name="test_sine")


def proxy_config(**overrides) -> EvaluatorConfig:
    settings = {
        "proxies": [
            {
                "name": "mlp",
                "arch": "mlp",
                "dataset": "mnist1d",
                "steps": 60,
                "lr": 0.01,
                "arch_options": {"hidden": [32]},
            }
        ],
        "objectives": [{"name": "val_acc@mlp"}, {"name": "train_seconds@mlp", "direction": "min"}],
        "rejection": {"quality_gate": {"steps": 30, "min_chance_multiple": 1.5}},
    }
    settings.update(overrides)
    return EvaluatorConfig(**settings)


@pytest.fixture(scope="module")
def mnist1d() -> Dataset:
    return get_dataset("mnist1d")()


@pytest.fixture(scope="module")
def evaluator() -> ProxyEvaluator:
    return ProxyEvaluator(SPACE, proxy_config(), device="cpu")


# ---------------------------------------------------------------- datasets


def test_mnist1d_shapes_standardized_and_deterministic(mnist1d):
    # Validation (800) is carved out of the official 4,000 training samples; the official 1,000 are the test split.
    assert mnist1d.x_train.shape == (3200, 40) and mnist1d.x_val.shape == (800, 40)
    assert mnist1d.x_test.shape == (1000, 40)
    assert mnist1d.x_train.dtype == torch.float32 and mnist1d.y_train.dtype == torch.int64
    assert mnist1d.num_classes == 10 and set(mnist1d.y_train.tolist()) == set(range(10))
    assert mnist1d.x_train.mean(0).abs().max() < 1e-4
    assert (mnist1d.x_train.std(0) - 1).abs().max() < 1e-2
    again = get_dataset("mnist1d")()
    assert torch.equal(again.x_train, mnist1d.x_train) and torch.equal(again.y_val, mnist1d.y_val)


def test_mnist1d_disk_cache_and_global_rng_untouched(tmp_path, mnist1d):
    np.random.seed(7)
    random.seed(7)
    numpy_before, python_before = np.random.random(), random.random()
    np.random.seed(7)
    random.seed(7)
    cached = get_dataset("mnist1d")(cache_dir=str(tmp_path))
    assert (np.random.random(), random.random()) == (numpy_before, python_before)
    assert list(tmp_path.glob("*.npz")) == [tmp_path / "mnist1d_seed42.npz"]
    assert torch.equal(cached.x_train, mnist1d.x_train)
    from_disk = get_dataset("mnist1d")(cache_dir=f"{tmp_path}/.")  # another cache key: read back from the file
    assert torch.equal(from_disk.x_val, mnist1d.x_val) and torch.equal(from_disk.y_train, mnist1d.y_train)


def test_digits_split_is_seeded():
    digits = get_dataset("digits")(seed=0)
    assert digits.x_train.shape == (1077, 64) and digits.x_val.shape == (360, 64) and digits.x_test.shape == (360, 64)
    assert digits.num_classes == 10 and digits.y_val.dtype == torch.int64
    assert torch.equal(get_dataset("digits")(seed=0).y_val, digits.y_val)
    assert not torch.equal(get_dataset("digits")(seed=1).y_val, digits.y_val)


# ---------------------------------------------------------------- architectures


@pytest.mark.parametrize(
    ("arch", "options", "slots"),
    [("mlp", {"hidden": [16, 8]}, 2), ("mlp", {}, 2), ("cnn1d", {"channels": [4, 4, 4]}, 3), ("cnn1d", {}, 3)],
)
def test_archs_hold_one_candidate_instance_per_slot(mnist1d, arch, options, slots):
    model = get_arch(arch)(SPACE, G("tanh", learnable=True), mnist1d, **options)
    found = candidate_slots(model)
    assert len(found) == slots
    assert len({id(slot.layer) for slot in found}) == slots
    assert len({id(slot.layer.scale) for slot in found}) == slots  # per-layer learnable parameters
    assert model(mnist1d.x_val[:5]).shape == (5, 10)


def test_cnn1d_rejects_too_short_signals(mnist1d):
    with pytest.raises(ValueError, match="too short"):
        get_arch("cnn1d")(SPACE, G("relu"), mnist1d, channels=[4] * 6)


# ---------------------------------------------------------------- training


def _train(dataset: Dataset, fn: str, *, steps: int = 300, seed: int = 0) -> dict[str, float]:
    config = ProxyConfig(name="p", arch="mlp", dataset="mnist1d")
    return train_proxy(SPACE, G(fn), dataset, config, seed=seed, steps=steps, device=CPU)


def test_training_is_seeded_and_relu_beats_chance_and_identity(mnist1d):
    rng_before = torch.get_rng_state()
    relu = _train(mnist1d, "relu")
    assert torch.equal(torch.get_rng_state(), rng_before)  # the worker's global RNG is left alone
    again = _train(mnist1d, "relu")
    timings = {"train_seconds": 0, "latency_ms": 0}
    assert {**again, **timings} == {**relu, **timings}
    assert relu["latency_ms"] > 0
    assert _train(mnist1d, "relu", seed=1)["val_loss"] != relu["val_loss"]
    assert relu["val_acc"] > 0.4  # chance is 0.1
    assert relu["val_acc"] > _train(mnist1d, "identity")["val_acc"] + 0.08  # a linear model is clearly worse


def test_lr_warmup_then_constant_or_cosine():
    warm = [lr_factor(step, 100, "constant", 0.05) for step in range(1, 101)]
    assert warm[:5] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6]) and set(warm[5:]) == {1.0}
    assert {lr_factor(step, 100, "constant", 0.0) for step in range(1, 101)} == {1.0}
    cosine = [lr_factor(step, 100, "cosine", 0.0) for step in range(1, 101)]
    assert cosine[0] == 1.0 and all(a > b for a, b in zip(cosine, cosine[1:], strict=False)) and cosine[-1] < 0.001


def test_gate_warmup_keeps_softplus_cnn_from_diverging(mnist1d):
    """At lr 1e-2 without warm-up, softplus in the 1-D CNN is stuck at chance after the gate's 50 steps."""
    proxy = ProxyConfig(name="cnn1d", arch="cnn1d", dataset="mnist1d", warmup_fraction=0.0)
    gate = QualityGate()

    def gate_acc(config: ProxyConfig) -> float:
        return train_proxy(SPACE, G("softplus"), mnist1d, config, seed=0, steps=gate.steps, device=CPU)["val_acc"]

    assert gate_acc(proxy) < 0.15
    assert gate_acc(gate_proxy(proxy, gate)) > gate.min_chance_multiple / 10


def test_loss_metrics_keep_a_ten_point_learning_curve():
    losses = [float(100 - step) for step in range(100)]
    summary = loss_metrics(losses)
    assert summary["train_loss"] == pytest.approx(sum(range(1, 11)) / 10)  # the mean of the last tenth
    assert summary["train_loss_curve"] == pytest.approx([95.5 - 10 * i for i in range(10)])
    assert loss_metrics([3.0, 1.0])["train_loss_curve"] == [3.0, 1.0]  # fewer steps than points


def test_activation_diagnostics(mnist1d):
    relu, tanh = _train(mnist1d, "relu", steps=30), _train(mnist1d, "tanh", steps=30)
    assert 0.2 < relu["act_zero_fraction"] < 0.8 and tanh["act_zero_fraction"] == 0.0
    assert relu["act_max_ratio"] > 1.0
    assert 0.0 <= relu["act_dead_fraction"] < 0.5
    zeros = _train(mnist1d, "zeros", steps=5)
    assert zeros["act_zero_fraction"] == 1.0 and zeros["act_dead_fraction"] == 1.0


def test_non_finite_loss_stops_training(mnist1d):
    with pytest.raises(NonFiniteLoss, match="at step 1 of 50"):
        _train(mnist1d, "log", steps=50)


def test_regression_reports_rmse():
    data = get_dataset("test_sine")()
    config = ProxyConfig(name="fit", arch="mlp", dataset="test_sine", arch_options={"hidden": [32]})
    metrics = train_proxy(SPACE, G("tanh"), data, config, seed=0, steps=300, device=CPU)
    assert "val_acc" not in metrics
    assert metrics["val_rmse"] == pytest.approx(metrics["val_loss"] ** 0.5)
    assert metrics["val_rmse"] < 0.35  # sin(2x) has std ~0.7; a fit must do much better than the mean


# ---------------------------------------------------------------- cascade


def test_candidate_that_passes_every_stage(evaluator):
    outcome = evaluator.evaluate(G("relu"))
    assert (outcome.status, outcome.stage, outcome.reason) == ("done", "full", "")
    assert set(outcome.objectives) == {"val_acc@mlp", "train_seconds@mlp"}
    assert list(outcome.stage_seconds) == ["static", "numeric_probe", "quality_gate", "full"]
    assert outcome.seconds >= sum(outcome.stage_seconds.values()) > 0
    assert outcome.metrics["steps@mlp"] == 60 and outcome.metrics["gate_steps@mlp"] == 30
    assert outcome.metrics["mean_val_acc"] == outcome.objectives["val_acc@mlp"] > 0.25
    for key in ("val_loss@mlp", "params@mlp", "act_zero_fraction@mlp", "probe_flat_fraction", "total_train_seconds"):
        assert key in outcome.metrics


@pytest.mark.parametrize(
    ("genome", "stage", "reason"),
    [
        (G("zeros"), "static", "does not depend on x"),
        (G("cosh"), "static", "invalid genome: unknown function 'cosh'"),
        ({"space": "other", "v": 1}, "static", "expected 'toy'"),
        (G("log"), "numeric_probe", "non-finite output on 1000 of 2001 points, x in [-20, -0.02]"),
        (G("exp"), "numeric_probe", "exceeds 1e+06"),
        (G("sign"), "numeric_probe", "gradient ~0 on 100.0% of the grid"),
        (G("where_sqrt"), "numeric_probe", "non-finite gradient"),
    ],
)
def test_cheap_stages_reject_with_stage_and_reason(evaluator, genome, stage, reason):
    outcome = evaluator.evaluate(genome)
    assert (outcome.status, outcome.stage) == ("rejected", stage)
    assert reason in outcome.reason
    assert "full" not in outcome.stage_seconds and outcome.objectives == {}


def test_stability_rejects_exploding_gradients():
    config = proxy_config(rejection={"numeric_probe": {"enabled": False}, "stability": {"enabled": True}})
    evaluator = ProxyEvaluator(SPACE, config, device="cpu")
    exploding = evaluator.evaluate(G("exp"))
    assert (exploding.status, exploding.stage) == ("rejected", "stability")
    assert "parameter-gradient norm" in exploding.reason and "exceeds 1e+08" in exploding.reason
    assert evaluator.evaluate(G("tanh")).metrics["stability_grad_norm"] < 1e3
    assert evaluator.evaluate(G("hardsigmoid")).status == "done"  # ascent falls back to the loss gradient


def test_quality_gate_applies_to_every_proxy():
    proxies = [
        {"name": "mlp", "arch": "mlp", "dataset": "mnist1d", "steps": 30},
        {"name": "digits", "arch": "mlp", "dataset": "digits", "steps": 30},
    ]
    strict = {"quality_gate": {"steps": 20, "min_val_acc": 0.6}}
    outcome = ProxyEvaluator(SPACE, proxy_config(proxies=proxies, rejection=strict), "cpu").evaluate(G("relu"))
    assert (outcome.status, outcome.stage) == ("rejected", "quality_gate")
    assert outcome.reason.startswith("quality gate: val_acc@mlp = ") and "below 0.600" in outcome.reason
    assert f"val_acc@mlp = {outcome.metrics['gate_val_acc@mlp']:.3f}" in outcome.reason  # gate metrics are kept
    assert "gate_val_acc@digits" not in outcome.metrics  # the gate stops at the first proxy that misses


def test_divergence_in_training_is_a_rejection():
    no_cascade = {"numeric_probe": {"enabled": False}, "quality_gate": {"enabled": False}}
    outcome = ProxyEvaluator(SPACE, proxy_config(rejection=no_cascade), "cpu").evaluate(G("log"))
    assert (outcome.status, outcome.stage) == ("rejected", "full")
    assert outcome.reason == "training loss became nan at step 1 of 60"


def test_exceptions_become_failed_outcomes(evaluator):
    outcome = evaluator.evaluate(G("broken"))
    assert (outcome.status, outcome.stage) == ("failed", "numeric_probe")
    assert outcome.reason == "RuntimeError: cannot build broken"
    direct = evaluator.evaluate(G("broken"), cascade=False)
    assert (direct.status, direct.stage, direct.stage_seconds.keys()) == ("failed", "full", {"full"})


def test_direct_training_uses_seed_and_steps(evaluator):
    first = evaluator.evaluate(G("relu"), seed=3, steps=40, cascade=False)
    assert (first.status, list(first.stage_seconds)) == ("done", ["full"])
    assert first.metrics["steps@mlp"] == 40
    assert (
        evaluator.evaluate(G("relu"), seed=3, steps=40, cascade=False).objectives["val_acc@mlp"]
        == (first.objectives["val_acc@mlp"])
    )
    assert (
        evaluator.evaluate(G("relu"), seed=4, steps=40, cascade=False).metrics["val_loss@mlp"]
        != (first.metrics["val_loss@mlp"])
    )


def test_regression_proxy_objectives_and_gate():
    config = EvaluatorConfig(
        proxies=[{"name": "fit", "arch": "mlp", "dataset": "test_sine", "steps": 50}],
        objectives=[{"name": "val_rmse@fit", "direction": "min"}],
    )
    outcome = ProxyEvaluator(SPACE, config, "cpu").evaluate(G("tanh"))
    assert outcome.status == "done" and outcome.objectives["val_rmse@fit"] > 0
    assert "mean_val_acc" not in outcome.metrics


@pytest.mark.parametrize(
    ("objective", "message"),
    [("val_rmse@mlp", "val_rmse@mlp"), ("accuracy", "accuracy"), ("val_acc", "known metrics")],
)
def test_unknown_objectives_fail_at_construction(objective, message):
    with pytest.raises(EvaluatorSetupError, match=message):
        ProxyEvaluator(SPACE, proxy_config(objectives=[{"name": objective}]), "cpu")


def test_config_errors_at_construction():
    with pytest.raises(ValidationError, match="names proxy 'cnn'"):
        proxy_config(objectives=[{"name": "val_acc@cnn"}])
    bad_options = [{"name": "mlp", "arch": "mlp", "dataset": "digits", "dataset_options": {"val_fraction": 2}}]
    with pytest.raises(EvaluatorSetupError, match="proxy 'mlp': cannot load dataset 'digits'"):
        ProxyEvaluator(SPACE, proxy_config(proxies=bad_options), "cpu")


def test_finite_objective_check():
    check_finite_objectives({"a": 0.5})
    with pytest.raises(Rejected, match="non-finite objectives: b=nan, c=inf"):
        check_finite_objectives({"a": 0.5, "b": float("nan"), "c": float("inf")})


def test_device_auto_and_factory():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert isinstance(make_evaluator(SPACE, proxy_config(), device="cpu"), ProxyEvaluator)
    synthetic = EvaluatorConfig(kind="synthetic", objectives=[{"name": "score"}])
    assert isinstance(make_evaluator(SPACE, synthetic), SyntheticEvaluator)


# ---------------------------------------------------------------- fingerprint

FINGERPRINT = Fingerprint()


def test_fingerprint_collides_only_for_equal_functions():
    prints = {fn: fingerprint(SPACE, G(fn), FINGERPRINT) for fn in ("relu", "max0", "tanh", "swish", "identity")}
    assert prints["relu"] == prints["max0"]
    assert len(set(prints.values())) == 4 and all(len(p) == 20 for p in prints.values())
    assert fingerprint(SPACE, G("relu"), FINGERPRINT) == prints["relu"]
    assert fingerprint(SPACE, G("tanh", learnable=True), FINGERPRINT) == prints["tanh"]  # scale starts at 1
    assert fingerprint(SPACE, G("times_zero"), FINGERPRINT) == fingerprint(SPACE, G("zeros"), FINGERPRINT)
    assert fingerprint(SPACE, G("relu"), Fingerprint(seed=5)) != prints["relu"]


def test_fingerprint_handles_non_finite_and_unbuildable():
    assert fingerprint(SPACE, G("log"), FINGERPRINT) not in (None, fingerprint(SPACE, G("exp"), FINGERPRINT))
    assert fingerprint_or_none(SPACE, G("broken"), FINGERPRINT) is None


def test_fingerprint_is_the_same_in_another_process():
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "from test_evaluators import SPACE, G, FINGERPRINT\n"
        "from evaluators import fingerprint\n"
        "print(fingerprint(SPACE, G('swish'), FINGERPRINT))\n"
    )
    tests_dir, root = Path(__file__).parent, Path(__file__).parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code, str(tests_dir), str(root)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == fingerprint(SPACE, G("swish"), FINGERPRINT)


# ---------------------------------------------------------------- synthetic


def synthetic(**settings) -> SyntheticEvaluator:
    config = EvaluatorConfig(
        kind="synthetic",
        synthetic=settings,
        objectives=[{"name": "score"}, {"name": "cost@x", "direction": "min"}],
    )
    return SyntheticEvaluator(SPACE, config)


def test_synthetic_objectives_are_deterministic_per_genome():
    evaluator = synthetic(seconds=0.02)
    outcome = evaluator.evaluate(G("relu"))
    assert (outcome.status, outcome.stage) == ("done", "full") and outcome.seconds >= 0.02
    assert set(outcome.objectives) == {"score", "cost@x"}
    assert all(0.0 <= value < 1.0 for value in outcome.objectives.values())
    assert synthetic().evaluate(G("relu")).objectives == outcome.objectives
    assert evaluator.evaluate(G("tanh")).objectives != outcome.objectives


def test_synthetic_fault_injection():
    evaluator = synthetic(fail_on=['"tanh"'], nan_on=["swish"])
    failed = evaluator.evaluate(G("tanh"))
    assert (failed.status, failed.stage) == ("failed", "full")
    assert failed.reason == "SyntheticFailure: canonical form contains fail_on marker '\"tanh\"'"
    rejected = evaluator.evaluate(G("swish"))
    assert (rejected.status, rejected.stage) == ("rejected", "full")
    assert rejected.reason.startswith("non-finite objectives: score=nan")
    assert evaluator.evaluate(G("relu")).status == "done"


def test_synthetic_hang_never_returns():
    evaluator = synthetic(hang_on=["identity"])
    worker = threading.Thread(target=evaluator.evaluate, args=(G("identity"),), daemon=True)
    worker.start()
    worker.join(timeout=1.5)
    assert worker.is_alive()


# ---------------------------------------------------------------- the real activation space


@pytest.fixture(scope="module")
def activation():
    return get_space("activation")


def test_activation_space_fingerprints(activation):
    def fp(text: str) -> str:
        return fingerprint(activation, activation.parse(text), FINGERPRINT)

    assert fp("relu(x)") == fp("max(x, 0)") == fingerprint(SPACE, G("relu"), FINGERPRINT)
    assert fp("silu(x)") == fp("x*sigmoid({1.0}*x)")
    assert len({fp("relu(x)"), fp("gelu(x)"), fp("silu(x)"), fp("tanh(x)"), fp("x")}) == 5


@pytest.mark.parametrize(
    ("text", "status", "stage", "reason"),
    [
        ("sin(1.0)", "rejected", "static", "does not depend on x"),
        ("exp(exp(x))", "rejected", "numeric_probe", "non-finite output"),
        ("x*0", "rejected", "numeric_probe", "gradient ~0"),
        ("relu(x)", "done", "full", ""),
    ],
)
def test_activation_space_through_the_cascade(activation, text, status, stage, reason):
    outcome = ProxyEvaluator(activation, proxy_config(), "cpu").evaluate(activation.parse(text))
    assert (outcome.status, outcome.stage) == (status, stage) and reason in outcome.reason


def test_activation_space_baselines_and_samples_never_fail(activation):
    rejection = {"quality_gate": {"steps": 30, "min_chance_multiple": 1.5}, "stability": {"enabled": True}}
    evaluator = ProxyEvaluator(activation, proxy_config(rejection=rejection), "cpu")
    outcomes = {name: evaluator.evaluate(genome, steps=20) for name, genome in activation.seeds().items()}
    assert len(outcomes) >= 8 and {name: o.status for name, o in outcomes.items() if o.status != "done"} == {}
    rng = np.random.default_rng(0)
    for _ in range(30):
        genome = activation.sample(rng)
        outcome = evaluator.evaluate(genome, steps=20)
        assert outcome.status != "failed", (activation.describe(genome), outcome.reason)
