"""The activation space: genome whitelist, text round trip, variation, torch build and standalone export."""

from __future__ import annotations

import ast
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spaces import GenomeError, Space, SpaceConfigError, get_space
from spaces.activation import BINARY_OPS, MUTATIONS, UNARY_OPS, ActivationSpace

X = torch.linspace(-10.0, 10.0, 2001)
SCHEMAS = {
    "tree": {"schema": "tree"},
    "unary_unary": {"schema": "unary_unary"},
    "binary_unary": {"schema": "binary_unary"},
    "core_unit_1": {"schema": "core_unit", "units": 1},
    "core_unit_2": {"schema": "core_unit", "units": 2},
}
SHAPES = {
    "unary_unary": "u(u(x))",
    "binary_unary": "b(u(x),u(x))",
    "core_unit_1": "b(u(x),u(x))",
    "core_unit_2": "b(u(b(u(x),u(x))),u(x))",
}
REFERENCES = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
    "mish": F.mish,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "crrelu": lambda x: F.relu(x) + 0.01 * x * torch.exp(-(x**2) / 2),
}


def op_tree(node: dict) -> str:
    if "args" not in node:
        return node["op"]
    return node["op"] + "(" + ",".join(op_tree(arg) for arg in node["args"]) + ")"


def _scalars(node: dict) -> list:
    found = [(key, node[key]) for key in ("alpha", "beta") if key in node]
    return found + [item for arg in node.get("args", ()) for item in _scalars(arg)]


def _ops(node: dict) -> list[str]:
    return [node["op"]] + [op for arg in node.get("args", ()) for op in _ops(arg)]


def _size(node: dict) -> int:
    return 1 + sum(_size(arg) for arg in node.get("args", ()))


def shape(node: dict) -> str:
    if "args" not in node:
        return node["op"]
    return ("u" if len(node["args"]) == 1 else "b") + "(" + ",".join(shape(arg) for arg in node["args"]) + ")"


def varied_genomes(space: ActivationSpace, count: int, seed: int = 0) -> list[dict]:
    """Sampled genomes, each followed by a short chain of mutations (so params get non-default values)."""
    rng = np.random.default_rng(seed)
    genomes = []
    while len(genomes) < count:
        genome = space.sample(rng)
        genomes.append(genome)
        for _ in range(int(rng.integers(1, 5))):
            genome, _ = space.mutate(genome, rng)
            genomes.append(genome)
    return genomes[:count]


def load_source(source: str, class_name: str, folder: Path) -> type[torch.nn.Module]:
    """Import an exported module from a real file (torch.jit.script needs the source on disk)."""
    path = folder / f"{class_name.lower()}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"exported_{class_name.lower()}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, class_name)


def exec_source(source: str, class_name: str) -> torch.nn.Module:
    namespace: dict = {}
    exec(compile(source, "<export>", "exec"), namespace)
    return namespace[class_name]()


def assert_same(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=atol, equal_nan=True)


# -- seeds -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_seed_matches_torch_reference(name):
    space = ActivationSpace()
    module = space.build(space.seeds()[name])
    with torch.no_grad():
        assert_same(module(X), REFERENCES[name](X))


@pytest.mark.parametrize("schema", ["unary_unary", "binary_unary", "core_unit_2"])
def test_seeds_embedded_in_fixed_schemas_keep_their_function(schema):
    space = ActivationSpace(**SCHEMAS[schema])
    seeds = space.seeds()
    assert {"relu", "gelu", "silu", "mish", "tanh"} <= set(seeds)
    for name, genome in seeds.items():
        assert shape(genome["expr"]) == SHAPES[schema]
        with torch.no_grad():
            assert_same(space.build(genome)(X), REFERENCES[name](X))


def test_swish_seed_has_learnable_beta_initialised_to_one():
    space = ActivationSpace()
    module = space.build(space.seeds()["swish"])
    params = dict(module.named_parameters())
    assert len(params) == 1
    assert next(iter(params.values())).item() == 1.0


