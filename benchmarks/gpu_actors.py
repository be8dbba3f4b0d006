"""GPU check: the same small proxy-training study with 1 and with 4 evaluation actors per GPU.

Reports candidates per minute (over the span from the first evaluation's start to the last one's end) and the
GPU memory each actor used (peak of nvidia-smi's per-process figure, sampled while the study runs), next to the
memory cap each actor set itself (its share of the GPU). Needs an NVIDIA GPU; without one it says so and exits 2.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gpu_actors.py               # --evaluations 48 [--amp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from evaluators.vocabulary import FINISHED, Status  # noqa: E402
from search.config import parse_config  # noqa: E402
from search.runner import StudyRunner  # noqa: E402
from search.store import Store  # noqa: E402
from search.workers import ensure_ray  # noqa: E402


class GpuMemorySampler(threading.Thread):
    """Peak GPU memory (MiB) per process id, from nvidia-smi every ``interval`` seconds."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_mib: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
            ).stdout
            for line in out.strip().splitlines():
                pid, used = (int(part) for part in line.split(","))
                self.peak_mib[pid] = max(self.peak_mib.get(pid, 0), used)
            self.done.wait(self.interval)


def study_config(name: str, actors_per_gpu: int, gpus: int, evaluations: int, amp: bool, db: Path) -> dict:
    """The quickstart's proxies (MLP and 1-D CNN on MNIST-1D), trained on the GPU; no cheap rejection stages."""
    return {
        "name": name,
        "seed": 0,
        "space": {"kind": "activation", "options": {"schema": "tree", "max_depth": 3}},
        "algorithm": {"name": "random"},
        "evaluator": {
            "kind": "proxy",
            "device": "cuda",
            "amp": amp,
            "timeout_seconds": 600,
            "proxies": [
                {
                    "name": "mlp",
                    "arch": "mlp",
                    "dataset": "mnist1d",
                    "steps": 2000,
                    "arch_options": {"hidden": [64, 64]},
                },
                {
                    "name": "cnn1d",
                    "arch": "cnn1d",
                    "dataset": "mnist1d",
                    "steps": 1000,
                    "arch_options": {"channels": [32, 32, 32]},
                },
            ],
            "rejection": {"quality_gate": {"enabled": False}},
            "objectives": [{"name": "val_acc@mlp"}, {"name": "val_acc@cnn1d"}],
        },
        "budget": {"evaluations": evaluations},
        "resources": {"workers": actors_per_gpu * gpus, "cpus_per_worker": 1, "gpus_per_worker": 1 / actors_per_gpu},
        "store": {"url": f"sqlite:///{db}"},
    }


def measure(actors_per_gpu: int, gpus: int, evaluations: int, amp: bool, tmp: Path) -> dict:
    name = f"gpu-{actors_per_gpu}-per-gpu"
    config = parse_config(study_config(name, actors_per_gpu, gpus, evaluations, amp, tmp / f"{name}.db"))
    store = Store(config.store.url)
    runner = StudyRunner(config, store, progress=False, runs_dir=tmp)
    sampler = GpuMemorySampler()
    sampler.start()
    runner.run()
    sampler.done.set()
    sampler.join()
    study = store.get_study(name)
    finished = [e for _, e in store.evaluations(study.id) if e.status in FINISHED]
    span = (max(e.finished_at for e in finished) - min(e.started_at for e in finished)).total_seconds()
    infos = [w for ev in store.events(study.id) if ev.kind == "workers" for w in ev.data["workers"]]
    memory = [sampler.peak_mib.get(w["pid"], 0) for w in infos]
    return {
        "actors": len(infos),
        "passed": sum(e.status == Status.DONE for e in finished),
        "finished": len(finished),
        "per_minute": 60 * len(finished) / span,
        "mem_mean": sum(memory) / len(memory),
        "mem_max": max(memory),
        "cap": infos[0].get("gpu_memory_fraction", 1.0),
        "device": infos[0].get("gpu_name", "?"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluations", type=int, default=48, help="finished evaluations per run")
    parser.add_argument("--amp", action="store_true", help="train under bfloat16 autocast")
    args = parser.parse_args()
    if not torch.cuda.is_available() or shutil.which("nvidia-smi") is None:
        print(
            "gpu_actors: no NVIDIA GPU here (torch.cuda.is_available() is False or nvidia-smi is missing); "
            "this check needs one, so nothing was run.",
            file=sys.stderr,
        )
        sys.exit(2)
    gpus = torch.cuda.device_count()
    tmp = Path(tempfile.mkdtemp(prefix="lfgpu", dir="/tmp"))
    ensure_ray(None, 512, tmp / "ray")  # one local Ray instance (all CPUs and GPUs) for both runs
    print(
        f"{gpus} GPU(s): {torch.cuda.get_device_name(0)}; torch {torch.__version__}; amp={args.amp}; "
        f"{args.evaluations} evaluations per run (MLP 2000 steps + 1-D CNN 1000 steps on MNIST-1D)"
    )
    header = f"{'actors/GPU':>10} {'actors':>6} {Status.DONE:>5} {'cand/min':>9} {'MiB/actor mean':>14}"
    print(f"{header} {'max':>6} {'cap':>5}")
    rows = {}
    for per_gpu in (1, 4):
        r = rows[per_gpu] = measure(per_gpu, gpus, args.evaluations, args.amp, tmp)
        print(
            f"{per_gpu:>10} {r['actors']:>6} {r['passed']:>5} {r['per_minute']:>9.1f} {r['mem_mean']:>14.0f} "
            f"{r['mem_max']:>6} {r['cap']:>5.2f}"
        )
    print(f"4 actors per GPU vs 1: {rows[4]['per_minute'] / rows[1]['per_minute']:.2f}x candidates per minute")


if __name__ == "__main__":
    main()
