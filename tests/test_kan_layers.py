"""KAN layers: shapes, exact gradients, fitting, out-of-grid inputs, memory contract, export, S-KAN selection."""

from __future__ import annotations

import ast
import importlib.util
import math
import sys

import pytest
import torch
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from spaces.kan import BASES, KANLayer, KANNetwork, KanSpace, MixedKANLayer, SelectableKANLayer, save_kan

FAMILIES = list(BASES)
KAN_ONLY = [f for f in FAMILIES if f != "mlp"]
POLYNOMIAL = {"chebyshev", "legendre"}

# Fitting f(x) = 0.8 sin(pi x) + 0.3 x on [-1, 1] with one 1->1 layer (grid 8, order 3 or degree 5, base branch),
# LBFGS in float64: the stated test RMSE each family must reach. The A+B and AB forms of AF-KAN are broad,
# ill-conditioned bases and the MLP baseline (two silu layers, 16 wide) has no basis at all, hence looser bounds.
FIT_RMSE = {f: 1e-2 for f in FAMILIES} | {"afkan_sum": 6e-2, "afkan_prod": 6e-2, "mlp": 3e-2}


def _target(x: torch.Tensor) -> torch.Tensor:
    return 0.8 * torch.sin(math.pi * x) + 0.3 * x


def load_module(source: str, name: str, tmp_path) -> object:
    """Import exported source as module ``name``, written to a file under ``tmp_path``."""
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("family", FAMILIES)
def test_any_leading_batch_dims(family: str) -> None:
    torch.manual_seed(0)
    layer = KANLayer(3, 4, family, grid_size=5, order=3, normalize="tanh")
    x = torch.randn(2, 5, 3)
    y3 = layer(x)
    y2 = layer(x.reshape(10, 3))
    assert y3.shape == (2, 5, 4) and y2.shape == (10, 4)
    torch.testing.assert_close(y3.reshape(10, 4), y2)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradcheck_float64(family: str) -> None:
    """Exact gradients with respect to the input and every parameter, on a small layer."""
    torch.manual_seed(0)
    layer = KANLayer(3, 2, family, grid_size=3, order=2, normalize="layernorm").double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters())
    x = (torch.randn(4, 3, dtype=torch.float64) * 1.5).requires_grad_(True)

    def fn(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return functional_call(layer, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params))