# -- text form -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_text_round_trip_is_stable(schema):
    space = ActivationSpace(**SCHEMAS[schema], param_probability=0.4)
    for genome in varied_genomes(space, 500):
        text = space.describe(genome)
        parsed = space.parse(text)
        assert parsed == genome, text
        assert space.canonical(parsed) == space.canonical(genome)
        assert space.describe(parsed) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.0 + x*x^2", "add(const,mul(x,pow(x,const)))"),
        ("-x^2", "neg(pow(x,const))"),
        ("-2.0*x", "mul(const,x)"),
        ("x - -1", "sub(x,const)"),
        ("2**3**x", "pow(const,pow(const,x))"),
        ("x/sin(x)*x", "mul(div(x,sin(x)),x)"),
        ("swish(x) + arctan(x)", "add(silu(x),atan(x))"),
        ("max(relu(x), x*sigmoid(1.0*x))", "max(relu(x),mul(x,sigmoid(mul(const,x))))"),
    ],
)
def test_parse_follows_precedence(text, expected):
    assert op_tree(ActivationSpace().parse(text)["expr"]) == expected


def test_parse_reads_learnable_scalars():
    space = ActivationSpace()
    expr = space.parse("{1.5}*tanh({0.5}*x) + blend(x, sin(({2.0}*cos(x))), {0.25})")["expr"]
    scaled_tanh, blend = expr["args"]
    assert (scaled_tanh["op"], scaled_tanh["alpha"], scaled_tanh["beta"]) == ("tanh", 1.5, 0.5)
    assert (blend["op"], blend["beta"]) == ("blend", 0.25)
    sin = blend["args"][1]
    assert "beta" not in sin and sin["args"][0] == {"op": "cos", "args": [{"op": "x"}], "alpha": 2.0}
    assert space.parse("sin({2.0}*cos(x))")["expr"]["beta"] == 2.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo(x)", "unknown function 'foo'"),
        ("relu(x", "expected ')'"),
        ("{2.0}*x", "needs an operation to scale"),
        ("x*{2.0}*sin(x)", "starts a product"),
        ("sin({2.0}*x + 1)", "scales one factor"),
        ("blend(x, x)", "learnable scalar as third argument"),
        ("x $ 2", "unexpected character '$'"),
        ("y + 1", "unknown name 'y'"),
        ("exp(1e999*x)", "not finite"),
    ],
)
def test_parse_errors_say_what_and_where(text, message):
    with pytest.raises(GenomeError, match="position") as info:
        ActivationSpace().parse(text)
    assert message in str(info.value)


# -- canonical and validate ------------------------------------------------------------------------------------


def test_canonical_sorts_commutative_args_and_rounds_params():
    space = ActivationSpace()
    canonical = space.canonical
    assert canonical(space.parse("max(relu(x), sin(x))")) == canonical(space.parse("max(sin(x), relu(x))"))
    assert canonical(space.parse("x*tanh(x) + exp(x)")) == canonical(space.parse("exp(x) + tanh(x)*x"))
    assert canonical(space.parse("gauss_diff(x, sin(x), {1.0})")) == canonical(
        space.parse("gauss_diff(sin(x), x, {1.0})")
    )
    assert canonical(space.parse("relu(x) - sin(x)")) != canonical(space.parse("sin(x) - relu(x)"))
    assert canonical(space.parse("{1.0000001}*sin(x)")) == canonical(space.parse("{1.0}*sin(x)"))
    assert canonical(space.parse("{1.001}*sin(x)")) != canonical(space.parse("{1.0}*sin(x)"))
    assert space.key(space.parse("min(x, 1.0)")) == space.key(space.parse("min(1.0, x)"))


