"""Trainings to a table's top 1%: every algorithm against random search on the same seeds, through the real runner.

Each (table, algorithm, seed) is one study run by ``StudyRunner`` (Ray worker, SQLite store, dedupe, fingerprints,
tell, replayable proposals) with ``evaluator.kind: table``, so a training costs a table lookup. Studies run one
evaluation at a time, so proposals and counts do not depend on timing, and without baseline seeds, so every
training is the algorithm's choice. A study stops once it has trained a function of the table's top 1% (the best
``ceil(1%)`` of its functions by the table's mean over training seeds; ties included). Counted as the runner counts
them: trainings are finished evaluations (done, rejected, failed; duplicates are free), training seconds are the
table's recorded seconds of those evaluations (what they cost when tabulated, so multi-fidelity variants are
compared in cost, not in evaluations). A study that spends ``--max-evaluations`` without a hit is censored and
counts as that many plus one.

Printed per table and algorithm: median, mean and p90 trainings and seconds, the median ratio to random search, and
a Wilcoxon signed-rank p-value on the per-seed trainings paired with random search's. Options are chosen on
``--tune`` tables only when tuning; the other tables are held out.

    RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 PYTHONPATH=. nice -n 10 .venv/bin/python \\
        benchmarks/search_efficiency.py --seeds 200 --out runs/search_efficiency.json
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from scipy.stats import spearmanr, wilcoxon

from evaluators.table import FORMULA, GENOME, RecordedTable, TableEvaluator, column, sidecar
from evaluators.vocabulary import FINISHED, Status
from search.config import StudyConfig, parse_config
from search.runner import StudyRunner
from search.store import Store
from search.study_run import StudyRun
from search.workers import make_pool, start_ray_for
from spaces import get_space

TABLES = ("benchmarks/tables/mlp_mnist1d.csv", "benchmarks/tables/cnn1d_mnist1d.csv")
POPULATION = {"population_size": 24, "tournament_size": 6}  # the quickstart's
RANDOM_START = {"initial_design": "random"}
HALVING = {"rejection": {"halving": {"enabled": True, "eta": 3, "rungs": 2}}}  # rungs at 1/9 and 1/3 of the steps
NO_LATE = {"rejection": {"halving": {**HALVING["rejection"]["halving"], "late_promotion": False}}}  # before 11-28
# The shipped algorithms as a config names them: "algorithm", plus "evaluator" settings a variant changes and
# "baselines" (the space's named seeds it can express, evaluated first as a study's space.seeds are).
VARIANTS: dict[str, dict[str, Any]] = {
    "random": {"algorithm": {"name": "random"}},
    "random_baselines": {"algorithm": {"name": "random"}, "baselines": True},
    "evolution": {"algorithm": {"name": "evolution", "options": POPULATION}},
    "pareto": {"algorithm": {"name": "pareto", "options": POPULATION}},
    "nsga2": {"algorithm": {"name": "nsga2", "options": {"population_size": 24}}},
    "optuna_tpe": {"algorithm": {"name": "optuna_tpe"}},
    "optuna_nsga2": {"algorithm": {"name": "optuna_nsga2", "options": {"population_size": 24}}},
    "surrogate": {"algorithm": {"name": "surrogate"}},
    # The model's own choices, from a random start (rs), so that they are not hidden by the baselines:
    "surrogate_rs": {"algorithm": {"name": "surrogate", "options": RANDOM_START}},
    "surrogate_rs_no_shape": {"algorithm": {"name": "surrogate", "options": {**RANDOM_START, "shape": False}}},
    "surrogate_rs_spectrum": {"algorithm": {"name": "surrogate", "options": {**RANDOM_START, "spectrum": True}}},
    "surrogate_rs_gp": {"algorithm": {"name": "surrogate", "options": {**RANDOM_START, "model": "gp"}}},
    "surrogate_rs_ucb": {"algorithm": {"name": "surrogate", "options": {**RANDOM_START, "acquisition": "ucb"}}},
    "surrogate_rs_greedy": {
        "algorithm": {"name": "surrogate", "options": {**RANDOM_START, "acquisition": "ucb", "kappa": 0.0}}
    },
    "surrogate_rs_shape_twins": {
        "algorithm": {"name": "surrogate", "options": {**RANDOM_START, "distinct_shapes": False}}
    },
    "random_halving": {"algorithm": {"name": "random"}, "evaluator": HALVING},
    "random_halving_no_late": {"algorithm": {"name": "random"}, "evaluator": NO_LATE},
    "surrogate_halving": {"algorithm": {"name": "surrogate"}, "evaluator": HALVING},
    "surrogate_halving_no_late": {"algorithm": {"name": "surrogate"}, "evaluator": NO_LATE},
    "surrogate_halving_ranked": {
        "algorithm": {"name": "surrogate", "options": {"stopped": "ranked"}},
        "evaluator": NO_LATE,
    },
}
# variants that chose the defaults: not in the default set
CHOOSING = ("surrogate_rs_", "surrogate_halving_", "random_halving_")
MAIN = [v for v in VARIANTS if not v.startswith(CHOOSING)]
TOP_FRACTION = 0.01
CENSORED_SECONDS = 1e9  # a censored study's seconds in paired tests: slower than any hit
CONTEXT_FRACTION = 0.05  # also reported: trainings to the top 5%, a target less at the mercy of seed noise


@dataclass
class Run:
    seed: int
    trainings: int  # finished evaluations up to and including the first top-1% one (censored: max + 1)
    seconds: float  # their recorded seconds
    hit: bool
    to_top5: int  # finished evaluations up to the first top-5% one (max + 1 if none)


class StopAtTop(StudyRun):
    """A study run that stops as soon as a result reaches the table's top 1%."""

    threshold: float = math.inf  # oriented: larger is better

    def on_result(self, job: Any, result: dict[str, Any]) -> None:
        super().on_result(job, result)
        value = oriented(self.config, result["outcome"]["objectives"])
        if result["outcome"]["status"] == Status.DONE and value is not None and value >= self.threshold:
            self.runner.request_stop()


