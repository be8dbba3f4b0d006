"""The norm-act space: reference layers (timm EvoNorms, torch norms), export equality, genome handling."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spaces import GenomeError, SpaceConfigError, get_space
from spaces.normact import NormActSpace
from spaces.normact.genome import make_genome

TOL = 1e-5


def timm_evonorm() -> types.ModuleType:
    """timm's real ``evo_norm`` module (EvoNorm2dB0 / EvoNorm2dS0).

    timm's package ``__init__`` imports torchvision, which does not import beside a CPU-only torch; evo_norm
    itself needs only torch, so when the normal import fails it is loaded from timm's files under a private
    package name that skips that ``__init__``.
    """
    try:
        from timm.layers import evo_norm

        return evo_norm
    except ImportError:
        spec = importlib.util.find_spec("timm")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("timm is not installed (test dependency: pip install --no-deps timm)")
        if "_timm_layers" not in sys.modules:
            package = types.ModuleType("_timm_layers")
            package.__path__ = [str(Path(spec.submodule_search_locations[0]) / "layers")]
            sys.modules["_timm_layers"] = package
        return importlib.import_module("_timm_layers.evo_norm")


def load_export(source: str, class_name: str, tmp_path: Path) -> type[nn.Module]:
    path = tmp_path / f"{class_name.lower()}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"exported_{class_name.lower()}_{id(source)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)


def randomize(*params: torch.Tensor) -> None:
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn_like(p) * 0.5 + 1.0)


def batches(shape: tuple[int, ...], count: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * (1 + i) + 0.5 * i for i in range(count)]


def assert_same_function(ours: nn.Module, ref: nn.Module, inputs: list[torch.Tensor], buffers: dict[str, str]) -> None:
    """Train mode over several batches (outputs, input gradients, running buffers), then eval mode."""
    for x in inputs:
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(xa), ref(xb)
        torch.testing.assert_close(ya, yb, atol=TOL, rtol=TOL)
        grad = torch.randn_like(ya)
        ya.backward(grad)
        yb.backward(grad)
        torch.testing.assert_close(xa.grad, xb.grad, atol=TOL, rtol=TOL)
        for our_name, ref_name in buffers.items():
            torch.testing.assert_close(getattr(ours, our_name), getattr(ref, ref_name), atol=TOL, rtol=TOL)
    ours.eval()
    ref.eval()
    for x in inputs:
        torch.testing.assert_close(ours(x), ref(x), atol=TOL, rtol=TOL)


# ---------------------------------------------------------------------------------------------- references


def test_evonorm_b0_matches_timm_in_train_and_eval_with_running_variance():
    evo = timm_evonorm()
    space = NormActSpace(mode="B", eps=1e-3)  # timm's B0 default eps
    ours = space.build(space.seeds()["evonorm_b0"], channels=64)
    ref = evo.EvoNorm2dB0(64, eps=1e-3, momentum=0.1)
    randomize(ref.v, ref.weight, ref.bias)
    ours.load_state_dict({"v1": ref.v, "weight": ref.weight, "bias": ref.bias, "running_var_4": ref.running_var})
    assert_same_function(ours, ref, batches((6, 64, 5, 5), 4), {"running_var_4": "running_var"})
    assert not torch.allclose(ref.running_var, torch.ones(64))  # the running variance really moved


def test_evonorm_s0_matches_timm_in_train_and_eval():
    evo = timm_evonorm()
    space = NormActSpace(mode="S", eps=1e-5, groups=32)
    ours = space.build(space.seeds()["evonorm_s0"], channels=64)
    ref = evo.EvoNorm2dS0(64, groups=32, eps=1e-5)
    randomize(ref.v, ref.weight, ref.bias)
    ours.load_state_dict({"v1": ref.v, "weight": ref.weight, "bias": ref.bias})
    assert_same_function(ours, ref, batches((4, 64, 5, 5), 3), {})


class NormThenAct(nn.Module):
    def __init__(self, norm: nn.Module, act: nn.Module):
        super().__init__()
        self.norm, self.act = norm, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(x))


def _copy_norm_affine(ours: nn.Module, norm: nn.Module) -> None:
    """The norm's affine is the graph's v1 * . + v0; the layer's own gamma / beta stay 1 / 0."""
    randomize(norm.weight, norm.bias)
    with torch.no_grad():
        ours.v1.copy_(norm.weight)
        ours.v0.copy_(norm.bias)