def test_features_equal_the_built_modules_outputs_bit_for_bit():
    """The surrogate describes candidates without building them; the numbers must be the module's."""
    space = get_space("activation", schema="tree", max_depth=4, max_nodes=10, max_params=2)
    rng = np.random.default_rng(0)
    inputs = torch.linspace(-5, 5, 257)
    for _ in range(300):
        genome = space.sample(rng)
        built = Space.features(space, genome, inputs)  # the contract's default: build, then call
        np.testing.assert_array_equal(space.features(genome, inputs), built)  # NaN where the module gives NaN


def test_structure_sets_learnable_initial_values_aside_and_nothing_else():
    space = ActivationSpace()
    structure = space.structure
    start = space.parse("blend(x, {0.99}*max(x, gaussian(x)*x), {0.4855})")
    assert structure(start) == structure(space.parse("blend(x, {2.5}*max(gaussian(x)*x, x), {0.4959})"))
    assert structure(start) != structure(space.parse("blend(x, max(x, gaussian(x)*x), {0.4959})"))  # no scale
    assert structure(space.parse("elu({0.5}*x)")) != structure(space.parse("elu(0.5*x)"))  # a fixed constant
    assert structure(space.parse("elu(0.5*x)")) != structure(space.parse("elu(2.0*x)"))
    assert structure(space.parse("relu(x)")) == space.canonical(space.parse("relu(x)"))


def _genome(expr):
    return {"space": "activation", "v": 1, "expr": expr}


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ({"op": "relu", "args": [{"op": "foo"}]}, "unknown op 'foo' at expr.args[0]; known unary ops: identity"),
        ({"op": "add", "args": [{"op": "x"}]}, "op 'add' at expr takes 2 argument(s) in 'args', got 1"),
        ({"op": "relu", "args": [{"op": "x", "value": 1}]}, "unexpected key(s) ['value'] at expr.args[0]"),
        ({"op": "add", "args": [{"op": "x"}, {"op": "x"}], "beta": 1.0}, "unexpected key(s) ['beta'] at expr"),
        ({"op": "relu", "args": [{"op": "const", "value": float("nan")}]}, "expr.args[0].value must be a finite"),
        ({"op": "relu", "args": [{"op": "x"}], "alpha": "1"}, "expr.alpha must be a finite number"),
        ({"op": "blend", "args": [{"op": "x"}, {"op": "x"}]}, "needs a number 'beta'"),
        ({"op": "relu", "args": {"op": "x"}}, "give 'args' as a list of 1 node(s)"),
    ],
)
def test_validate_refuses_with_clear_message(expr, message):
    with pytest.raises(GenomeError) as info:
        ActivationSpace().validate(_genome(expr))
    assert message in str(info.value)


def test_validate_refuses_headers_limits_schema_and_disabled_ops():
    space = ActivationSpace(max_depth=2, max_nodes=5, max_params=1, unary_ops=["relu", "sin"])
    with pytest.raises(GenomeError, match="unexpected top-level key"):
        space.validate({**space.parse("relu(x)"), "note": "hi"})
    with pytest.raises(GenomeError, match="genome is for space 'kan'"):
        space.validate({**space.parse("relu(x)"), "space": "kan"})
    with pytest.raises(GenomeError, match="deeper than max_depth=2"):
        space.validate(
            _genome({"op": "relu", "args": [{"op": "relu", "args": [{"op": "sin", "args": [{"op": "x"}]}]}]})
        )
    with pytest.raises(GenomeError, match="over max_nodes=5"):
        space.parse("(x + x)*(x + x)")
    with pytest.raises(GenomeError, match="over max_params=1"):
        space.parse("{2.0}*relu({2.0}*x)")
    with pytest.raises(GenomeError, match="'tanh' at expr is not enabled in this space; enabled unary ops: relu, sin"):
        space.parse("tanh(x)")
    with pytest.raises(GenomeError, match=r"unary_unary shape unary\(unary\(x\)\)"):
        ActivationSpace(schema="unary_unary").parse("relu(x)")


