"""Worker utilization on a simulated multi-node Ray cluster (``ray.cluster_utils.Cluster``).

A head node with no CPUs runs only the driver (as in ray_cluster.yaml); 1, 2 and 4 worker nodes of
``--cpus-per-node`` CPUs each run one actor per CPU. Every evaluation takes a fixed ``--seconds`` (the synthetic
evaluator sleeps, so actors need no real cores), so the ideal is every worker busy from the first evaluation's start
to the last one's end. Utilization = worker-busy seconds / (workers x that span), from the worker-side start and
end times stored with each evaluation. Nodes are added between runs; each run is a fresh study in a fresh store.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cluster_utilization.py      # --nodes 1 2 4 --per-worker 40
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from evaluators.vocabulary import FINISHED  # noqa: E402
from search.config import parse_config  # noqa: E402
from search.runner import StudyRunner  # noqa: E402
from search.store import Store  # noqa: E402

TARGET = 0.95


def run_study(name: str, workers: int, evaluations: int, seconds: float, tmp: Path) -> dict[str, float]:
    config = parse_config(
        {
            "name": name,
            "seed": 0,
            "space": {"kind": "activation", "options": {"schema": "tree", "max_depth": 4}},
            "algorithm": {"name": "random"},
            "evaluator": {
                "kind": "synthetic",
                "objectives": [{"name": "score"}],
                "synthetic": {"seconds": seconds},
                "timeout_seconds": 60 * seconds,
            },
            "budget": {"evaluations": evaluations},
            "resources": {"workers": workers},
            "store": {"url": f"sqlite:///{tmp / (name + '.db')}"},
        }
    )
    store = Store(config.store.url)
    started = time.time()
    StudyRunner(config, store, progress=False, runs_dir=tmp).run()
    wall = time.time() - started
    study = store.get_study(name)
    finished = [e for _, e in store.evaluations(study.id) if e.status in FINISHED]
    span = (max(e.finished_at for e in finished) - min(e.started_at for e in finished)).total_seconds()
    busy = sum((e.finished_at - e.started_at).total_seconds() for e in finished)
    return {
        "workers": workers,
        "evaluations": len(finished),
        "span": span,
        "wall": wall,
        "utilization": busy / (workers * span),
        "per_minute": 60 * len(finished) / span,
        "ideal_per_minute": 60 * workers / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4], help="worker node counts, ascending")
    parser.add_argument("--cpus-per-node", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0, help="fixed cost of one evaluation")
    parser.add_argument("--per-worker", type=int, default=40, help="evaluations per worker in each run")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lfutil", dir="/tmp"))  # short: Ray's socket paths are length-limited
    (tmp / "ray").mkdir()
    os.environ["RAY_TMPDIR"] = str(tmp)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": 128 * 1024 * 1024,
            "include_dashboard": False,
            "temp_dir": str(tmp),
        },
    )
    ray.init(address=cluster.address, log_to_driver=False)
    print(
        f"simulated cluster: head with 0 CPUs (driver only) + N nodes x {args.cpus_per_node} CPUs, "
        f"one worker per CPU, evaluation = {args.seconds:g} s sleep, {args.per_worker} evaluations per worker"
    )
    print(
        f"{'nodes':>5} {'workers':>7} {'evals':>6} {'span s':>7} {'wall s':>7} {'eval/min':>9} "
        f"{'ideal':>7} {'utilization':>11}"
    )
    results = []
    try:
        for nodes in args.nodes:
            while len(cluster.worker_nodes) < nodes:
                cluster.add_node(num_cpus=args.cpus_per_node, object_store_memory=80 * 1024 * 1024)
            cluster.wait_for_nodes()
            workers = nodes * args.cpus_per_node
            r = run_study(f"util-{nodes}", workers, workers * args.per_worker, args.seconds, tmp)
            results.append(r)
            print(
                f"{nodes:>5} {workers:>7} {r['evaluations']:>6.0f} {r['span']:>7.1f} {r['wall']:>7.1f} "
                f"{r['per_minute']:>9.1f} {r['ideal_per_minute']:>7.0f} {r['utilization']:>10.1%}"
            )
    finally:
        ray.shutdown()
        cluster.shutdown()
    worst = min(r["utilization"] for r in results)
    print(
        f"target: utilization >= {TARGET:.0%} at every size: {'met' if worst >= TARGET else 'NOT met'} "
        f"(lowest {worst:.1%})"
    )


if __name__ == "__main__":
    main()
