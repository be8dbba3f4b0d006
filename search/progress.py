"""A study's progress as the CLI shows it: counts by status, the best first objective, evaluations per minute."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from evaluators.config import Objective
from evaluators.vocabulary import FINISHED, Status
from search.objectives import oriented


class StudyProgress:
    """Kept incrementally as evaluations finish (and as the stored ones are replayed on resume)."""

    def __init__(self, study: str, objective: Objective, budget: int | None, console: Console, show: bool):
        self.study = study
        self.objective = objective  # the best value shown is this one's
        self.counts: dict[Status, int] = {}
        self.finished = 0  # duplicates excluded, as the budget counts
        self.best: float | None = None
        self.started = time.time()
        self.finished_at_start = 0
        self.bar = Progress(
            TextColumn("[bold]{task.fields[study]}[/bold]"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not show,
            transient=False,
        )
        self.task = self.bar.add_task("search", total=budget, study=study, line="")

    def record(self, status: Status, objectives: dict[str, float]) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        if status == Status.DUPLICATE:
            return
        self.finished += 1
        value = objectives.get(self.objective.name)
        if status != Status.DONE or value is None:
            return
        if self.best is None or oriented(value, self.objective) > oriented(self.best, self.objective):
            self.best = value

    def start(self) -> None:
        """This run's clock starts: the rate counts what finishes from now on."""
        self.started = time.time()
        self.finished_at_start = self.finished

    def seconds(self) -> float:
        """Wall time since this run started."""
        return time.time() - self.started

    def refresh(self) -> None:
        best = "-" if self.best is None else f"{self.objective.name}={self.best:.4g}"
        minutes = max(self.seconds() / 60, 1e-9)
        counts = " ".join(f"{status} {self.counts.get(status, 0)}" for status in FINISHED)
        line = (
            f"{counts} dup {self.counts.get(Status.DUPLICATE, 0)} | "
            f"best {best} | {(self.finished - self.finished_at_start) / minutes:.1f} eval/min"
        )
        self.bar.update(self.task, completed=self.finished, study=self.study, line=line)
