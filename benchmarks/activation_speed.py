"""Exported activation speed: searched-form Swish, GELU and Mish genomes against torch's fused ops.

    .venv/bin/python benchmarks/activation_speed.py [--repeats 15] [--threads 1] [--no-compile]

Each genome is written as a search writes it (a composition of primitive ops), exported with
``ActivationSpace.to_source`` (which lowers recognised subtrees to fused ops) and imported from the file. Forward +
backward (a dense upstream gradient; gradients for the input and every learnable scalar) on a 4096x1024 float32
tensor, eager and under torch.compile; exported and reference run alternately in one process and the table prints
exported / reference ratios measured side by side.

Time: CPU time of this process (``time.process_time``) per fwd+bwd pass, best and median of ``--repeats`` passes
after ``--warmup`` passes (the warm-up also compiles). CPU time with one torch thread (the default) counts the work
itself, not the waiting, so the ratios hold on a machine shared with other jobs.

``swish_beta`` keeps Swish's learnable beta, ``x*sigmoid(beta*x)``: it has no fused torch op that stays safe as
beta goes to 0 (``silu(beta*x)/beta`` does not), so it exports as three kernels and, unlike ``F.silu``, also
computes the gradient of beta (a full reduction).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import interleaved_cpu_ms  # noqa: E402

from spaces import get_space  # noqa: E402

# name: (genome text as a search writes it, torch reference)
CASES: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "swish": ("x*sigmoid(x)", F.silu),
    "swish_beta": ("x*sigmoid({1.0}*x)", F.silu),
    "gelu_tanh": (
        "0.5*x*(1.0 + tanh(0.7978845608028654*(x + 0.044715*cube(x))))",
        lambda x: F.gelu(x, approximate="tanh"),
    ),
    "gelu_erf": ("0.5*x*(1.0 + erf(0.7071067811865476*x))", F.gelu),
    "mish": ("x*tanh(softplus(x))", F.mish),
}


class Reference(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def exported(text: str, class_name: str, folder: Path) -> tuple[nn.Module, str]:
    """The exported module and its forward's return line."""
    space = get_space("activation", schema="tree", max_depth=8, max_nodes=20)
    source = space.to_source(space.parse(text), class_name)
    path = folder / f"{class_name.lower()}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    returned = next(line.strip() for line in source.splitlines() if line.strip().startswith("return "))
    return getattr(module, class_name)(), returned


def step_fn(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    inputs = [x, *layer.parameters()]

    def step() -> None:
        torch.autograd.grad(layer(x), inputs, grad)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.rows, args.cols, requires_grad=True)
    grad = torch.randn_like(x)
    modes = ["eager"] if args.no_compile else ["eager", "compiled"]
    print(
        f"input {tuple(x.shape)} float32, torch {torch.__version__}, {torch.get_num_threads()} thread(s); CPU ms per "
        f"fwd+bwd, best / median of {args.repeats} after {args.warmup} warm-up; ratio = exported / torch"
    )
    print(f"{'activation':12}{'mode':10}{'torch ms':>10}{'ours ms':>10}{'ratio':>8}{'median':>8}   exported forward")
    with tempfile.TemporaryDirectory() as folder:
        for name, (text, fn) in CASES.items():
            ours, returned = exported(text, f"Exported{name.title().replace('_', '')}", Path(folder))
            for mode in modes:
                layers = {"torch": Reference(fn), "ours": ours}
                if mode == "compiled":
                    torch._dynamo.reset()
                    layers = {key: torch.compile(layer) for key, layer in layers.items()}
                result = interleaved_cpu_ms(
                    {key: step_fn(m, x, grad) for key, m in layers.items()}, args.warmup, args.repeats
                )
                (t_ms, t_median), (o_ms, o_median) = result["torch"], result["ours"]
                print(
                    f"{name:12}{mode:10}{t_ms:10.1f}{o_ms:10.1f}{o_ms / t_ms:8.2f}{o_median / t_median:8.2f}   "
                    f"{returned}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
