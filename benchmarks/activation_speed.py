"""Exported activation speed: searched-form Swish, GELU (tanh form) and Mish against torch's fused ops.

Forward + backward on a 4096x1024 float32 tensor, eager and torch.compile, each pair timed interleaved in one
run (best of N, since the machine is shared) and printed as a ratio exported / reference.

    .venv/bin/python benchmarks/activation_speed.py --repeats 15
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from spaces import get_space

# Genomes as a search writes them (compositions of primitive ops), not as single fused ops.
CASES = {
    "swish": ("x*sigmoid({1.0}*x)", F.silu),
    "gelu_tanh": ("0.5*x*(1.0 + tanh(0.7978845608028654*(x + 0.044715*cube(x))))",
                  lambda x: F.gelu(x, approximate="tanh")),
    "mish": ("x*tanh(softplus(x))", F.mish),
}


def load_exported(text: str, class_name: str, folder: Path) -> torch.nn.Module:
    space = get_space("activation", schema="tree", max_depth=8, max_nodes=20)
    genome = space.parse(text)
    path = folder / f"{class_name.lower()}.py"
    path.write_text(space.to_source(genome, class_name))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)()


def step_time(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    start = time.perf_counter()
    fn(x).sum().backward()
    return time.perf_counter() - start


def best_ratio(ours: Callable, ref: Callable, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    for fn in (ours, ref):  # warm-up (and compile)
        for _ in range(2):
            step_time(fn, x)
    t_ours, t_ref = [], []
    for _ in range(repeats):
        t_ours.append(step_time(ours, x))
        t_ref.append(step_time(ref, x))
    return min(t_ours), min(t_ref)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(4096, 1024, requires_grad=True)
    print(f"torch {torch.__version__}, {args.threads} threads, input {tuple(x.shape)} float32, best of {args.repeats}")
    print("| activation | mode | exported ms | torch ms | ratio |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (text, reference) in CASES.items():
            exported = load_exported(text, f"Exported{name.title().replace('_', '')}", Path(tmp))
            for mode in ("eager", "compiled"):
                ours, ref = (exported, reference) if mode == "eager" else (torch.compile(exported), torch.compile(reference))
                t_ours, t_ref = best_ratio(ours, ref, x, args.repeats)
                print(f"| {name} | {mode} | {1e3 * t_ours:.2f} | {1e3 * t_ref:.2f} | {t_ours / t_ref:.2f} |")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
