"""Dashboard render times on a generated store of 100,000 candidates (target: every page within 2 s).

Writes a SQLite store in bulk (SQLAlchemy Core inserts: one study, N candidates each with its search
evaluation, a realistic mix of done / rejected / failed / duplicate rows), then times Streamlit AppTest runs
of every page: "cold" after clearing every dashboard cache (the first visitor after a restart; includes the
first full read of the evaluation log), "warm" as the median of later renders (cached for a few seconds,
log topped up incrementally). Run:

    .venv/bin/python benchmarks/dashboard_render.py [--candidates 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import streamlit as st
from sqlalchemy import insert
from streamlit.testing.v1 import AppTest

from evaluators.vocabulary import CASCADE, FINAL, Stage, Status, StudyStatus
from search.store import CandidateRow, EvaluationRow, Store
from spaces import get_space

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
OBJECTIVES = [{"name": "val_acc@mlp", "direction": "max"}, {"name": "val_acc@cnn1d", "direction": "max"}]
REJECT_STAGES = CASCADE[CASCADE.index(Stage.STATIC) :]  # the worker's stages
BATCH = 10_000


def generate(path: Path, n: int, seed: int = 0) -> Store:
    """A finished study of ``n`` candidates, written with bulk Core inserts."""
    rng = np.random.default_rng(seed)
    store = Store(f"sqlite:///{path}")
    space = get_space("activation", schema="tree", max_depth=3)
    pool = [space.sample(rng) for _ in range(300)]
    formulas = [space.describe(g) for g in pool]
    start = datetime(2026, 1, 1)
    study = store.create_study(
        "bench",
        space="activation",
        algorithm="pareto",
        seed=seed,
        config={"space": {"kind": "activation", "options": {"schema": "tree", "max_depth": 3}}, "evaluator": {}},
        objectives=OBJECTIVES,
        budget_evaluations=n,
        budget_minutes=None,
    )
    store.update_study(
        study.id,
        status=StudyStatus.FINISHED,
        started_at=start,
        finished_at=start + timedelta(seconds=n),
        active_seconds=float(n),
    )
    store.log_event(study.id, "start", "started")
    store.log_event(study.id, "workers", "16 workers", workers=[{"name": f"worker-{i}"} for i in range(1, 17)])
    kinds = rng.choice([str(s) for s in FINAL], size=n, p=[0.6, 0.25, 0.05, 0.1])
    with store.engine.begin() as conn:
        for lo in range(0, n, BATCH):
            ids = range(lo + 1, min(n, lo + BATCH) + 1)
            candidates, evaluations = [], []
            for i in ids:
                g = int(rng.integers(len(pool)))
                status = str(kinds[i - 1])
                parent = int(rng.integers(1, i)) if i > 50 else None
                finished = start + timedelta(seconds=i)
                candidates.append(
                    {"id": i, "study_id": study.id, "key": f"{i:020x}", "canonical": f"c{i}", "genome": pool[g],
                     "formula": formulas[g], "origin": "mutate" if parent else "sample",
                     "parents": [parent] if parent else [], "mutation_op": "change_op" if parent else None,
                     "generation": i // 100, "duplicate_of": parent if status == Status.DUPLICATE else None,
                     "proposal": {}, "created_at": finished}
                )  # fmt: skip
                done = status == Status.DONE
                evaluations.append(
                    {"id": i, "study_id": study.id, "candidate_id": i, "purpose": "search", "status": status,
                     "stage": Stage.FULL if done else (Stage.DEDUPE if status == Status.DUPLICATE else
                                                  Stage.WORKER if status == Status.FAILED
                                                  else str(rng.choice(REJECT_STAGES))),
                     "reason": "" if done else f"{status} after {int(rng.integers(1, 50))} steps",
                     "attempt": 1, "seed": 0, "worker": f"worker-{1 + i % 16}", "queued_at": finished,
                     "started_at": finished - timedelta(seconds=15), "finished_at": finished,
                     "seconds": 15.0 if done else 1.0, "stage_seconds": {},
                     "objectives": {o["name"]: float(rng.random()) for o in OBJECTIVES} if done else {},
                     "metrics": {f"{m}@{p}": float(rng.random()) for m in ("val_acc", "val_loss", "latency_ms")
                                 for p in ("mlp", "cnn1d")} if done else {}}
                )  # fmt: skip
            conn.execute(insert(CandidateRow.__table__), candidates)
            conn.execute(insert(EvaluationRow.__table__), evaluations)
    return store


def render_seconds(page: str, params: dict[str, str], cold: bool) -> float:
    """One timed script run of ``page``, after an untimed run that loads the app (imports happen once per server)."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if cold:
        st.cache_data.clear()
        st.cache_resource.clear()
    at.switch_page(f"views/{page}.py")
    at.query_params.update(params)
    begin = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - begin
    if at.exception:
        raise RuntimeError(f"page {page} raised: {at.exception[0].value}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lf_dashboard_bench_"))
    begin = time.perf_counter()
    store = generate(folder / "store.db", args.candidates)
    size_mb = (folder / "store.db").stat().st_size / 2**20
    print(f"generated {args.candidates:,} candidates + evaluations in {time.perf_counter() - begin:.1f} s "
          f"({size_mb:.0f} MB SQLite)")  # fmt: skip
    os.environ["LAYERFORGE_DB"] = store.url
    mid = args.candidates // 2
    pages = [
        ("Studies", "studies", {}),
        ("Study", "study", {"study": "bench"}),
        ("Explore", "explore", {"study": "bench"}),
        ("Candidate", "candidate", {"id": str(mid)}),
        ("Compare", "compare", {"ids": f"{mid},{mid + 1},{mid + 2}"}),
    ]
    print(f"{'page':<10} {'cold s':>7} {'warm s':>7}   (AppTest script run; warm = median of {args.repeats})")
    for label, page, params in pages:
        cold = render_seconds(page, params, cold=True)
        warm = statistics.median(render_seconds(page, params, cold=False) for _ in range(args.repeats))
        print(f"{label:<10} {cold:>7.2f} {warm:>7.2f}")
    store.close()


if __name__ == "__main__":
    main()