@pytest.mark.parametrize("family", FAMILIES)
def test_fits_known_1d_function(family: str) -> None:
    torch.manual_seed(0)
    if family == "mlp":
        model = KANNetwork([KANLayer(1, 16, "mlp"), KANLayer(16, 1, "mlp")]).double()
    else:
        model = KANLayer(1, 1, family, grid_size=8, order=5 if family in POLYNOMIAL else 3).double()
    x = torch.linspace(-1, 1, 200, dtype=torch.float64).unsqueeze(-1)
    x_test = torch.rand(300, 1, dtype=torch.float64) * 2 - 1
    opt = torch.optim.LBFGS(
        model.parameters(), max_iter=500, history_size=50, line_search_fn="strong_wolfe", tolerance_change=1e-14
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((model(x) - _target(x)) ** 2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        rmse = ((model(x_test) - _target(x_test)) ** 2).mean().sqrt().item()
    assert rmse < FIT_RMSE[family], f"{family}: test RMSE {rmse:.3g}"


@pytest.mark.parametrize("family", FAMILIES)
def test_inputs_far_outside_grid_stay_finite(family: str) -> None:
    torch.manual_seed(0)
    layer = KANLayer(2, 3, family)
    x = torch.tensor([[-1e4, 1e4], [-50.0, 50.0], [1e-3, -3.0]], requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("family", ["bspline", "relu"])
def test_local_bases_vanish_outside_their_support(family: str) -> None:
    """The documented out-of-grid rule: k cells past the grid the spline part is exactly 0 (base branch only)."""
    basis = KANLayer(1, 1, family, grid_size=5, order=3).basis
    assert basis(torch.tensor([[-3.0], [3.0]])).abs().max() == 0
    assert torch.allclose(basis(torch.linspace(-1, 1, 7).unsqueeze(-1)).sum(-1)[:, 0] > 0, torch.tensor(True))


def test_bspline_matches_cox_de_boor() -> None:
    """The local evaluation equals the textbook recursion over the whole extended grid (efficient-kan's form)."""
    grid_size, k = 5, 3
    h = 2 / grid_size
    knots = torch.arange(-k, grid_size + k + 1, dtype=torch.float64) * h - 1
    x = torch.linspace(-2.5, 2.5, 401, dtype=torch.float64).unsqueeze(-1)
    b = ((x >= knots[:-1]) & (x < knots[1:])).double()
    for p in range(1, k + 1):
        left = (x - knots[: -(p + 1)]) / (knots[p:-1] - knots[: -(p + 1)]) * b[:, :-1]
        right = (knots[p + 1 :] - x) / (knots[p + 1 :] - knots[1:-p]) * b[:, 1:]
        b = left + right
    ours = BASES["bspline"](1, grid_size, k, -1.0, 1.0).double()(x)[:, 0]
    torch.testing.assert_close(ours, b, atol=1e-12, rtol=0)


def test_chebyshev_recurrence_is_cos_n_acos_away_from_saturation() -> None:
    x = torch.linspace(-2, 2, 101, dtype=torch.float64).unsqueeze(-1)
    ours = BASES["chebyshev"](1, 5, 6, -1.0, 1.0)(x)[:, 0]
    ref = torch.cos(torch.arange(7, dtype=torch.float64) * torch.acos(torch.tanh(x)))
    torch.testing.assert_close(ours, ref)


class _LargestTensor(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("family", KAN_ONLY)
def test_never_builds_a_batch_out_in_k_tensor(family: str) -> None:
    """Forward and backward allocate nothing larger than the (B, in*K) expansion (or the weights)."""
    batch, n_in, n_out = 64, 16, 24
    layer = KANLayer(n_in, n_out, family, grid_size=5, order=3)
    k = layer.basis.num_basis
    x = torch.randn(batch, n_in, requires_grad=True)
    with _LargestTensor() as mode:
        layer(x).sum().backward()
    assert mode.largest <= max(batch * n_in * k, n_out * n_in * k)


@pytest.mark.parametrize("family", FAMILIES)
def test_export_round_trip(family: str, tmp_path) -> None:
    """to_source gives a torch-only module that loads the state_dict and matches build(); it also scripts."""
    space = KanSpace()
    genome = space.seeds()["mlp" if family == "mlp" else f"kan_{family}"]
    torch.manual_seed(1)
    model = space.build(genome, in_features=3, out_features=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    source = space.to_source(genome, "ExportedKAN", in_features=3, out_features=2)
    imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import | ast.ImportFrom)]
    roots = {(a.name if isinstance(n, ast.Import) else n.module).split(".")[0] for n in imports for a in n.names}
    assert roots <= {"torch", "math", "__future__"}
    assert all(f"{other!r}:" not in source for other in FAMILIES if other != family)
    exported = load_module(source, f"exported_{family}", tmp_path).ExportedKAN()
    exported.load_state_dict(model.state_dict())
    x = torch.randn(7, 5, 3)
    torch.testing.assert_close(exported(x), model(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.jit.script(exported)(x), model(x), atol=1e-6, rtol=0)


def _periodic_task() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(512, 2, generator=g) * 2 - 1
    y0 = torch.sin(4 * math.pi * x[:, 0]) + torch.cos(5 * math.pi * x[:, 1])
    y1 = torch.cos(5 * math.pi * x[:, 0]) - torch.sin(3 * math.pi * x[:, 1])
    return x, torch.stack([y0, y1], dim=-1)


def test_selection_converges_to_the_family_that_fits() -> None:
    """On a periodic target only Fourier represents, every node's selection ends on Fourier and hardening keeps it."""
    torch.manual_seed(0)
    x, y = _periodic_task()
    pool = ["bspline", "chebyshev", "fourier", "rbf", "mexican_hat", "relu"]
    layer = SelectableKANLayer(2, 2, pool, grid_size=5, order=3, degree=5)
    opt = torch.optim.Adam(layer.parameters(), lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        loss = ((layer(x) - y) ** 2).mean() + 0.01 * layer.selection_entropy()
        loss.backward()
        opt.step()
    weights = layer.selection().detach()
    assert layer.selected() == ["fourier", "fourier"]
    assert (weights[:, pool.index("fourier")] > 0.6).all(), weights
    hard = layer.harden()
    assert isinstance(hard, KANLayer) and hard.family == "fourier"
    assert ((hard(x) - y) ** 2).mean() < 0.05 * y.var()


def test_harden_keeps_selected_terms_only() -> None:
    """Hardening a layer whose nodes chose different families gives a MixedKANLayer equal to the kept terms."""
    torch.manual_seed(0)
    pool = ["bspline", "chebyshev", "fourier"]
    layer = SelectableKANLayer(3, 3, pool, grid_size=4, order=2, degree=3, normalize="layernorm")
    with torch.no_grad():
        layer.logits.copy_(torch.tensor([[2.0, 0, 0], [0, 0, 3.0], [0, 1.5, 0]]))
        layer.norm.ln.weight.uniform_(0.5, 1.5)
    hard = layer.harden()
    assert isinstance(hard, MixedKANLayer) and sorted(hard.parts) == pool
    assert layer.selected() == ["bspline", "fourier", "chebyshev"]
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        p = layer.selection()
        xn = layer.norm(x)
        base = torch.nn.functional.linear(torch.nn.functional.silu(xn), layer.base_weight, layer.bias)
        kept = torch.stack(
            [p[j, pool.index(f)] * layer.branches[f](xn)[..., j] for j, f in enumerate(layer.selected())], -1
        )
    torch.testing.assert_close(hard(x), base + kept)


def test_selectable_harden_and_compact_export(tmp_path) -> None:
    """The space's harden gives a genome whose exported module holds only the kept families and loads the weights."""
    space = KanSpace()
    genome = {
        "space": "kan",
        "v": 1,
        "hidden": [3],
        "layers": [
            {"family": "selectable", "candidates": ["rbf", "fourier", "dog"], "grid": 5, "order": 3, "degree": 3,
             "base": True, "norm": "tanh"},
            {"family": "bspline", "grid": 5, "order": 3, "base": True, "norm": "none"},
        ],
    }  # fmt: skip
    torch.manual_seed(0)
    model = space.build(genome, in_features=2, out_features=1)
    with torch.no_grad():
        model.layers[0].logits.copy_(torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [3.0, 0, 0]]))  # sorted: dog, fourier, rbf
    hard_genome, hard_model = space.harden(genome, model)
    assert hard_genome["layers"][0]["family"] == "mixed"
    assert hard_genome["layers"][0]["nodes"] == ["dog", "fourier", "dog"]
    source = space.to_source(hard_genome, "CompactKAN", in_features=2, out_features=1)
    assert "GaussianRBFBasis" not in source and "SelectableKANLayer" not in source
    py_path, pt_path = save_kan(hard_model, source, tmp_path, "CompactKAN")
    exported = load_module(py_path.read_text(), "compact_kan", tmp_path).CompactKAN()
    exported.load_state_dict(torch.load(pt_path, weights_only=True))
    x = torch.rand(9, 2) * 2 - 1
    torch.testing.assert_close(exported(x), hard_model(x), atol=1e-6, rtol=0)
    rebuilt = space.build(hard_genome, in_features=2, out_features=1)
    rebuilt.load_state_dict(hard_model.state_dict())
    torch.testing.assert_close(rebuilt(x), hard_model(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", ["afkan_quad1", "afkan_sum", "afkan_prod"])
def test_afkan_basis_saves_only_its_inputs_for_backward(family: str) -> None:
    """The memory-lean AF-KAN keeps x, s and e for backward, never a (B, in, K) intermediate."""
    basis = BASES[family](16, 5, 3, -1.0, 1.0)
    x = torch.randn(64, 16, requires_grad=True)
    saved: list[torch.Size] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        phi = basis(x)
    assert phi.shape == (64, 16, 8)
    assert sorted(saved) == sorted([x.shape, basis.starts.shape, basis.ends.shape])