def test_validate_stops_on_deep_nesting_without_recursion_error():
    expr = {"op": "x"}
    for _ in range(5000):
        expr = {"op": "neg", "args": [expr]}
    with pytest.raises(GenomeError, match="deeper than max_depth"):
        ActivationSpace().validate(_genome(expr))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unary_ops": ["relu", "bogus"]}, "unknown unary op(s) ['bogus']; valid unary ops: identity, neg"),
        ({"binary_ops": ["xor"]}, "valid binary ops: add, sub"),
        ({"schema": "forest"}, "valid schemas: tree, unary_unary"),
        ({"schema": "tree", "units": 2}, "units applies to schema 'core_unit' only"),
        ({"schema": "core_unit", "units": 2, "max_depth": 3}, "needs max_depth >= 4"),
        ({"param_probability": 1.5}, "param_probability must be a number in [0, 1]"),
        ({"binary_ops": ["blend"], "max_params": 1}, "each carry a learnable beta"),
    ],
)
def test_bad_options_raise_space_config_error(options, message):
    with pytest.raises(SpaceConfigError) as info:
        ActivationSpace(**options)
    assert message in str(info.value)


def test_registry_builds_the_space_from_a_config():
    space = get_space("activation", schema="core_unit", units=2, unary_ops=["relu", "swish", "tanh"])
    assert isinstance(space, ActivationSpace) and space.unary_ops == ["relu", "silu", "tanh"]
    with pytest.raises(SpaceConfigError, match="bad options"):
        get_space("activation", depth=3)


def test_every_op_is_whitelisted_and_described():
    space = ActivationSpace()
    assert {"sinc", "bessel_i0e", "hard_sigmoid", "gelu_tanh", "zero", "one", "log_sigmoid"} <= set(UNARY_OPS)
    assert {"sigmoid_gate", "gauss_diff", "laplace_diff", "blend", "pow", "div"} <= set(BINARY_OPS)
    for genome in _per_op_genomes(space):
        latex = space.describe(genome, "latex")
        assert latex and "#" not in latex
    assert space.describe(space.parse("sigmoid({2.0}*x)"), "latex") == r"\sigma\left(\beta_{0} x\right)"
    # an op named in LaTeX by its own name escapes its underscores (a bare _ would subscript the rest)
    assert space.describe(space.parse("hard_sigmoid(x)"), "latex") == r"\operatorname{hard\_sigmoid}\left(x\right)"


# -- sampling and variation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_sample_and_mutate_are_deterministic_and_keep_the_schema(schema):
    space = ActivationSpace(**SCHEMAS[schema], param_probability=0.3)

    def run(seed):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(40):
            genome = space.sample(rng)
            child, op = space.mutate(genome, rng)
            out.append((space.canonical(genome), space.canonical(child), op))
            space.validate(child)
            if schema in SHAPES:
                assert shape(genome["expr"]) == shape(child["expr"]) == SHAPES[schema]
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_mutate_uses_every_operator_and_never_returns_an_equal_genome():
    space = ActivationSpace(param_probability=0.3)
    rng = np.random.default_rng(1)
    seen = set()
    genome = space.sample(rng)
    for _ in range(400):
        child, op = space.mutate(genome, rng)
        assert space.canonical(child) != space.canonical(genome)
        seen.add(op)
        genome = child
    assert seen == set(MUTATIONS)


def test_mutation_operators_do_what_their_names_say():
    space = ActivationSpace(param_probability=0.3)
    rng = np.random.default_rng(6)

    genome = space.sample(rng)
    for _ in range(300):
        child, op = space.mutate(genome, rng)
        size, child_size = _size(genome["expr"]), _size(child["expr"])
        count, child_count = len(_scalars(genome["expr"])), len(_scalars(child["expr"]))
        if op == "insert_node":
            assert child_size > size
        elif op == "remove_node":
            assert child_size < size
        elif op == "change_op":
            assert shape(child["expr"]) == shape(genome["expr"]) and _ops(child["expr"]) != _ops(genome["expr"])
        elif op == "add_param":
            assert child_count == count + 1 and _ops(child["expr"]) == _ops(genome["expr"])
        elif op == "remove_param":
            assert child_count == count - 1 and _ops(child["expr"]) == _ops(genome["expr"])
        elif op == "perturb_param":
            assert child_count == count and _ops(child["expr"]) == _ops(genome["expr"])
        genome = child


