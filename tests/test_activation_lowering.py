"""Lowering: recognised subtrees become torch's fused ops in build and export, with the same numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spaces.activation import ActivationSpace, EvolvedActivation, _normalize, lower

SPACE = ActivationSpace(max_depth=30, max_nodes=400, max_params=40)
GELU_TANH = "0.5*x*(1.0 + tanh(0.7978845608028654*(x + 0.044715*cube(x))))"
SILU, GELU, MISH = "torch.nn.functional.silu", "torch.nn.functional.gelu", "torch.nn.functional.mish"
LOWERED = {  # genome text -> the exported forward's return line
    "x*sigmoid(x)": f"{SILU}(x)",
    "sigmoid(x)*x": f"{SILU}(x)",
    "x*sigmoid(1.0*x)": f"{SILU}(x)",
    "sigmoid_gate(x, x)": f"{SILU}(x)",
    "sin(x)*sigmoid(sin(x))": f"{SILU}(torch.sin(x))",
    "(x + 1.0)*sigmoid(1.0 + x)": f"{SILU}(x + torch.full_like(x, 1.0))",
    "-(-x)*sigmoid(x)": f"{SILU}(x)",
    "(x*x)*sigmoid(x*x)": f"{SILU}(x * x)",
    "{1.5}*(x*sigmoid(x))": f"self.alpha_0 * {SILU}(x)",
    GELU_TANH: f'{GELU}(x, approximate="tanh")',
    "x*(0.5 + 0.5*tanh(0.7978845608028654*x + 0.0356774081*cube(x)))": f'{GELU}(x, approximate="tanh")',
    "(tanh(0.797885*(cube(x)*0.044715 + x)) + 1.0)*x*0.5": f'{GELU}(x, approximate="tanh")',
    "0.5*cos(x)*(1.0 + tanh(0.7978845608028654*(cos(x) + 0.044715*cube(cos(x)))))": (
        f'{GELU}(torch.cos(x), approximate="tanh")'
    ),
    "0.5*x*(1.0 + erf(0.7071067811865476*x))": f"{GELU}(x)",
    "0.5*x*(1.0 + erf(x/1.4142135623730951))": f"{GELU}(x)",
    "x*(0.5 + 0.5*erf(0.707107*x))": f"{GELU}(x)",
    "x*tanh(softplus(x))": f"{MISH}(x)",
    "tanh(softplus(x))*x": f"{MISH}(x)",
    "cos(x)*tanh(softplus(cos(x)))": f"{MISH}(torch.cos(x))",
    "(-x)*tanh(softplus(-x))": f"{MISH}(-x)",
    "0.5*(x*x)*(1.0 + erf(0.7071067811865476*(x*x)))": f"{GELU}(x * x)",
    "0.6*x*(1.0 + tanh(0.7978845608028654*(1.2*x + 0.044715*cube(1.2*x))))": (
        f'{GELU}(torch.full_like(x, 1.2) * x, approximate="tanh")'
    ),
    "{0.5}*(x*tanh(softplus(x))) + relu(x)*sigmoid(relu(x))": f"(self.alpha_0 * {MISH}(x)) + {SILU}(torch.relu(x))",
}
NOT_LOWERED = [
    "x*sigmoid({1.0}*x)",  # learnable beta: silu(beta*x)/beta fails at beta = 0
    "x*sigmoid(2.0*x)",
    "x*sigmoid(sin(x))",
    "sin({0.5}*x)*sigmoid(sin({0.5}*x))",  # two copies of s, each with its own parameter
    "x*({1.0}*sigmoid(x))",
    "sigmoid_gate(x, sin(x))",
    GELU_TANH.replace("0.044715", "0.04"),
    GELU_TANH.replace("0.7978845608028654", "0.8"),
    GELU_TANH.replace("0.5*x", "0.6*x"),
    GELU_TANH.replace("1.0 + tanh", "1.0 - tanh"),
    GELU_TANH.replace("cube(x)", "pow(x, 3.0)"),  # the safe pow is |x|^3
    GELU_TANH.replace("tanh(0.7978845608028654*", "tanh({0.7978845608028654}*"),
    GELU_TANH.replace("1.0 + tanh", "1.0 + {1.0}*tanh"),
    "0.5*x*(1.0 + erf(0.7*x))",
    "0.5*x*(1.0 + erf(x/1.41))",
    "0.5*x*(1.0 + erf({0.7071067811865476}*x))",
    "x*tanh(softplus(2.0*x))",
    "x*tanh({1.0}*softplus(x))",
    "x*({1.0}*tanh(softplus(x)))",
    "x*tanh(softplus(sin(x)))",
]


def forward_return(source: str) -> str:
    return next(line.strip() for line in source.splitlines() if line.strip().startswith("return "))


def fused_ops(node: dict) -> list[str]:
    found = [node["op"]] if node["op"] in ("silu", "gelu", "gelu_tanh", "mish") else []
    return sorted(found + [op for arg in node.get("args", ()) for op in fused_ops(arg)])


def load_source(source: str, class_name: str, folder: Path) -> torch.nn.Module:
    """Import an exported module from a real file (torch.jit.script needs the source on disk)."""
    path = folder / f"{class_name.lower()}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"lowered_{class_name.lower()}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, class_name)()


def exec_source(source: str, class_name: str) -> torch.nn.Module:
    namespace: dict = {}
    exec(compile(source, "<export>", "exec"), namespace)
    return namespace[class_name]()


def values_and_grads(module: torch.nn.Module, dtype: torch.dtype) -> list[torch.Tensor]:
    x = torch.linspace(-10.0, 10.0, 2001, dtype=dtype, requires_grad=True)
    module = module.to(dtype)
    y = module(x)
    return [y, *torch.autograd.grad(y.sum(), [x, *module.parameters()])]


@pytest.mark.parametrize("text", sorted(LOWERED))
def test_each_pattern_exports_its_fused_call(text):
    genome = SPACE.parse(text)
    assert forward_return(SPACE.to_source(genome, "Act")) == f"return {LOWERED[text]}"
    canonical = _normalize(genome["expr"], digits=17)  # the canonical arrangement, constants kept exact
    assert fused_ops(lower(canonical)) == fused_ops(lower(genome["expr"])) != []


@pytest.mark.parametrize("text", sorted(LOWERED))
def test_lowered_values_and_gradients_match_the_unlowered_tree(text):
    genome = SPACE.parse(text)
    unlowered = EvolvedActivation(genome["expr"], text)
    exported = exec_source(SPACE.to_source(genome, "Act"), "Act")
    want64, want32 = (values_and_grads(unlowered, dtype) for dtype in (torch.float64, torch.float32))
    for module in (SPACE.build(genome), exported):
        torch.testing.assert_close(values_and_grads(module, torch.float64), want64, rtol=0.0, atol=1e-6)
        # float32: torch's default tolerance; the unlowered gelu_tanh loses digits to cancellation in 1 + tanh
        torch.testing.assert_close(values_and_grads(module, torch.float32), want32)


@pytest.mark.parametrize("text", NOT_LOWERED)
def test_near_misses_are_not_lowered(text):
    genome = SPACE.parse(text)
    assert lower(genome["expr"]) == genome["expr"]
    forward = forward_return(SPACE.to_source(genome, "Act"))
    assert not any(name in forward for name in (SILU, GELU, MISH))


@pytest.mark.slow
def test_lowered_exports_script_and_compile(tmp_path):
    x = torch.linspace(-10.0, 10.0, 2001)
    texts = ["{1.5}*(x*sigmoid(x))", GELU_TANH, "0.5*x*(1.0 + erf(0.7071067811865476*x))", "x*tanh(softplus(x))"]
    for index, text in enumerate(texts):
        genome = SPACE.parse(text)
        exported = load_source(SPACE.to_source(genome, f"Act{index}"), f"Act{index}", tmp_path)
        built = SPACE.build(genome)
        with torch.no_grad():
            expected = built(x)
            torch.testing.assert_close(torch.jit.script(built)(x), expected, rtol=0.0, atol=1e-6)
            torch.testing.assert_close(torch.jit.script(exported)(x), expected, rtol=0.0, atol=1e-6)
            torch.testing.assert_close(torch.compile(exported)(x), expected, rtol=1e-6, atol=1e-6)


def test_swish_with_learnable_beta_keeps_its_cheapest_safe_form():
    source = SPACE.to_source(SPACE.parse("x*sigmoid({1.0}*x)"), "Swish")
    assert forward_return(source) == "return x * torch.sigmoid(self.beta_0 * x)"


def test_lowering_keeps_parameter_names_values_and_order():
    genome = SPACE.parse("{1.5}*(x*sigmoid(x)) + {0.5}*tanh({2.0}*x)")
    built, unlowered = SPACE.build(genome), EvolvedActivation(genome["expr"], "")
    assert {k: v.item() for k, v in built.state_dict().items()} == {
        k: v.item() for k, v in unlowered.state_dict().items()
    }
    source = SPACE.to_source(genome, "Act")
    assert forward_return(source) == (
        f"return (self.alpha_0 * {SILU}(x)) + (self.alpha_1 * torch.tanh(self.beta_2 * x))"
    )
    exported = exec_source(source, "Act")
    assert [p.item() for p in exported.parameters()] == [p.item() for p in built.parameters()] == [1.5, 0.5, 2.0]


def test_build_matches_export_on_sampled_genomes_with_planted_patterns():
    """300 sampled genomes, each also wrapped in a pattern: build == export, lowered == unlowered."""
    sampler = ActivationSpace(param_probability=0.1)
    patterns = ["{s}*sigmoid({s})", "{s}*tanh(softplus({s}))", GELU_TANH.replace("x", "{s}")]
    rng = np.random.default_rng(3)
    x32 = torch.linspace(-10.0, 10.0, 2001)
    lowered = 0
    for index in range(300):
        sampled = sampler.sample(rng)
        text = patterns[index % len(patterns)].format(s=f"({sampler.describe(sampled)})")
        for genome in (sampled, SPACE.parse(text)):
            lowered += lower(genome["expr"]) != genome["expr"]
            source = SPACE.to_source(genome, "Candidate")
            with torch.no_grad():
                built = SPACE.build(genome)
                torch.testing.assert_close(
                    exec_source(source, "Candidate")(x32), built(x32), rtol=0.0, atol=1e-6, equal_nan=True
                )
                unlowered = EvolvedActivation(genome["expr"], "").double()
                torch.testing.assert_close(
                    built.double()(x32.double()), unlowered(x32.double()), rtol=1e-6, atol=1e-6, equal_nan=True
                )
    assert lowered >= 100
