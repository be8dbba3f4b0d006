"""The table evaluator: answers from recorded outcomes instead of training, so a search runs in seconds.

A table is a CSV written by ``layerforge tabulate`` with one row per functional fingerprint (the key) and, for
every recorded run, the columns ``{field}/s{seed}`` (the cascade and full training with that training seed) and
``{field}/s{seed}/steps{n}`` (training alone at a shorter budget of ``n`` steps); a field is ``status``, ``stage``,
``reason``, ``seconds`` or a metric (``val_acc@mlp``). A sidecar ``.json`` next to it records how it was made,
including the fingerprint settings, which a study must share for its genomes to find their rows.

A genome the table does not hold is that candidate's ``failed`` outcome (stage ``static``) with a reason that
names the table; everything knowable from the config alone (a missing file, seed, budget, metric column or
mismatched fingerprint settings) is an ``EvaluatorSetupError`` before any candidate runs. An answer's ``seconds``
are the recorded ones (what the evaluation cost when it was tabulated), so budgets in seconds stay meaningful.

With successive halving enabled (``rejection.halving``), each rung is answered from the recorded shorter run of
its budget (computed from the table's ``full_steps``, its first proxy's). A candidate stopped at rung k costs
the recorded run less its training (the ``train_seconds@<proxy>`` metrics: the cascade before training) plus
rungs 0 .. k; one promoted costs the recorded run plus every rung, and a late promotion (bars ``None`` for the
rungs it cleared before) only the rungs it trains now. The table records no per-stage seconds, so, as for every
answer, the recorded run's part is under stage ``full``.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluators.base import Evaluator
from evaluators.cascade import Rejected, one_line
from evaluators.config import EvaluatorConfig, Fingerprint
from evaluators.fingerprint import fingerprint
from evaluators.halving import Bars, check_rung, rung_metric, rung_steps
from evaluators.outcome import Outcome
from evaluators.proxy import EvaluatorSetupError
from evaluators.splits import VAL, Split, on_split
from evaluators.vocabulary import Stage, Status
from spaces import Genome, Space

KEY, FORMULA, GENOME, GENOMES = "fingerprint", "formula", "genome", "genomes"
RUN_FIELDS = ("status", "stage", "reason", "seconds")
_RUN_COLUMN = re.compile(r"^(?P<field>.+)/s(?P<seed>\d+)(?:/steps(?P<steps>\d+))?$")

csv.field_size_limit(1 << 24)  # genome JSON cells can be long


def column(name: str, seed: int, steps: int | None = None) -> str:
    """``val_acc@mlp/s0`` for the full run with training seed 0, ``val_acc@mlp/s0/steps33`` for a shorter one."""
    return f"{name}/s{seed}" + ("" if steps is None else f"/steps{steps}")


def sidecar(path: str | Path) -> Path:
    """Where a table's description (command, config, fingerprint settings) lives: ``table.csv`` -> ``table.json``."""
    return Path(path).with_suffix(".json")


@dataclass
class RecordedTable:
    """A table read into memory: rows by fingerprint, and which runs (seed, steps) its columns hold."""

    path: Path
    columns: list[str]
    rows: dict[str, dict[str, str]]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> RecordedTable:
        path = Path(path)
        if not path.is_file():
            raise EvaluatorSetupError(
                f"evaluator.table.path: {path} does not exist; write it with `layerforge tabulate CONFIG --out {path}`"
            )
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            if KEY not in columns:
                raise EvaluatorSetupError(f"{path} has no {KEY!r} column: it is not a table from `layerforge tabulate`")
            rows = {row[KEY]: row for row in reader}
        meta_path = sidecar(path)
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        return cls(path, columns, rows, meta)

    def runs(self) -> dict[tuple[int, int | None], list[str]]:
        """(seed, steps or None for the full run) -> the metric names recorded for that run."""
        found: dict[tuple[int, int | None], list[str]] = {}
        for name in self.columns:
            match = _RUN_COLUMN.match(name)
            if match:
                steps = int(match["steps"]) if match["steps"] else None
                metrics = found.setdefault((int(match["seed"]), steps), [])
                if match["field"] not in RUN_FIELDS:
                    metrics.append(match["field"])
        return found

    def seeds(self) -> list[int]:
        return sorted({seed for seed, steps in self.runs() if steps is None})