def test_fixed_schema_mutations_do_not_change_the_shape():
    space = ActivationSpace(schema="binary_unary", param_probability=0.3)
    rng = np.random.default_rng(2)
    genome, seen = space.sample(rng), set()
    for _ in range(300):
        genome, op = space.mutate(genome, rng)
        seen.add(op)
    assert seen == set(MUTATIONS) - {"insert_node", "remove_node"}


def test_mutate_does_not_change_its_argument():
    space = ActivationSpace(param_probability=0.5)
    rng = np.random.default_rng(3)
    genome = space.sample(rng)
    before = space.canonical(genome), repr(genome)
    for _ in range(50):
        space.mutate(genome, rng)
    assert (space.canonical(genome), repr(genome)) == before


def test_mutate_raises_when_nothing_can_change():
    space = ActivationSpace(schema="unary_unary", unary_ops=["relu"], max_params=0)
    with pytest.raises(GenomeError, match="no mutation"):
        space.mutate(space.parse("relu(relu(x))"), np.random.default_rng(0))


def test_crossover_respects_limits_and_schema():
    space = ActivationSpace(max_depth=3, max_nodes=7, max_params=2, param_probability=0.5)
    rng = np.random.default_rng(4)
    children = 0
    for _ in range(300):
        a, b = space.sample(rng), space.sample(rng)
        child = space.crossover(a, b, rng)
        if child is None:
            continue
        children += 1
        space.validate(child)
        assert space.canonical(child) not in (space.canonical(a), space.canonical(b))
    assert children > 200

    core = ActivationSpace(schema="core_unit", units=2)
    for _ in range(100):
        child = core.crossover(core.sample(rng), core.sample(rng), rng)
        if child is not None:
            assert shape(child["expr"]) == SHAPES["core_unit_2"]


def test_crossover_returns_none_when_no_swap_gives_a_new_genome():
    space = ActivationSpace(schema="unary_unary")
    genome = space.parse("tanh(relu(x))")
    assert space.crossover(genome, genome, np.random.default_rng(0)) is None
    child = space.crossover(genome, space.parse("sin(exp(x))"), np.random.default_rng(0))
    assert space.describe(child) in ("sin(relu(x))", "tanh(exp(x))")


def test_static_problems_flag_constant_functions():
    space = ActivationSpace()
    assert space.static_problems(space.parse("relu(x)")) == []
    for text in ("one(x) + 2.0", "sin(x) - sin(x)", "{2.0}*zero(x)", "gauss_diff(x, x, {1.0})"):
        assert "does not depend on x" in space.static_problems(space.parse(text))[0], text
    small = ActivationSpace(max_nodes=3)
    assert "over max_nodes=3" in small.static_problems(space.parse("x*x + x"))[0]


# -- torch -----------------------------------------------------------------------------------------------------


def _per_op_genomes(space: ActivationSpace) -> list[dict]:
    """Every op once, with learnable scalars at non-default values."""
    genomes = [space.parse(f"{{1.5}}*{op}({{0.7}}*x)") for op in UNARY_OPS]
    for op, spec in BINARY_OPS.items():
        extra = ", {0.8}" if spec.parametric else ""
        genomes.append(space.parse(f"{{1.25}}*{op}(x, sin(x){extra})"))
    return genomes


def test_every_op_builds_and_exports_to_the_same_numbers():
    space = ActivationSpace()
    for genome in _per_op_genomes(space):
        exported = exec_source(space.to_source(genome, "Exported"), "Exported")
        with torch.no_grad():
            expected = space.build(genome)(X)
            assert torch.isfinite(expected).all(), space.describe(genome)
            assert_same(exported(X), expected)


