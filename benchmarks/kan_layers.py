"""Per-family KAN layer speed and peak memory against an equal-parameter MLP and pykan's KANLayer, in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/kan_layers.py [--batch 1024] [--width 256] [--grid 5] [--threads 1]

Time: median wall time of forward + backward (``y.sum().backward()``) over ``--reps`` runs after warm-up,
the KAN layer and its MLP taking turns so both see the same load on a shared machine.
Peak memory: CPU has no allocator statistics, so a TorchDispatchMode records every tensor storage created during
one forward + backward (activations, saved tensors, temporaries, gradients) and drops it when the storage is
freed (weakref); the figure is the largest live total plus the parameters and the input. It counts tensor
bytes only, not allocator caching or library workspaces, and it is the same method for all columns.
"peak MB" is a first layer (the input needs no gradient); "x-grad" columns are a hidden layer (it does).
Polynomial families use degree = grid + order - 1 so their K matches the B-spline's.
"""

from __future__ import annotations

import argparse
import statistics
import time
import weakref

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from spaces.kan import BASES, KANLayer


class LiveTensorPeak(TorchDispatchMode):
    """Largest total bytes of tensor storages alive at once among those created inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}
        self._refs: dict[int, weakref.ref] = {}

    def _freed(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)
        self._refs.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._sizes:
                    self._sizes[key] = storage.nbytes()
                    self._refs[key] = weakref.ref(storage, lambda _, key=key: self._freed(key))
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
        return out


def _step(model: nn.Module, x: torch.Tensor) -> None:
    y = model(x)
    (y[0] if isinstance(y, tuple) else y).sum().backward()
    model.zero_grad(set_to_none=True)


def time_ms(models: list[nn.Module], x: torch.Tensor, reps: int) -> list[float]:
    """Median fwd+bwd ms per model, the models taking turns so they see the same machine load."""
    for model in models:
        for _ in range(2):
            _step(model, x)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(reps):
        for model, series in zip(models, times, strict=True):
            start = time.perf_counter()
            _step(model, x)
            series.append(time.perf_counter() - start)
    return [1e3 * statistics.median(series) for series in times]


def peak_mb(model: nn.Module, x: torch.Tensor, input_grad: bool = False) -> float:
    x = x.detach().requires_grad_(input_grad)
    resident = sum(p.numel() * p.element_size() for p in model.parameters()) + x.numel() * x.element_size()
    y = None
    with LiveTensorPeak() as mode:
        y = model(x)
        (y[0] if isinstance(y, tuple) else y).sum().backward()
    del y
    model.zero_grad(set_to_none=True)
    return (resident + mode.peak) / 2**20


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def equal_mlp(params: int, width: int) -> nn.Module:
    """width -> h -> width MLP (silu) with h chosen so it has about ``params`` parameters."""
    hidden = max(1, round((params - width) / (2 * width + 1)))
    return nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, width))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--grid", type=int, default=5)
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--families", nargs="*", default=[f for f in BASES if f != "mlp"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    w = args.width
    x = torch.rand(args.batch, w) * 2 - 1

    from kan.KANLayer import KANLayer as PykanLayer  # benchmark-only dependency: pip install pykan

    pykan = PykanLayer(in_dim=w, out_dim=w, num=args.grid, k=args.order)
    (pykan_ms,), pykan_mb = time_ms([pykan], x, max(3, args.reps // 4)), peak_mb(pykan, x)

    print(
        f"batch {args.batch}, {w} -> {w}, grid {args.grid}, order {args.order}, float32, {args.threads} thread(s), "
        f"torch {torch.__version__}; pykan KANLayer: {n_params(pykan):,} params, {pykan_ms:.1f} ms, {pykan_mb:.1f} MB\n"
    )
    header = (
        "| family | params | fwd+bwd ms | MLP ms | pykan ms | time / MLP | pykan / ours | peak MB | MLP MB "
        "| pykan MB | mem / MLP | x-grad MB | x-grad MLP MB | x-grad mem / MLP |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    results: dict[str, tuple[float, float, float, float]] = {}
    for family in args.families:
        order = args.grid + args.order - 1 if "degree" in BASES[family].uses else args.order
        torch.manual_seed(0)
        layer = KANLayer(w, w, family, args.grid, order)
        mlp = equal_mlp(n_params(layer), w)
        ours_ms, mlp_ms = time_ms([layer, mlp], x, args.reps)
        ours_mb, mlp_mb = peak_mb(layer, x), peak_mb(mlp, x)
        ours_gmb, mlp_gmb = peak_mb(layer, x, input_grad=True), peak_mb(mlp, x, input_grad=True)
        results[family] = (ours_ms / mlp_ms, ours_mb / mlp_mb, pykan_ms / ours_ms, ours_gmb / mlp_gmb)
        print(
            f"| {family} | {n_params(layer):,} | {ours_ms:.1f} | {mlp_ms:.1f} | {pykan_ms:.1f} "
            f"| {ours_ms / mlp_ms:.2f}x "
            f"| {pykan_ms / ours_ms:.1f}x | {ours_mb:.1f} | {mlp_mb:.1f} | {pykan_mb:.1f} | {ours_mb / mlp_mb:.2f}x "
            f"| {ours_gmb:.1f} | {mlp_gmb:.1f} | {ours_gmb / mlp_gmb:.2f}x |"
        )
    if "bspline" in results:
        vs_mlp, _, vs_pykan, _ = results["bspline"]
        print(f"\nB-spline at least 5x faster than pykan: {'yes' if vs_pykan >= 5 else 'NO'} ({vs_pykan:.1f}x)")
        print(f"B-spline within 3x of the MLP's time: {'yes' if vs_mlp <= 3 else 'NO'} ({vs_mlp:.2f}x)")
    for column, name in ((1, "first layer"), (3, "hidden layer (x-grad)")):
        over = [f for f in results if results[f][column] > 2]
        verdict = "yes" if not over else "NO, over: " + ", ".join(f"{f} {results[f][column]:.2f}x" for f in over)
        print(f"every family's peak memory <= 2x the MLP's, {name}: {verdict}")


if __name__ == "__main__":
    main()
