"""A study's progress as the CLI shows it: counts by status, the best first objective, evaluations per minute.

On a terminal it is a live bar; in a log file (stderr not a terminal) a plain line every ``PLAIN_LINE_SECONDS`` and
one at the end, so a redirected run is not silent for its whole budget.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from evaluators.config import Objective
from evaluators.vocabulary import FINISHED, Status
from search.objectives import oriented

# How often a run whose output is not a terminal writes its progress line.
PLAIN_LINE_SECONDS = 30.0


class StudyProgress:
    """Kept incrementally as evaluations finish (and as the stored ones are replayed on resume)."""

    def __init__(
        self,
        study: str,
        objective: Objective,
        budget: int | None,
        console: Console,
        show: bool,
        plain_every: float = PLAIN_LINE_SECONDS,
    ):
        self.study = study
        self.budget = budget
        self.console = console
        self.plain = show and not console.is_terminal  # a log file gets plain lines; the bar would show nothing there
        self.plain_every = plain_every
        self.plain_printed_at: float | None = None
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
            disable=not show or self.plain,
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

    def __enter__(self) -> StudyProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.stop()
        if self.plain:
            self._print_plain()

    def line(self) -> str:
        """Counts by status, the best value of the first objective and this run's evaluations per minute."""
        best = "-" if self.best is None else f"{self.objective.name}={self.best:.4g}"
        minutes = max(self.seconds() / 60, 1e-9)
        counts = " ".join(f"{status} {self.counts.get(status, 0)}" for status in FINISHED)
        return (
            f"{counts} dup {self.counts.get(Status.DUPLICATE, 0)} | "
            f"best {best} | {(self.finished - self.finished_at_start) / minutes:.1f} eval/min"
        )

    def refresh(self) -> None:
        if self.plain:
            now = time.time()
            if self.plain_printed_at is None or now - self.plain_printed_at >= self.plain_every:
                self._print_plain()
            return
        self.bar.update(self.task, completed=self.finished, study=self.study, line=self.line())

    def _print_plain(self) -> None:
        self.plain_printed_at = time.time()
        budget = "-" if self.budget is None else self.budget
        line = f"{self.study}: {self.finished}/{budget} finished | {self.line()}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


class CountProgress:
    """Jobs done out of a total (rerank, transfer, tabulate): a live bar on a terminal; in a log, a plain line
    every ``plain_every`` seconds and at the end, since a bar would show nothing there."""

    def __init__(self, console: Console, description: str, total: int, plain_every: float = PLAIN_LINE_SECONDS):
        self.console, self.description, self.total = console, description, total
        self.plain = not console.is_terminal
        self.plain_every = plain_every
        self.done = 0
        self.started = self.printed_at = time.time()
        self.bar = Progress(console=console, disable=self.plain)
        self.task = self.bar.add_task(description, total=total)

    def __enter__(self) -> CountProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.stop()
        if self.plain:
            self._print_plain()

    def advance(self, count: int = 1) -> None:
        self.done += count
        self.bar.advance(self.task, count)
        if self.plain and time.time() - self.printed_at >= self.plain_every:
            self._print_plain()

    def _print_plain(self) -> None:
        self.printed_at = time.time()
        minutes = (self.printed_at - self.started) / 60
        line = f"{self.description}: {self.done}/{self.total} done | {minutes:.1f} min"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