def test_bn_relu_matches_batchnorm2d_relu_including_running_statistics():
    space = NormActSpace(mode="B", eps=1e-5, momentum=0.1)
    ours = space.build(space.seeds()["bn_relu"], channels=16)
    ref = NormThenAct(nn.BatchNorm2d(16, eps=1e-5, momentum=0.1), nn.ReLU())
    _copy_norm_affine(ours, ref.norm)
    ref.running_mean, ref.running_var = ref.norm.running_mean, ref.norm.running_var
    assert_same_function(
        ours, ref, batches((8, 16, 4, 4), 4), {"running_mean_4": "running_mean", "running_var_7": "running_var"}
    )


def test_gn_relu_matches_groupnorm_relu_with_groups_reduced_to_divide_channels():
    space = NormActSpace(mode="S", groups=32)
    ours = space.build(space.seeds()["gn_relu"], channels=48)
    assert ours.groups == 24
    ref = NormThenAct(nn.GroupNorm(24, 48, eps=1e-5), nn.ReLU())
    _copy_norm_affine(ours, ref.norm)
    assert_same_function(ours, ref, batches((3, 48, 5, 5), 3), {})


def test_ln_gelu_on_tokens_matches_layernorm_gelu():
    space = NormActSpace(mode="S")
    ours = space.build(space.seeds()["ln_gelu"], channels=32, layout="nlc")
    ref = NormThenAct(nn.LayerNorm(32, eps=1e-5), nn.GELU())
    _copy_norm_affine(ours, ref.norm)
    assert_same_function(ours, ref, batches((3, 7, 32), 3), {})


def test_bn_relu_on_tokens_matches_batchnorm1d_over_positions():
    space = NormActSpace(mode="B")
    ours = space.build(space.seeds()["bn_relu"], channels=8, layout="nlc")
    ref = NormThenAct(nn.BatchNorm1d(8), nn.ReLU())
    _copy_norm_affine(ours, ref.norm)
    for x in batches((4, 6, 8), 3):
        torch.testing.assert_close(ours(x), ref(x.transpose(1, 2)).transpose(1, 2), atol=TOL, rtol=TOL)
    torch.testing.assert_close(ours.running_var_7, ref.norm.running_var, atol=TOL, rtol=TOL)


# ---------------------------------------------------------------------------------------------- export


def _check_export(space: NormActSpace, genome: dict, layout: str, tmp_path: Path, name: str) -> None:
    channels = 8
    shape = (4, channels, 3, 3) if layout == "nchw" else (4, 5, channels)
    platform = space.build(genome, channels=channels, layout=layout)
    exported = load_export(space.to_source(genome, name), name, tmp_path)(channels, layout)
    randomize(*platform.parameters())
    exported.load_state_dict(platform.state_dict())  # strict: the same parameter and buffer names
    for x in batches(shape, 3, seed=1):
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = platform(xa), exported(xb)
        torch.testing.assert_close(ya, yb, atol=TOL, rtol=TOL, equal_nan=True)
        if torch.isfinite(ya).all():
            ya.sum().backward()
            yb.sum().backward()
            torch.testing.assert_close(xa.grad, xb.grad, atol=TOL, rtol=TOL, equal_nan=True)
    for key, value in platform.state_dict().items():
        torch.testing.assert_close(value, exported.state_dict()[key], atol=TOL, rtol=TOL, equal_nan=True)
    platform.eval()
    exported.eval()
    for x in batches(shape, 2, seed=2):
        torch.testing.assert_close(platform(x), exported(x), atol=TOL, rtol=TOL, equal_nan=True)


@pytest.mark.parametrize("mode", ["B", "S"])
@pytest.mark.parametrize("layout", ["nchw", "nlc"])
def test_exported_seeds_match_platform_after_running_statistics_updates(mode, layout, tmp_path):
    space = NormActSpace(mode=mode, groups=4)
    for name, genome in space.seeds().items():
        _check_export(space, genome, layout, tmp_path, "".join(part.title() for part in name.split("_")))


