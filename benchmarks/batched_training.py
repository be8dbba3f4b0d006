"""Batched proxy training: candidates per minute on the quickstart's proxies, batched against one at a time.

    nice -n 10 .venv/bin/python benchmarks/batched_training.py [--candidates 16] [--workers 2] [--per-batch auto]
        [--proxies mlp,cnn1d,digits]
    .venv/bin/python benchmarks/batched_training.py --device cuda     # exits 2 without a GPU

The proxies, steps and cascade are configs/quickstart.yaml's (MLP and 1-D CNN on MNIST-1D, MLP on digits; the
quality gate, then the full training). The candidates are well-known activations and variants that pass the
cascade, so each one costs a full training. ``--workers`` processes (one torch thread each on a CPU, like the
quickstart's Ray workers) each hold one evaluator per mode and take every ``--workers``-th candidate; each worker
goes through its candidates in chunks of one batch, evaluating a chunk one at a time (``evaluate``) and then as
one batch (``evaluate_many``), so the two modes run side by side under the same load.

Candidates per minute are over the workers' CPU time (``time.process_time``; what the work costs, not how long
it waited on a shared machine); wall-clock figures are printed too. The last line is the CPU-time ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CANDIDATES = [
    "relu(x)", "gelu(x)", "silu(x)", "leaky_relu(x)", "elu(x)", "selu(x)", "mish(x)", "tanh(x)",
    "softplus(x)", "x*sigmoid({1.5}*x)", "relu(x) + {0.01}*(x*gaussian(0.7071067811865476*x))", "x*tanh(x)",
    "asinh(x)", "max(x, 0.2*x)", "x*erfc(-x)", "softsign(x)",
]  # fmt: skip


def _config(device: str, per_batch: int | str, proxies: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The quickstart's space and evaluator; ``proxies`` (names) keeps only those proxies and their objectives."""
    study = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    evaluator = {**study["evaluator"], "device": device, "candidates_per_batch": per_batch}
    if proxies:
        evaluator["proxies"] = [p for p in evaluator["proxies"] if p["name"] in proxies]
        kept = [o for o in evaluator["objectives"] if o["name"].split("@")[-1] in proxies]
        evaluator["objectives"] = kept or [{"name": f"val_acc@{evaluator['proxies'][0]['name']}"}]
    return study["space"], evaluator


def _worker(texts: list[str], device: str, per_batch: int | str, proxies: list[str]) -> dict[str, Any]:
    import torch

    from evaluators.config import EvaluatorConfig
    from evaluators.proxy import ProxyEvaluator
    from spaces import get_space

    space_config, evaluator_config = _config(device, per_batch, proxies)
    space = get_space(space_config["kind"], **space_config["options"])
    one = ProxyEvaluator(space, EvaluatorConfig.model_validate({**evaluator_config, "candidates_per_batch": 1}))
    many = ProxyEvaluator(space, EvaluatorConfig.model_validate(evaluator_config))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    genomes = [space.parse(text) for text in texts]
    totals = {"alone_cpu": 0.0, "alone_wall": 0.0, "batched_cpu": 0.0, "batched_wall": 0.0}
    outcomes: list[tuple[str, Any, Any]] = []
    size = many.candidates_per_batch
    for begin in range(0, len(genomes), size):
        chunk = genomes[begin : begin + size]
        cpu, wall = time.process_time(), time.perf_counter()
        alone = [one.evaluate(genome, seed=0) for genome in chunk]
        sync()
        totals["alone_cpu"] += time.process_time() - cpu
        totals["alone_wall"] += time.perf_counter() - wall
        cpu, wall = time.process_time(), time.perf_counter()
        batched = many.evaluate_many(chunk, seeds=[0] * len(chunk))
        sync()
        totals["batched_cpu"] += time.process_time() - cpu
        totals["batched_wall"] += time.perf_counter() - wall
        outcomes += [(t, a, b) for t, a, b in zip(texts[begin : begin + size], alone, batched, strict=True)]
    return {**totals, "outcomes": outcomes, "info": many.info()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-batch", default="auto", help="candidates_per_batch: auto or an integer")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--proxies", default="", help="comma-separated quickstart proxy names (default: all three)")
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("--device cuda: torch sees no CUDA GPU here; run on a GPU machine or drop --device", file=sys.stderr)
            return 2
    per_batch = args.per_batch if args.per_batch == "auto" else int(args.per_batch)
    texts = [CANDIDATES[i % len(CANDIDATES)] for i in range(args.candidates)]
    shares = [texts[w :: args.workers] for w in range(args.workers)]
    with ProcessPoolExecutor(args.workers) as pool:
        proxies = [name for name in args.proxies.split(",") if name]
        options = ([args.device] * args.workers, [per_batch] * args.workers, [proxies] * args.workers)
        results = list(pool.map(_worker, shares, *options))
    info = results[0]["info"]
    stacks = ", ".join(f"{name} {size}" for name, size in info["stack_sizes"].items())
    names = ", ".join(info["datasets"])
    print(f"quickstart proxies ({names}) on {args.workers} {args.device} workers, {args.candidates} candidates")
    print(f"candidates_per_batch {args.per_batch}: {info['candidates_per_batch']} per batch; stacks: {stacks}")
    rates = {}
    for mode in ("alone", "batched"):
        cpu = sum(r[f"{mode}_cpu"] for r in results) / args.workers
        wall = max(r[f"{mode}_wall"] for r in results)
        rates[mode] = args.candidates / (cpu / 60)
        print(
            f"{mode:8s} {rates[mode]:6.1f} candidates/minute on {args.workers} workers (CPU time, {cpu:.1f} s each); "
            f"wall clock {args.candidates / (wall / 60):.1f}/minute ({wall:.1f} s)"
        )
    outcomes = [o for r in results for o in r["outcomes"]]
    same = sum((a.status, a.stage) == (b.status, b.stage) for _, a, b in outcomes)
    gaps = [abs(a.objectives[n] - b.objectives[n]) for _, a, b in outcomes for n in a.objectives if n in b.objectives]
    gap = max(gaps, default=0.0)
    print(f"same status and stage: {same}/{len(outcomes)}; largest difference of an objective: {gap:.4f}")
    print(f"speedup: {rates['batched'] / rates['alone']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