def oriented(config: StudyConfig, objectives: dict[str, float]) -> float | None:
    """The study's single objective, larger is better."""
    objective = config.evaluator.objectives[0]
    value = objectives.get(objective.name)
    return None if value is None else (value if objective.direction == "max" else -value)


def study_config(table: Path, variant: str, seed: int, max_evaluations: int, store_url: str) -> StudyConfig:
    """A table study as a user would write it, from the table's sidecar (space, objectives, fingerprint)."""
    meta = json.loads(sidecar(table).read_text())
    chosen = VARIANTS[variant]
    space = get_space(meta["space"]["kind"], **meta["space"]["options"])
    if len(meta["objectives"]) != 1:
        raise SystemExit(f"{table}: this benchmark needs a single-objective table, found {meta['objectives']}")
    return parse_config(
        {
            "name": f"{table.stem}-{variant}-{seed}",
            "seed": seed,
            "space": {**meta["space"], "seeds": list(space.seeds()) if chosen.get("baselines") else []},
            "algorithm": chosen["algorithm"],
            "evaluator": {
                "kind": "table",
                "table": {"path": str(table)},
                "objectives": meta["objectives"],
                "fingerprint": meta["fingerprint"],
                "timeout_seconds": 60,
                **chosen.get("evaluator", {}),
            },
            "budget": {"evaluations": max_evaluations},
            "resources": {"workers": 1, "max_in_flight": 1},
            "store": {"url": store_url},
        },
        f"{table.name} / {variant}",
    )


