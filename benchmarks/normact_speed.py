"""Exported EvoNorm-B0 / S0 against timm's EvoNorm2dB0 / EvoNorm2dS0: forward+backward time and peak memory.

    .venv/bin/python benchmarks/normact_speed.py [--repeats 9] [--threads 1] [--no-compile]

Both sides run in one process on the same input (default 64x64x32x32 NCHW float32, train mode), eager and
under torch.compile, and the table prints ours / timm ratios measured side by side (below 1 is better for us).

Time: CPU time of this process (``time.process_time``) per fwd+bwd pass, best and median of ``--repeats``
passes after ``--warmup`` passes (the warm-up also compiles), timm and ours alternating. CPU time with one
torch thread (the default here) counts the work itself, not the waiting, so the ratios hold on a machine
shared with other jobs, where wall-clock times of the same pass varied by 2x between runs.

Peak memory on CPU: torch.profiler's allocator events (``profile_memory=True``) over one fwd+bwd pass; the
running sum of allocations minus frees gives the peak bytes allocated above what existed before the pass
(input, parameters), the CPU analogue of ``torch.cuda.max_memory_allocated``.

timm is a test dependency (``pip install --no-deps timm``); its package ``__init__`` needs torchvision, so when
that import fails ``evo_norm`` is loaded straight from timm's files.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import interleaved_cpu_ms  # noqa: E402

from spaces.normact import NormActSpace  # noqa: E402


def timm_evonorm() -> types.ModuleType:
    try:
        from timm.layers import evo_norm

        return evo_norm
    except ImportError:
        spec = importlib.util.find_spec("timm")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("timm is not installed: pip install --no-deps timm") from None
        package = types.ModuleType("_timm_layers")
        package.__path__ = [str(Path(spec.submodule_search_locations[0]) / "layers")]
        sys.modules["_timm_layers"] = package
        return importlib.import_module("_timm_layers.evo_norm")


def exported_class(space: NormActSpace, seed: str, class_name: str, folder: Path) -> type[nn.Module]:
    path = folder / f"{class_name.lower()}.py"
    path.write_text(space.to_source(space.seeds()[seed], class_name))
    spec = importlib.util.spec_from_file_location(class_name.lower(), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)


def step_fn(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).backward(grad)

    return step


def peak_mb(step: Callable[[], None]) -> float:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


def measure(steps: dict[str, Callable[[], None]], warmup: int, repeats: int) -> dict[str, tuple[float, float, float]]:
    """Best and median fwd+bwd milliseconds and peak MB per named step, timed alternately."""
    times = interleaved_cpu_ms(steps, warmup, repeats)
    return {name: (*times[name], peak_mb(step)) for name, step in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    evo = timm_evonorm()
    c = args.channels
    pairs = {  # name: (timm layer, our exported layer), eps matched to timm's defaults
        "B0": (evo.EvoNorm2dB0(c, eps=1e-3), ("evonorm_b0", NormActSpace(mode="B", eps=1e-3))),
        "S0": (evo.EvoNorm2dS0(c, groups=32, eps=1e-5), ("evonorm_s0", NormActSpace(mode="S", eps=1e-5, groups=32))),
    }
    modes = ["eager"] if args.no_compile else ["eager", "compiled"]
    torch.manual_seed(0)
    x = torch.randn(args.batch, c, args.size, args.size, requires_grad=True)
    grad = torch.randn_like(x)
    print(
        f"input {tuple(x.shape)} float32, train mode, torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
        f"CPU ms per fwd+bwd, best / median of {args.repeats} after {args.warmup} warm-up; ratio = ours / timm"
    )
    print(
        f"{'layer':6}{'mode':10}{'timm ms':>10}{'ours ms':>10}{'ratio':>8}{'median':>8}"
        f"{'timm MB':>10}{'ours MB':>10}{'ratio':>8}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for name, (reference, (seed, space)) in pairs.items():
            ours = exported_class(space, seed, f"Exported{name}", Path(folder))(c)
            for mode in modes:
                layers = {"timm": reference, "ours": ours}
                if mode == "compiled":
                    torch._dynamo.reset()
                    layers = {key: torch.compile(layer) for key, layer in layers.items()}
                start = time.perf_counter()
                result = measure({k: step_fn(m, x, grad) for k, m in layers.items()}, args.warmup, args.repeats)
                (t_ms, t_median, t_mb), (o_ms, o_median, o_mb) = result["timm"], result["ours"]
                print(
                    f"{name:6}{mode:10}{t_ms:10.1f}{o_ms:10.1f}{o_ms / t_ms:8.2f}{o_median / t_median:8.2f}"
                    f"{t_mb:10.1f}{o_mb:10.1f}{o_mb / t_mb:8.2f}   ({time.perf_counter() - start:.0f} s with warm-up)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