class TableEvaluator(Evaluator):
    """Looks each genome up by its fingerprint; one instance per worker holds the whole table."""

    def __init__(self, space: Space, config: EvaluatorConfig, device: str | None = None):
        super().__init__(space, config, "cpu")
        self.table = load_table(config)
        self.source = config.table
        self.runs = self.table.runs()
        self.rungs = halving_budgets(self.table, config)

    def evaluate(
        self,
        genome: Genome,
        *,
        seed: int = 0,
        steps: int | None = None,
        cascade: bool = True,
        split: Split = VAL,
        halving: Bars | None = None,
    ) -> Outcome:
        """The recorded outcome; ``seed`` is ignored (``table.seed`` picks the recorded training seed), ``steps``
        picks a recorded budget, ``cascade=False`` answers only for candidates the cascade passed. ``halving``
        (the study's rung bars) answers the successive-halving stage from the recorded shorter runs."""
        start = time.perf_counter()
        try:
            key = fingerprint(self.space, genome, self.config.fingerprint)
        except Exception as exc:
            return Outcome(Status.REJECTED, Stage.STATIC, f"does not build: {one_line(exc)}")
        row = self.table.rows.get(key)
        if row is None:
            return Outcome(
                Status.FAILED,
                Stage.STATIC,
                f"not in table {self.table.path}: {self.space.describe(genome)} (fingerprint {key}) has no row; "
                f"the table holds {len(self.table.rows)} functions of {self.table.meta.get('space', 'its space')}",
                stage_seconds={Stage.STATIC: time.perf_counter() - start},
            )
        steps = self.source.steps if steps is None else steps
        seeds = self.table.seeds() if self.source.seed == "mean" else [self.source.seed]
        answers = [self._recorded(row, s, steps, split) for s in seeds]
        answer = next((a for a in answers if a.status != Status.DONE), None) or _mean(answers)
        if halving is None or not cascade or not self.rungs or answer.status != Status.DONE:
            return answer
        return self._halving(row, seeds, answer, halving)

    def _halving(self, row: dict[str, str], seeds: list[int], answer: Outcome, bars: Bars) -> Outcome:
        """The recorded full answer, or its rejection at the first rung (recorded shorter run) it does not clear."""
        halving = self.config.rejection.halving
        training = sum(value for name, value in answer.metrics.items() if name.startswith("train_seconds@"))
        cascade_seconds = max(0.0, answer.seconds - training)
        metrics, rung_seconds = dict(answer.metrics), 0.0
        for rung, steps in enumerate(self.rungs):
            if bars[rung] is None:
                continue  # cleared before this candidate's late promotion: not trained, not paid for
            runs = [_run(row, s, steps, self.runs[(s, steps)]) for s in seeds]
            rung_seconds += sum(r.seconds for r in runs) / len(runs)
            stopped = next((r for r in runs if r.status != Status.DONE), None)
            if stopped is not None:
                reason = f"halving: the run of {steps} steps (rung {rung}) ended {stopped.status}: {stopped.reason}"
                return _halted(answer, metrics, reason, cascade_seconds, rung_seconds)
            shared = [name for name in runs[0].metrics if all(name in r.metrics for r in runs)]
            results = {name: sum(r.metrics[name] for r in runs) / len(runs) for name in shared}
            values = {o.name: results.get(self.source.metrics.get(o.name, o.name)) for o in self.config.objectives}
            metrics.update({rung_metric(rung, name): value for name, value in results.items()})
            metrics.update({rung_metric(rung, name): v for name, v in values.items() if v is not None})
            try:
                check_rung(rung, f"{steps} steps", values, bars, self.config.objectives, halving.eta, metrics)
            except Rejected as exc:
                return _halted(answer, metrics, str(exc), cascade_seconds, rung_seconds)
        answer.metrics = metrics
        answer.seconds += rung_seconds
        answer.stage_seconds = {Stage.HALVING: rung_seconds, Stage.FULL: answer.seconds - rung_seconds}
        return answer

    def _recorded(self, row: dict[str, str], seed: int, steps: int | None, split: Split) -> Outcome:
        full = _run(row, seed, None, self.runs.get((seed, None), []))
        if steps is None or full.status != Status.DONE:
            outcome = full
        elif (seed, steps) in self.runs:
            outcome = _run(row, seed, steps, self.runs[(seed, steps)])
        else:
            recorded = sorted(s for (_, s) in self.runs if s is not None)
            return Outcome(Status.FAILED, Stage.FULL, f"table records no run of {steps} steps; it has {recorded}")
        if outcome.status != Status.DONE:
            return outcome
        objectives = {}
        for objective in self.config.objectives:
            name = on_split(self.source.metrics.get(objective.name, objective.name), split)
            value = outcome.metrics.get(name)
            if value is None:
                return Outcome(Status.FAILED, Stage.FULL, f"table has no column {column(name, seed, steps)}")
            if not math.isfinite(value):
                reason = f"non-finite objectives: {name}={value}"
                return Outcome(Status.REJECTED, Stage.FULL, reason, seconds=outcome.seconds)
            objectives[on_split(objective.name, split)] = value
        outcome.objectives = objectives
        return outcome

    def info(self) -> dict[str, Any]:
        return {"device": "cpu", "table": f"{self.table.path} ({len(self.table.rows)} rows)"}