@pytest.mark.parametrize("mode", ["B", "S"])
def test_exported_sampled_genomes_match_platform(mode, tmp_path):
    space = NormActSpace(mode=mode, groups=4)
    rng = np.random.default_rng(11)
    genome = space.sample(rng)
    for i in range(40):
        genome = space.sample(rng) if i % 2 == 0 else space.mutate(genome, rng)[0]
        _check_export(space, genome, "nchw" if i % 4 < 2 else "nlc", tmp_path, f"Sampled{i}")


def test_export_imports_only_torch_and_scripts(tmp_path):
    space = NormActSpace(mode="B")
    for name, genome in space.seeds().items():
        source = space.to_source(genome, "Layer")
        imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert all(line.split()[1].split(".")[0] == "torch" for line in imports), imports
        layer = load_export(source, "Layer", tmp_path)(16)
        scripted = torch.jit.script(layer)
        x = torch.randn(4, 16, 3, 3)
        torch.testing.assert_close(scripted(x), layer(x), atol=TOL, rtol=TOL, msg=name)


def test_export_compiles(tmp_path):
    space = NormActSpace(mode="B")
    layer = load_export(space.to_source(space.seeds()["evonorm_b0"], "B0"), "B0", tmp_path)(8)
    compiled = torch.compile(layer)
    x = torch.randn(4, 8, 4, 4)
    torch.testing.assert_close(compiled(x), layer(x), atol=TOL, rtol=TOL)


def test_to_source_rejects_a_bad_class_name():
    space = NormActSpace()
    with pytest.raises(GenomeError, match="identifier"):
        space.to_source(space.seeds()["evonorm_b0"], "class")


# ---------------------------------------------------------------------------------------------- genomes


def _b0() -> dict:
    return NormActSpace(mode="B").seeds()["evonorm_b0"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g["nodes"][0].update(op="softmax"), "unknown op 'softmax' at node 4"),
        (lambda g: g["nodes"][1].update({"in": [0, 7]}), r"node 5 \(mul\) input 7 is not an earlier node"),
        (lambda g: g["nodes"][1].update({"in": [0, True]}), "input True is not an earlier node"),
        (lambda g: g["nodes"][1].update({"in": [0]}), r"node 5 \(mul\) takes 2 input"),
        (lambda g: g.update(mode="S"), "batch statistic 'batch_std', which mode 'S'"),
        (lambda g: g.update(mode="X"), "mode must be 'B'"),
        (lambda g: g.update(output=2), "'output' must be an intermediate node index 4..9"),
        (lambda g: g.update(colour=1), r"unknown genome field\(s\) \['colour'\]"),
        (lambda g: g.pop("eps"), r"missing field\(s\) \['eps'\]"),
        (lambda g: g.update(eps=float("nan")), "'eps' must be a finite number"),
        (lambda g: g.update(momentum=1.5), r"'momentum' must be in \(0.0, 1.0\]"),
        (lambda g: g.update(exp_max=500.0), "'exp_max' must be in"),
        (lambda g: g.update(groups=0), "'groups' must be an integer"),
        (lambda g: g.update(nodes=[]), "'nodes' must be a list of 1 to 64 nodes"),
        (lambda g: g["nodes"].__setitem__(0, {"op": "abs", "in": [0], "x": 1}), "exactly the fields 'op' and 'in'"),
        (lambda g: g.update(space="activation"), "expected 'normact'"),
        (lambda g: g.update(v=2), "version 2 is not supported"),
    ],
)
def test_validate_explains_what_is_wrong(edit, message):
    genome = _b0()
    edit(genome)
    with pytest.raises(GenomeError, match=message):
        NormActSpace(mode="B").validate(genome)


def test_static_problems_name_the_reason():
    space = NormActSpace(mode="B")
    assert space.static_problems(_b0()) == []
    constant = _b0()
    constant["nodes"].append({"op": "add", "in": [2, 3]})
    constant["output"] = 10
    assert "does not depend on x" in space.static_problems(constant)[0]
    statistic = _b0()
    statistic["output"] = 6  # instance_std(x)
    assert "no element-wise path from x" in space.static_problems(statistic)[0]
    batch_in_s = dict(_b0(), mode="S")
    assert "mode 'S'" in space.static_problems(batch_in_s)[0]


