"""`layerforge tabulate`: every function of an enumerable space evaluated, written as a table of outcomes.

The space lists its genomes (``Space.enumerate``: the fixed activation schemas with ``max_params: 0``); the
driver groups them by functional fingerprint and evaluates one genome per fingerprint through the normal
rejection cascade and Ray worker pool, once per training seed. A run the cascade passed is then trained alone at
each shorter budget (multi-fidelity). A function's row is kept once all its runs are in, and the table is
rewritten atomically every few seconds and at the end, so Ctrl-C loses at most the functions in flight, and a
second run with the same settings trains only the functions the table does not hold yet. A run with more seeds
extends the table: it trains only the new seeds of the stored functions (the noise between two seeds can decide a
table's top; more seeds make its top the functions'). The table evaluator (``evaluator.kind: table``) answers from
the result.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from evaluators.config import EvaluatorConfig
from evaluators.fingerprint import fingerprint_or_none
from evaluators.outcome import Outcome
from evaluators.table import FORMULA, GENOME, GENOMES, KEY, RecordedTable, column, run_columns, sidecar, write_table
from evaluators.vocabulary import Stage, Status
from search.config import ConfigError, StudyConfig
from search.dispatch import Dispatcher, Job
from search.progress import CountProgress
from search.workers import make_pool, start_ray_for, stop_ray
from spaces import Genome, Space, get_space

WRITE_EVERY_SECONDS = 10.0
#: The settings a table's rows depend on; resuming into a table made with others is refused (more seeds extend it).
SETTINGS = ("space", "evaluator", "budgets", "fingerprint")


@dataclass
class Function:
    """One fingerprint of the enumeration: the genome that stands for it and how many genomes compute it."""

    key: str
    genome: Genome
    formula: str
    genomes: int = 1
    cells: dict[str, Any] = field(default_factory=dict)
    jobs_left: int = 0


@dataclass
class Tabulated:
    """What a run of ``tabulate`` did."""

    path: Path
    functions: int  # distinct fingerprints in the space
    stored_before: int  # rows the table held already (not trained again)
    written: int  # rows in the table now
    evaluations: int  # worker evaluations this run
    unbuildable: int  # genomes whose fingerprint could not be computed (left out)
    stopped: bool


def _evaluator_settings(evaluator: EvaluatorConfig) -> dict[str, Any]:
    """What of the evaluator's config a table's rows depend on."""
    return evaluator.model_dump(mode="json", exclude={"fingerprint", "timeout_seconds", "threads"})


def default_budgets(config: StudyConfig) -> list[int]:
    """1/9 and 1/3 of the first proxy's steps (ASHA's rungs for eta = 3 below the full budget)."""
    steps = config.evaluator.proxies[0].steps if config.evaluator.proxies else 0
    return sorted({b for b in (round(steps / 9), round(steps / 3)) if 0 < b < steps})


def group_by_fingerprint(space: Space, config: StudyConfig) -> tuple[dict[str, Function], int]:
    """The enumeration's functions by fingerprint (first genome in enumeration order stands for each), and the
    number of genomes left out because they do not build."""
    functions: dict[str, Function] = {}
    unbuildable = 0
    for genome in space.enumerate():
        key = fingerprint_or_none(space, genome, config.evaluator.fingerprint)
        if key is None:
            unbuildable += 1
        elif key in functions:
            functions[key].genomes += 1
        else:
            functions[key] = Function(key, genome, space.describe(genome))
    return functions, unbuildable


class Tabulation:
    """The dispatcher's job source: full runs per seed first, shorter budgets of passed runs next."""

    def __init__(
        self,
        config: StudyConfig,
        out: str | Path,
        *,
        seeds: int = 2,
        budgets: list[int] | None = None,
        console: Console | None = None,
    ):
        if config.evaluator.kind == "table":
            raise ConfigError("tabulate evaluates candidates: the config's evaluator.kind must be proxy or synthetic")
        if seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {seeds}")
        self.config, self.out = config, Path(out)
        self.seeds = list(range(seeds))
        self.budgets = default_budgets(config) if budgets is None else sorted(set(budgets))
        if any(b < 1 for b in self.budgets):
            raise ConfigError(f"--budgets must be positive step counts, got {self.budgets}")
        self.console = console or Console(stderr=True)
        self.space = get_space(config.space.kind, **config.space.options)
        self.functions, self.unbuildable = group_by_fingerprint(self.space, config)
        self.meta = self._meta()
        self.rows = self._stored_rows()
        self.stored_before = len(self.rows)
        self.queue: deque[Job] = deque(self._full_jobs())
        self.stop_requested = threading.Event()
        self.evaluations = 0
        self._last_write = time.monotonic()
        self.progress: CountProgress | None = None

    def _meta(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "space": {"kind": cfg.space.kind, "options": cfg.space.options},
            "evaluator": _evaluator_settings(cfg.evaluator),
            "seeds": self.seeds,
            "budgets": self.budgets,
            "full_steps": [p.steps for p in cfg.evaluator.proxies],
            "fingerprint": cfg.evaluator.fingerprint.model_dump(exclude={"enabled"}),
            "objectives": [o.model_dump() for o in cfg.evaluator.objectives],
            "genomes": sum(f.genomes for f in self.functions.values()) + self.unbuildable,
            "functions": len(self.functions),
            "unbuildable": self.unbuildable,
        }

    def _stored_rows(self) -> dict[str, dict[str, Any]]:
        """The rows of an earlier run with the same settings: they are kept, not trained again."""
        if not self.out.exists():
            return {}
        meta_path = sidecar(self.out)
        stored = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        try:  # settings added since the table was made count at their defaults, which keep what it did then
            stored["evaluator"] = _evaluator_settings(EvaluatorConfig.model_validate(stored.get("evaluator", {})))
        except ValidationError:
            pass  # not settings this version reads: they differ
        differs = [name for name in SETTINGS if stored.get(name) != self.meta[name]]
        if differs:
            raise ConfigError(
                f"{self.out} was tabulated with other {', '.join(differs)}; choose another --out, or delete it "
                "(and its .json) to start over"
            )
        if not set(stored.get("seeds", [])) <= set(self.seeds):  # a table is extended, never cut down
            raise ConfigError(
                f"{self.out} holds seeds {stored['seeds']}; give --seeds {len(stored['seeds'])} or more to extend "
                "it, or choose another --out"
            )
        table = RecordedTable.read(self.out)
        return {key: row for key, row in table.rows.items() if key in self.functions}

    def _full_jobs(self) -> list[Job]:
        jobs = []
        for function in self.functions.values():
            stored = self.rows.get(function.key)
            missing = [seed for seed in self.seeds if stored is None or not stored.get(column("status", seed))]
            if not missing:
                continue
            function.jobs_left = len(missing)
            if stored is not None:  # extended by new seeds: its row is replaced once they are all in
                function.cells = dict(stored)
            else:
                function.cells = {KEY: function.key, FORMULA: function.formula, GENOMES: function.genomes}
                function.cells[GENOME] = json.dumps(function.genome, sort_keys=True, separators=(",", ":"))
            for seed in missing:
                payload = {"genome": function.genome, "seed": seed, "cascade": True}
                jobs.append(Job(len(jobs), payload, context=(function, seed, None)))
        return jobs

    def total_runs(self) -> int:
        return len(self.queue) * (1 + len(self.budgets))

    # -- JobSource ---------------------------------------------------------------------------------
    def next_job(self, in_flight: int) -> Job | None:
        return self.queue.popleft() if self.queue else None

    def on_dispatch(self, job: Job, worker: str) -> None:
        pass

    def on_result(self, job: Job, result: dict[str, Any]) -> None:
        self._record(job, Outcome.from_dict(result["outcome"]))

    def on_failure(self, job: Job, stage: Stage, reason: str) -> None:
        self._record(job, Outcome(Status.FAILED, stage, reason))

    def stopping(self) -> bool:
        return self.stop_requested.is_set()

    def on_tick(self) -> None:
        if time.monotonic() - self._last_write >= WRITE_EVERY_SECONDS:
            self.write()

    # -- rows --------------------------------------------------------------------------------------
    def _record(self, job: Job, outcome: Outcome) -> None:
        function, seed, steps = job.context
        self.evaluations += 1
        function.cells.update(run_columns(outcome, seed, steps))
        function.jobs_left -= 1
        advance = 1
        if steps is None:
            if outcome.status == Status.DONE:
                for budget in reversed(self.budgets):  # ahead of new functions: rows complete sooner
                    payload = {"genome": function.genome, "seed": seed, "steps": budget, "cascade": False}
                    self.queue.appendleft(Job(job.evaluation_id, payload, context=(function, seed, budget)))
                    function.jobs_left += 1
            else:
                advance += len(self.budgets)  # shorter budgets of a rejected run are not trained
        if function.jobs_left == 0:
            self.rows[function.key] = function.cells
        if self.progress is not None:
            self.progress.advance(advance)

    def write(self) -> None:
        ordered = [self.rows[key] for key in self.functions if key in self.rows]
        write_table(self.out, ordered, {**self.meta, "rows": len(ordered)})
        self._last_write = time.monotonic()

    def request_stop(self) -> None:
        """Stop as Ctrl-C does: no new evaluations; finished functions are written, the rest wait for a rerun."""
        self.stop_requested.set()

    def run(self, workers: int | None = None, runs_dir: str | Path = "runs") -> Tabulated:
        """Evaluate what the table lacks, writing it as rows complete; Ctrl-C stops cleanly (twice: at once)."""
        if self.queue:
            self._dispatch(workers, Path(runs_dir))
        self.write()
        return Tabulated(
            self.out,
            len(self.functions),
            self.stored_before,
            len(self.rows),
            self.evaluations,
            self.unbuildable,
            self.stopping(),
        )

    def _dispatch(self, workers: int | None, runs_dir: Path) -> None:
        cfg = self.config
        started_ray = start_ray_for(cfg, runs_dir)
        pool = make_pool(cfg, self.space, workers)
        previous = _install_sigint(self)
        try:
            pool.start()
            with CountProgress(self.console, f"tabulate {self.out.name}", self.total_runs()) as progress:
                self.progress = progress
                Dispatcher(pool, cfg.evaluator.timeout_seconds, cfg.resources.max_attempts).run(self)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self.write()
            pool.shutdown()
            if started_ray:
                stop_ray()


def _install_sigint(tabulation: Tabulation) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        if tabulation.stopping():
            raise KeyboardInterrupt
        tabulation.console.print(
            "[yellow]stopping: finished functions are written; rerun the same command to continue "
            "(Ctrl-C again to quit at once)[/yellow]"
        )
        tabulation.request_stop()

    return signal.signal(signal.SIGINT, handler)