@pytest.mark.parametrize("schema", ["tree", "core_unit_2"])
def test_exported_source_matches_build_on_varied_genomes(schema):
    space = ActivationSpace(**SCHEMAS[schema], param_probability=0.5)
    for genome in varied_genomes(space, 150, seed=5):
        source = space.to_source(genome, "Candidate")
        imports = {
            alias.name
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        }
        assert imports == {"torch"}
        with torch.no_grad():
            assert_same(exec_source(source, "Candidate")(X), space.build(genome)(X))


def test_build_and_export_train_their_learnable_scalars():
    space = ActivationSpace()
    genome = space.parse("{1.5}*tanh({0.5}*x) + blend(x, relu(x), {0.25})")
    for module in (space.build(genome), exec_source(space.to_source(genome, "Act"), "Act")):
        params = list(module.parameters())
        assert sorted(p.item() for p in params) == [0.25, 0.5, 1.5]
        module(X).square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().item() > 0 for p in params)


def test_build_is_elementwise_for_any_shape_and_dtype():
    space = ActivationSpace()
    module = space.build(space.seeds()["crrelu"], channels=16)
    inputs = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        out = module(inputs)
        assert out.shape == inputs.shape and out.dtype == torch.float64
        assert_same(out.flatten(), module(inputs.flatten()))
        constant = space.build(space.parse("one(x) + 2.0"))(inputs)
    assert constant.shape == inputs.shape and bool((constant == 3.0).all())


def test_safe_ops_stay_finite_at_their_poles():
    space = ActivationSpace()
    inputs = torch.tensor([-1e-12, 0.0, 1e-12, -3.0, 3.0], requires_grad=True)
    for text in ("reciprocal(x)", "x/x", "log(x)", "sqrt(x)", "x^(-0.5)", "sinc(x)", "pow(x, 0.5)"):
        out = space.build(space.parse(text))(inputs)
        (grad,) = torch.autograd.grad(out.sum(), inputs)
        assert torch.isfinite(out).all() and torch.isfinite(grad).all(), text
    assert math.isclose(space.build(space.parse("sinc(x)"))(torch.tensor([0.0])).item(), 1.0)


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "swish", "mish", "crrelu"])
def test_exported_seed_scripts_with_torchscript(name, tmp_path):
    space = ActivationSpace()
    genome = space.seeds()[name]
    exported = load_source(space.to_source(genome, "Seed"), "Seed", tmp_path)()
    scripted = torch.jit.script(exported)
    with torch.no_grad():
        assert_same(scripted(X), REFERENCES[name](X))


def test_built_modules_script_with_torchscript():
    space = ActivationSpace()
    for genome in _per_op_genomes(space)[::3] + [space.seeds()["swish"]]:
        module = space.build(genome)
        with torch.no_grad():
            assert_same(torch.jit.script(module)(X), module(X))


def test_exported_swish_forward_is_one_fused_expression():
    space = ActivationSpace()
    source = space.to_source(space.seeds()["swish"], "Swish")
    assert "return x * torch.sigmoid(self.beta_0 * x)" in source
    assert "self.beta_0 = torch.nn.Parameter(torch.tensor(1.0))" in source
    assert "f(x) = x*sigmoid({1.0}*x)" in source
    with pytest.raises(ValueError, match="identifier"):
        space.to_source(space.seeds()["swish"], "not a name")


@pytest.mark.slow
def test_torch_compile_runs_exported_swish_and_built_module(tmp_path):
    space = ActivationSpace()
    genome = space.seeds()["swish"]
    exported = load_source(space.to_source(genome, "Swish"), "Swish", tmp_path)()
    built = space.build(genome)
    with torch.no_grad():
        assert_same(torch.compile(exported)(X), F.silu(X))
        assert_same(torch.compile(built)(X), F.silu(X))