def table_facts(config: StudyConfig) -> str:
    """How far apart a function's training seeds are, and how well each shorter budget ranks the functions."""
    table, name = RecordedTable.read(config.evaluator.table.path), _objective(config)
    seeds = table.seeds()

    def mean(row: dict[str, str], steps: int | None) -> float | None:
        cells = [row.get(column(name, seed, steps)) for seed in seeds]
        return None if any(c in (None, "") for c in cells) else float(np.mean([float(c) for c in cells]))

    full = {key: mean(row, None) for key, row in table.rows.items()}
    facts = []
    if len(seeds) == 2:
        gaps = [
            abs(float(row[column(name, seeds[0])]) - float(row[column(name, seeds[1])]))
            for key, row in table.rows.items()
            if full[key] is not None
        ]
        facts.append(f"median gap between the two seeds {np.median(gaps):.4f}")
    if len(seeds) % 2 == 0:
        halves = (seeds[: len(seeds) // 2], seeds[len(seeds) // 2 :])
        floors = [oracle_trainings(table, config, a, b) for a, b in (halves, halves[::-1])]
        shared = set(top_formulas(table, config, halves[0])) & set(top_formulas(table, config, halves[1]))
        facts.append(
            f"trained in the order of seeds {halves[0]}' results, the top 1% of seeds {halves[1]} comes at training "
            f"{floors[0]} ({floors[1]} the other way round); the two tops share {len(shared)} functions"
        )
    facts.append("top 1%: " + ", ".join(top_formulas(table, config, seeds)))
    for steps in sorted({s for (_, s) in table.runs() if s is not None}):
        pairs = [(full[k], mean(row, steps)) for k, row in table.rows.items() if full[k] is not None]
        pairs = [(a, b) for a, b in pairs if b is not None]
        ranks = spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic
        facts.append(f"Spearman of {steps} steps with the full run {ranks:.3f} ({len(pairs)} functions)")
    return "; ".join(facts)


def seeds_mean(table: RecordedTable, config: StudyConfig, seeds: list[int]) -> dict[str, float | None]:
    """Each function's mean result over ``seeds`` (oriented: larger is better); None where the cascade rejected
    it with one of them."""
    name = _objective(config)

    def value(row: dict[str, str]) -> float | None:
        cells = [row.get(column(name, seed)) for seed in seeds]
        if not all(row.get(column("status", seed)) == Status.DONE and cells[i] for i, seed in enumerate(seeds)):
            return None
        return oriented(config, {name: float(np.mean([float(cell) for cell in cells]))})

    return {key: value(row) for key, row in table.rows.items()}


def _top(values: dict[str, float | None], size: int) -> set[str]:
    """The keys of the table's top 1% by ``values`` (ties included)."""
    ranked = sorted((v for v in values.values() if v is not None), reverse=True)
    threshold = ranked[max(1, math.ceil(TOP_FRACTION * size)) - 1]
    return {key for key, v in values.items() if v is not None and v >= threshold}


def top_formulas(table: RecordedTable, config: StudyConfig, seeds: list[int]) -> list[str]:
    """The formulas of the top 1% by the mean over ``seeds``, best first."""
    values = seeds_mean(table, config, seeds)
    top = sorted(_top(values, len(values)), key=lambda key: -values[key])
    return [table.rows[key][FORMULA] for key in top]


def oracle_trainings(table: RecordedTable, config: StudyConfig, ordered_by: list[int], target: list[int]) -> int:
    """Trainings until a function of the top 1% of seeds ``target`` (their mean) when functions are trained in the
    order of their mean results with seeds ``ordered_by``: what a model as good as that many more full trainings
    would need, the floor seed noise sets for any search on the table (a function the cascade rejected with one of
    the seeds ranks last there)."""
    rank = seeds_mean(table, config, ordered_by)
    top = _top(seeds_mean(table, config, target), len(rank))
    order = sorted(rank, key=lambda key: math.inf if rank[key] is None else -rank[key])
    return next(i for i, key in enumerate(order, 1) if key in top)


def top_threshold(config: StudyConfig, fraction: float = TOP_FRACTION) -> tuple[float, int, int]:
    """The value (oriented: larger is better) a function needs to be in the table's top ``fraction``, that top's
    size (ties included) and the table's size."""
    space = get_space(config.space.kind, **config.space.options)
    evaluator = TableEvaluator(space, config.evaluator)
    values = []
    for row in evaluator.table.rows.values():
        outcome = evaluator.evaluate(json.loads(row[GENOME]))
        if outcome.status == Status.DONE:
            values.append(oriented(config, outcome.objectives))
    top = max(1, math.ceil(fraction * len(evaluator.table.rows)))
    values.sort(reverse=True)
    return values[top - 1], sum(v >= values[top - 1] for v in values), len(evaluator.table.rows)


def run_study(config: StudyConfig, store: Store, pool: Any, threshold: float, context: float) -> Run:
    runner = StudyRunner(config, store, progress=False, pool=pool, console=Console(quiet=True))
    runner.run_class = type("StopAtThisTop", (StopAtTop,), {"threshold": threshold})
    study = runner.run()
    finished = [e for _, e in store.evaluations(study.id, purpose="search") if e.status in FINISHED]
    finished.sort(key=lambda e: e.id)
    hit = runner.stop_requested.is_set()
    trainings = len(finished) if hit else config.budget.evaluations + 1
    values = [oriented(config, e.objectives) for e in finished]
    reached = [i + 1 for i, value in enumerate(values) if value is not None and value >= context]
    to_top5 = reached[0] if reached else config.budget.evaluations + 1
    return Run(config.seed, trainings, float(sum(e.seconds or 0.0 for e in finished)), hit, to_top5)


def _objective(config: StudyConfig) -> str:
    return config.evaluator.objectives[0].name


def summarize(runs: list[Run], random_runs: list[Run] | None) -> dict[str, Any]:
    trainings = np.array([r.trainings for r in runs], dtype=float)
    seconds = np.array([r.seconds for r in runs])
    summary = {
        "median": float(np.median(trainings)),
        "mean": float(trainings.mean()),
        "p90": float(np.percentile(trainings, 90)),
        "median_seconds": float(np.median(seconds)),
        "mean_seconds": float(seconds.mean()),
        "censored": sum(not r.hit for r in runs),
        "median_to_top5": float(np.median([r.to_top5 for r in runs])),
    }
    if random_runs is not None:
        summary.update(versus(runs, random_runs))
    return summary


def versus(runs: list[Run], others: list[Run]) -> dict[str, float]:
    """``runs`` against ``others`` on the seeds both ran: how many times fewer trainings and seconds (medians)
    and a Wilcoxon signed-rank p on the per-seed trainings."""
    paired = {r.seed: r for r in others}
    mine = [r for r in runs if r.seed in paired]
    theirs = [paired[r.seed] for r in mine]
    differences = [m.trainings - t.trainings for m, t in zip(mine, theirs, strict=True)]
    return {
        "median_ratio": float(np.median([t.trainings for t in theirs]) / np.median([m.trainings for m in mine])),
        "median_seconds_ratio": float(np.median([t.seconds for t in theirs]) / np.median([m.seconds for m in mine])),
        "wilcoxon_p": float(wilcoxon(differences).pvalue) if any(differences) else 1.0,
    }


def compare(report: dict[str, Any], first: str, second: str) -> str:
    """Two variants of earlier runs against each other, paired by seed, per table that ran both."""
    lines = []
    for table, entry in report["tables"].items():
        if not {first, second} <= set(entry["algorithms"]):
            continue
        runs = {name: [Run(**r) for r in entry["algorithms"][name]["runs"]] for name in (first, second)}
        medians = {name: np.median([r.trainings for r in runs[name]]) for name in runs}
        seconds = {name: np.median([r.seconds for r in runs[name]]) for name in runs}
        pair = versus(runs[first], runs[second])
        paired = {r.seed: _to_hit(r) for r in runs[second]}
        differences = [_to_hit(r) - paired[r.seed] for r in runs[first] if r.seed in paired]
        seconds_p = float(wilcoxon(differences).pvalue) if any(differences) else 1.0
        lines.append(
            f"{table}: {first} median {medians[first]:g} trainings, {seconds[first]:.1f} s; {second} "
            f"{medians[second]:g}, {seconds[second]:.1f} s; paired Wilcoxon p = {pair['wilcoxon_p']:.2g} "
            f"(trainings), {seconds_p:.2g} (seconds; a censored study counts as the slowest)"
        )
    return "\n".join(lines)


def _to_hit(run: Run) -> float:
    """Seconds to the top for the paired test: a censored study ranks slower than every study that got there and
    ties with another censored one (its own seconds are those of the evaluations it was allowed, which cheaper
    evaluations flatter)."""
    return run.seconds if run.hit else CENSORED_SECONDS


def merged(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' reports as one, so that variants from different runs (on the same seeds) can be paired; each
    variant is also named after its run (``optuna_tpe@2``: the second report's), to pair a variant with itself
    as run before and after a change."""
    tables: dict[str, Any] = {}
    for number, report in enumerate(reports, 1):
        for table, entry in report["tables"].items():
            algorithms = tables.setdefault(table, {"algorithms": {}})["algorithms"]
            algorithms.update(entry["algorithms"])
            algorithms.update({f"{name}@{number}": runs for name, runs in entry["algorithms"].items()})
    return {"tables": tables}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--variants", default=",".join(MAIN))
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--max-evaluations", type=int, default=400)
    parser.add_argument("--out", default="runs/search_efficiency.json")
    parser.add_argument("--markdown", nargs="+", metavar="JSON", help="print earlier runs' tables, then stop")
    parser.add_argument(
        "--paired",
        metavar="A,B",
        help="with --markdown: two variants (from any of the runs; NAME@K: the K-th run's) against each other",
    )
    args = parser.parse_args()
    if args.markdown:
        reports = [json.loads(Path(path).read_text()) for path in args.markdown]
        if args.paired:
            print(compare(merged(reports), *args.paired.split(",")))
        else:
            print("\n".join(markdown(report) for report in reports))
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if "random" not in variants:
        variants.insert(0, "random")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    report: dict[str, Any] = {"seeds": args.seeds, "max_evaluations": args.max_evaluations, "tables": {}}
    with tempfile.TemporaryDirectory(prefix="lf_efficiency_") as scratch:
        store = Store(f"sqlite:///{scratch}/studies.db")
        for table in (Path(t.strip()) for t in args.tables.split(",") if t.strip()):
            RecordedTable.read(table)  # a clear error for a missing table
            first = study_config(table, "random", 0, args.max_evaluations, store.url)
            threshold, hits, size = top_threshold(first)
            context, context_hits, _ = top_threshold(first, CONTEXT_FRACTION)
            print(f"{table}: {size} functions; top 1% = {hits} with {_objective(first)} at {threshold:.4f} or better")
            print(f"  {table_facts(first)}")
            start_ray_for(first, Path(scratch))
            entry: dict[str, Any] = {"functions": size, "top": hits, "threshold": threshold, "algorithms": {}}
            entry.update(top5=context_hits, threshold5=context)
            runs: dict[str, list[Run]] = {}
            pools: dict[str, Any] = {}
            for variant in variants:
                started = time.perf_counter()
                evaluator_key = json.dumps(VARIANTS[variant].get("evaluator", {}), sort_keys=True)
                if evaluator_key not in pools:  # one pool at a time: Ray has as many CPUs as the machine
                    for stale in pools.values():
                        stale.shutdown()
                    pools.clear()
                    config = study_config(table, variant, 0, args.max_evaluations, store.url)
                    pools[evaluator_key] = make_pool(config, get_space(config.space.kind, **config.space.options), 1)
                    pools[evaluator_key].start()
                pool = pools[evaluator_key]
                runs[variant] = [
                    run_study(
                        study_config(table, variant, s, args.max_evaluations, store.url),
                        store,
                        pool,
                        threshold,
                        context,
                    )
                    for s in seeds
                ]
                summary = summarize(runs[variant], None if variant == "random" else runs["random"])
                summary["wall_seconds"] = round(time.perf_counter() - started, 1)
                entry["algorithms"][variant] = {**summary, "runs": [asdict(r) for r in runs[variant]]}
                print(_line(variant, summary), flush=True)
                report["tables"][str(table)] = entry
                _write(args.out, report)  # after every variant: a long run interrupted keeps what it finished
            for pool in pools.values():
                pool.shutdown()
    print(f"wrote {args.out}")


def markdown(report: dict[str, Any]) -> str:
    """A run's figures as Markdown tables, one per table, for BENCHMARKS.md."""
    lines = []
    for table, entry in report["tables"].items():
        lines += [
            f"{table}: {entry['functions']} functions, top 1% = {entry['top']}, {report['seeds']} seeds",
            "",
            "| algorithm | trainings: median | mean | p90 | seconds: median | mean | to top 5%: median "
            "| fewer than random (median) | Wilcoxon p |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, s in entry["algorithms"].items():
            versus = f"x{s['median_ratio']:.2f} | {s['wilcoxon_p']:.2g}" if "median_ratio" in s else "- | -"
            lines.append(
                f"| {name} | {s['median']:g} | {s['mean']:.1f} | {s['p90']:.1f} | {s['median_seconds']:.1f} "
                f"| {s['mean_seconds']:.1f} | {s['median_to_top5']:g} | {versus} |"
            )
        lines.append("")
    return "\n".join(lines)


def _write(out: str, report: dict[str, Any]) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=1) + "\n")


def _line(variant: str, s: dict[str, Any]) -> str:
    versus = (
        f"; x{s['median_ratio']:.2f} fewer than random (seconds x{s['median_seconds_ratio']:.2f}), "
        f"Wilcoxon p = {s['wilcoxon_p']:.2g}"
        if "median_ratio" in s
        else ""
    )
    return (
        f"  {variant:>14}: trainings median {s['median']:.1f}, mean {s['mean']:.1f}, p90 {s['p90']:.1f}; "
        f"seconds median {s['median_seconds']:.1f}, mean {s['mean_seconds']:.1f}; to top 5% median "
        f"{s['median_to_top5']:.1f}; censored {s['censored']}{versus} "
        f"[{s['wall_seconds']} s]"
    )


if __name__ == "__main__":
    main()