def test_canonical_ignores_dead_nodes_node_order_and_commuted_inputs():
    space = NormActSpace(mode="B")
    base = _b0()
    with_dead = copy.deepcopy(base)
    with_dead["nodes"].insert(0, {"op": "exp", "in": [2]})  # dead node 4; shift every later index by one
    for node in with_dead["nodes"][1:]:
        node["in"] = [i + 1 if i >= 4 else i for i in node["in"]]
    with_dead["output"] += 1
    reordered = copy.deepcopy(base)  # instance_std first, then batch_std; commuted max and mul inputs
    reordered["nodes"] = [
        {"op": "instance_std", "in": [0]},
        {"op": "mul", "in": [3, 0]},
        {"op": "batch_std", "in": [0]},
        {"op": "add", "in": [4, 5]},
        {"op": "max", "in": [7, 6]},
        {"op": "div", "in": [0, 8]},
    ]
    assert space.canonical(with_dead) == space.canonical(base) == space.canonical(reordered)
    changed = copy.deepcopy(base)
    changed["nodes"][4]["op"] = "add"
    assert space.canonical(changed) != space.canonical(base)
    canonical = json.loads(space.canonical(with_dead))
    assert len(canonical["nodes"]) == 6 and canonical["output"] == 9


def test_sample_and_mutate_are_deterministic_and_mutate_a_live_node():
    space = NormActSpace(mode="B", nodes=10)
    a, b = space.sample(np.random.default_rng(3)), space.sample(np.random.default_rng(3))
    assert a == b and len(a["nodes"]) == 10 and not space.static_problems(a)
    child_a, op_a = space.mutate(a, np.random.default_rng(5))
    child_b, op_b = space.mutate(a, np.random.default_rng(5))
    assert child_a == child_b and op_a == op_b == "node"
    changed = [i for i, (old, new) in enumerate(zip(a["nodes"], child_a["nodes"], strict=True)) if old != new]
    assert len(changed) == 1
    from spaces.normact.genome import live_indices

    assert changed[0] + 4 in live_indices(a)
    assert space.mutate(a, np.random.default_rng(5))[0] != a


def test_crossover_mixes_nodes_of_equal_length_parents():
    space = NormActSpace(mode="S", nodes=8)
    rng = np.random.default_rng(0)
    a, b = space.sample(rng), space.sample(rng)
    child = space.crossover(a, b, rng)
    space.validate(child)
    assert all(node in (na, nb) for node, na, nb in zip(child["nodes"], a["nodes"], b["nodes"], strict=True))
    assert space.crossover(a, NormActSpace(mode="S", nodes=5).sample(rng), rng) is None


def test_s_mode_never_samples_batch_statistics():
    space = NormActSpace(mode="S")
    rng = np.random.default_rng(0)
    genome = space.sample(rng)
    for _ in range(200):
        genome = space.mutate(genome, rng)[0]
        assert not any(node["op"].startswith("batch_") for node in genome["nodes"])
    assert set(space.seeds()) == {"gn_relu", "ln_gelu", "evonorm_s0"}
    assert set(NormActSpace(mode="B").seeds()) == {"bn_relu", "gn_relu", "ln_gelu", "evonorm_b0", "evonorm_s0"}


def test_describe_text_latex_and_graph():
    space = NormActSpace(mode="B")
    assert space.describe(_b0()) == "y = gamma * (x / max(batch_std(x), x * v1 + instance_std(x))) + beta"
    assert r"\frac{x}{\max" in space.describe(_b0(), "latex")
    graph = json.loads(space.describe(_b0(), "graph"))
    ids = {node["id"] for node in graph["nodes"]}
    assert {0, 3, 4, 9} <= ids and graph["output"] in ids
    assert all(edge["source"] in ids and edge["target"] in ids for edge in graph["edges"])
    assert {"source": 9, "target": graph["output"], "arg": 0} in graph["edges"]
    with pytest.raises(ValueError, match="describe format"):
        space.describe(_b0(), "svg")