def _number(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _run(row: dict[str, str], seed: int, steps: int | None, metrics: list[str]) -> Outcome:
    """One recorded run of a row as an Outcome (objectives are filled in by the caller)."""
    status = row.get(column("status", seed, steps)) or Status.FAILED
    seconds = _number(row.get(column("seconds", seed, steps))) or 0.0
    values = {name: _number(row.get(column(name, seed, steps))) for name in metrics}
    return Outcome(
        status=Status(status),
        stage=row.get(column("stage", seed, steps)) or Stage.FULL,
        reason=row.get(column("reason", seed, steps)) or ("" if status == Status.DONE else "no recorded run"),
        metrics={name: value for name, value in values.items() if value is not None},
        seconds=seconds,
        stage_seconds={Stage.FULL: seconds},
    )


def _halted(answer: Outcome, metrics: dict[str, Any], reason: str, cascade: float, rungs: float) -> Outcome:
    """A rejection at the halving stage: it cost the recorded cascade and the rungs trained so far."""
    return Outcome(
        Status.REJECTED,
        Stage.HALVING,
        reason,
        metrics=metrics,
        seconds=cascade + rungs,
        stage_seconds={Stage.FULL: cascade, Stage.HALVING: rungs},
    )


def _mean(answers: list[Outcome]) -> Outcome:
    """Several seeds' recorded runs as one outcome: every number is the mean over the seeds."""

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    first = answers[0]
    shared = [name for name in first.metrics if all(name in a.metrics for a in answers)]
    return Outcome(
        status=Status.DONE,
        stage=Stage.FULL,
        objectives={name: mean([a.objectives[name] for a in answers]) for name in first.objectives},
        metrics={name: mean([a.metrics[name] for a in answers]) for name in shared},
        seconds=mean([a.seconds for a in answers]),
        stage_seconds={Stage.FULL: mean([a.seconds for a in answers])},
    )


def run_columns(outcome: Outcome, seed: int, steps: int | None = None) -> dict[str, Any]:
    """One run's cells: its status, stage, reason and seconds, and every numeric metric it reported."""
    cells: dict[str, Any] = {
        column("status", seed, steps): str(outcome.status),
        column("stage", seed, steps): str(outcome.stage),
        column("reason", seed, steps): outcome.reason,
        column("seconds", seed, steps): round(outcome.seconds, 4),
    }
    for name, value in sorted(outcome.metrics.items()):
        if isinstance(value, int | float) and not isinstance(value, bool) and name not in RUN_FIELDS:
            cells[column(name, seed, steps)] = value
    return cells


def write_table(path: str | Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Write the rows (and the sidecar) atomically: an interrupted write never leaves a half table behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fixed = [KEY, FORMULA, GENOMES, GENOME]
    runs = sorted({name for row in rows for name in row} - set(fixed), key=_column_order)
    temporary = path.with_name(path.name + ".partial")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fixed + runs)
        writer.writeheader()
        writer.writerows(rows)
    temporary.replace(path)
    temporary = sidecar(path).with_name(sidecar(path).name + ".partial")
    temporary.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    temporary.replace(sidecar(path))


def _column_order(name: str) -> tuple[Any, ...]:
    """Runs by seed, the full run before shorter budgets; in a run, status/stage/reason/seconds before metrics."""
    match = _RUN_COLUMN.match(name)
    if match is None:
        return (1, 0, 0, 0, name)
    steps = int(match["steps"]) if match["steps"] else 0
    kind = RUN_FIELDS.index(match["field"]) if match["field"] in RUN_FIELDS else len(RUN_FIELDS)
    return (0, int(match["seed"]), steps, kind, match["field"])


def _same_fingerprint(recorded: dict[str, Any], config: Fingerprint) -> bool:
    wanted = config.model_dump(exclude={"enabled"})
    return all(recorded.get(name) == value for name, value in wanted.items())


def halving_budgets(table: RecordedTable, config: EvaluatorConfig) -> list[int]:
    """The recorded budgets (steps) that answer the halving rungs, rung 0 first; none when halving is off."""
    halving = config.rejection.halving
    if not halving.enabled:
        return []
    full_steps = table.meta.get("full_steps") or []
    if not full_steps:
        raise EvaluatorSetupError(
            f"rejection.halving: {table.path} does not record its proxies' training steps (full_steps in "
            f"{sidecar(table.path).name}), so its rungs' budgets are unknown; tabulate it with `layerforge tabulate`"
        )
    budgets, runs = rung_steps(int(full_steps[0]), halving), table.runs()
    recorded = sorted({s for (_, s) in runs if s is not None})
    source = config.table
    seeds = table.seeds() if source is None or source.seed == "mean" else [source.seed]
    missing = sorted({b for b in budgets for s in seeds if (s, b) not in runs})
    if missing:
        raise EvaluatorSetupError(
            f"rejection.halving (eta {halving.eta}, {halving.rungs} rungs) needs runs of {budgets} steps, but "
            f"{table.path} records shorter budgets {recorded} (missing {missing}); re-tabulate with "
            f"`layerforge tabulate CONFIG --budgets {','.join(map(str, budgets))}`"
        )
    for objective in config.objectives:
        name = source.metrics.get(objective.name, objective.name) if source else objective.name
        lacking = sorted({b for b in budgets for s in seeds if name not in runs[(s, b)]})
        if lacking:
            raise EvaluatorSetupError(
                f"rejection.halving: objective {objective.name!r} reads {name!r}, which {table.path} does not "
                f"record at {lacking} steps; re-tabulate with a config that reports it"
            )
    return budgets


def load_table(config: EvaluatorConfig) -> RecordedTable:
    """The configured table, checked against the config: every setup error is raised here, before any candidate."""
    source = config.table
    if source is None:
        raise EvaluatorSetupError("evaluator.kind is 'table' but evaluator.table is missing; give table.path")
    table = RecordedTable.read(source.path)
    recorded = table.meta.get("fingerprint")
    if recorded is not None and not _same_fingerprint(recorded, config.fingerprint):
        raise EvaluatorSetupError(
            f"{table.path} is keyed by fingerprints with settings {recorded}; set evaluator.fingerprint to them "
            "so that genomes find their rows"
        )
    runs = table.runs()
    seeds = table.seeds()
    if not seeds:
        raise EvaluatorSetupError(f"{table.path} records no run (no status/s<seed> column)")
    wanted = seeds if source.seed == "mean" else [source.seed]
    for seed in wanted:
        if (seed, source.steps) not in runs:
            budgets = sorted({s for (_, s) in runs if s is not None})
            raise EvaluatorSetupError(
                f"evaluator.table: {table.path} has no run for seed {seed}"
                + (f" at {source.steps} steps" if source.steps else "")
                + f"; recorded seeds {seeds}, shorter budgets (steps) {budgets}"
            )
        lacking = sum(not row.get(column("status", seed)) for row in table.rows.values())
        if lacking:
            raise EvaluatorSetupError(
                f"evaluator.table: {lacking} of {len(table.rows)} rows of {table.path} lack seed {seed} (a "
                "tabulation adding seeds was stopped): rerun its `layerforge tabulate` command to finish it, or set "
                "table.seed to a seed every row holds"
            )
        for objective in config.objectives:
            name = source.metrics.get(objective.name, objective.name)
            if name not in runs[(seed, source.steps)]:
                raise EvaluatorSetupError(
                    f"evaluator.table: objective {objective.name!r} reads {name!r}, which {table.path} does not "
                    f"record; map it with table.metrics to one of {sorted(runs[(seed, source.steps)])}"
                )
    halving_budgets(table, config)
    return table
