"""Driver capacity: a no-op evaluator through the real actor pool and the real SQLite store.

Prints evaluations per second over the whole loop and the driver's own time per evaluation
(ask, dedupe, store writes, dispatch, record, tell), median and p95.

    .venv/bin/python benchmarks/driver_capacity.py --evaluations 3000 --workers 2
    .venv/bin/python benchmarks/driver_capacity.py --evaluations 150 --like configs/quickstart.yaml  # its surrogate
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from evaluators.vocabulary import FINISHED  # noqa: E402
from search.config import parse_config  # noqa: E402
from search.runner import StudyRunner  # noqa: E402
from search.store import Store  # noqa: E402
from search.study_run import StudyRun  # noqa: E402


class TimedRun(StudyRun):
    """Accumulates the driver time spent on each evaluation's callbacks."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.driver_seconds: dict[int, float] = defaultdict(float)

    def next_job(self, in_flight):
        start = time.perf_counter()
        job = super().next_job(in_flight)
        if job is not None:
            self.driver_seconds[job.evaluation_id] += time.perf_counter() - start
        return job

    def on_dispatch(self, job, worker):
        start = time.perf_counter()
        super().on_dispatch(job, worker)
        self.driver_seconds[job.evaluation_id] += time.perf_counter() - start

    def on_result(self, job, result):
        start = time.perf_counter()
        super().on_result(job, result)
        self.driver_seconds[job.evaluation_id] += time.perf_counter() - start


class TimedRunner(StudyRunner):
    run_class = TimedRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--evaluations", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue", type=int, default=4, help="jobs queued per worker")
    parser.add_argument("--like", type=Path, help="a study config whose space and algorithm to drive (default: random)")
    args = parser.parse_args()
    space: dict = {"kind": "activation", "options": {"schema": "tree", "max_depth": 4}}
    algorithm: dict = {"name": "random"}
    if args.like is not None:
        like = yaml.safe_load(args.like.read_text())
        space, algorithm = like["space"], like.get("algorithm", {})  # a config may leave the algorithm default
    tmp = Path(tempfile.mkdtemp(prefix="lfbench"))
    config = parse_config(
        {
            "name": "driver-capacity",
            "seed": 0,
            "space": space,
            "algorithm": algorithm,
            "evaluator": {"kind": "synthetic", "objectives": [{"name": "score"}], "fingerprint": {"enabled": False}},
            "budget": {"evaluations": args.evaluations},
            "resources": {"workers": args.workers, "max_in_flight": args.workers * args.queue},
            "store": {"url": f"sqlite:///{tmp / 'bench.db'}"},
            "ray": {"tmpdir": str(tmp / "ray")},
        }
    )
    store = Store(config.store.url)
    runner = TimedRunner(config, store, progress=False, runs_dir=tmp)
    runner.run()
    study = store.get_study("driver-capacity")
    rows = store.evaluations(study.id)
    finished = [e for _, e in rows if e.status in FINISHED]
    span = (max(e.finished_at for e in finished) - min(e.started_at for e in finished)).total_seconds()
    per_eval_ms = sorted(1000 * v for v in runner.current_run.driver_seconds.values())
    p95 = per_eval_ms[int(0.95 * (len(per_eval_ms) - 1))]
    print(f"evaluations: {len(finished)} (+{len(rows) - len(finished)} duplicates) with {args.workers} workers")
    print(f"throughput: {len(finished) / span:.0f} evaluations/s over {span:.1f} s")
    print(f"driver time per evaluation: median {statistics.median(per_eval_ms):.2f} ms, p95 {p95:.2f} ms")


if __name__ == "__main__":
    main()