def test_registry_options_and_probe():
    space = get_space("normact", mode="S", nodes=6, ops=["add", "mul", "group_std", "sigmoid"])
    assert isinstance(space, NormActSpace) and space.ops == ("add", "mul", "group_std", "sigmoid")
    with pytest.raises(SpaceConfigError, match="forbids batch statistics"):
        get_space("normact", mode="S", ops=["batch_var"])
    with pytest.raises(SpaceConfigError, match="unknown normact op"):
        get_space("normact", ops=["softmax"])
    with pytest.raises(SpaceConfigError, match="momentum"):
        get_space("normact", momentum=0.0)
    layer, inputs = space.probe(space.seeds()["evonorm_s0"], torch.linspace(-20, 20, 2001))
    assert inputs.shape == (4, 8, 4, 4) and inputs.min() == -20 and inputs.max() == 20
    assert torch.isfinite(layer(inputs)).all()


def test_layer_checks_its_input_and_supports_flat_features():
    space = NormActSpace(mode="B")
    layer = space.build(_b0(), channels=8)
    with pytest.raises(ValueError, match="C=8"):
        layer(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="layout"):
        space.build(_b0(), channels=8, layout="nhwc")
    assert layer(torch.randn(5, 8)).shape == (5, 8)  # (N, C) features: instance statistics of one value


# ---------------------------------------------------------------------------------------------- the constant 1

# EvoNorm-B1: x / max(sqrt(var_NHW(x) + eps), (x + 1) * sqrt(mean_HW(x^2) + eps)); "one" is the constant 1.
B1_NODES = [
    ("batch_std", 0),  # 4
    ("one",),  # 5
    ("add", 0, 5),  # 6
    ("instance_rms", 0),  # 7
    ("mul", 6, 7),  # 8
    ("max", 4, 8),  # 9
    ("div", 0, 9),  # 10
]


def test_evonorm_b0_seed_has_timms_default_eps():
    timm_b0_eps = inspect.signature(timm_evonorm().EvoNorm2dB0).parameters["eps"].default
    seeds = NormActSpace(mode="B").seeds()
    assert seeds["evonorm_b0"]["eps"] == timm_b0_eps == 1e-3
    assert seeds["evonorm_s0"]["eps"] == seeds["bn_relu"]["eps"] == 1e-5  # timm's S0 and torch's norms
    other = NormActSpace(mode="B", eps=1e-4)  # the option sets sampled graphs' eps; a seed stays the published layer
    assert other.seeds()["evonorm_b0"]["eps"] == 1e-3 and other.sample(np.random.default_rng(0))["eps"] == 1e-4


def test_evonorm_b1_with_the_constant_one_matches_timm_and_its_export(tmp_path):
    evo = timm_evonorm()
    space = NormActSpace(mode="B")
    genome = make_genome("B", B1_NODES, **space.defaults)
    assert space.static_problems(genome) == []
    assert space.describe(genome) == "y = gamma * (x / max(batch_std(x), (x + 1) * instance_rms(x))) + beta"
    ours = space.build(genome, channels=64)
    ref = evo.EvoNorm2dB1(64, eps=space.defaults["eps"], momentum=space.defaults["momentum"])
    randomize(ref.weight, ref.bias)
    ours.load_state_dict({"weight": ref.weight, "bias": ref.bias, "running_var_4": ref.running_var})
    assert_same_function(ours, ref, batches((6, 64, 5, 5), 4), {"running_var_4": "running_var"})
    _check_export(space, genome, "nchw", tmp_path, "EvoNormB1")
    layer = load_export(space.to_source(genome, "B1"), "B1", tmp_path)(16)
    x = torch.randn(4, 16, 3, 3)
    torch.testing.assert_close(torch.jit.script(layer)(x), layer(x), atol=TOL, rtol=TOL)


def test_the_constant_one_is_drawn_only_where_a_space_lists_it():
    rng = np.random.default_rng(0)
    default = NormActSpace(mode="B")
    assert "one" not in default.ops  # a default search draws EvoNorm's vocabulary, as it always did
    listed = NormActSpace(mode="B", ops=["one", "add", "mul", "instance_std", "div"])
    drawn = [node for _ in range(50) for node in listed.sample(rng)["nodes"] if node["op"] == "one"]
    assert drawn and all(node["in"] == [] for node in drawn)
    constant_output = make_genome("B", [("one",)], **default.defaults)
    assert "does not depend on x" in default.static_problems(constant_output)[0]
    with pytest.raises(GenomeError, match=r"node 4 \(one\) takes 0 input"):
        default.validate(make_genome("B", [("one", 0)], **default.defaults))
