"""Transfer results read back from the store, and each candidate compared with the best baseline per proxy.

A transfer run is an evaluation with purpose "transfer" whose metrics name its proxy (``{"proxy": "lm"}``) and
whose objective is the test-split accuracy there (``test_acc@lm``). A run that diverged (a non-finite loss) or
failed counts as a run without a value: it is shown, never silently dropped. Candidates are compared with the best
baseline on each proxy (the baseline with the highest mean there, not only ReLU) by a paired t-test over the
seeds both finished: runs with the same seed share the data order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from evaluators.splits import TEST, on_split
from evaluators.vocabulary import Status
from search.config import ConfigError
from search.results import MIN_SEEDS, mean_std, paired_difference
from search.store import CandidateRow, Store, StudyRow

#: Baselines compared by default, where they are available; where none is, all the available ones.
DEFAULT_BASELINES = ("relu", "gelu", "silu", "mish")
PURPOSE = "transfer"
METRIC = "val_acc"  # what every transfer proxy reports; stored on the test split as ``test_acc@proxy``


def baseline_names(available: list[str], asked: list[str] | None, where: str) -> list[str]:
    """The baselines to train: ``asked``, else the defaults among ``available``, else all of ``available``.

    ``where`` says what holds the available ones, for the error naming an unknown baseline."""
    names = asked if asked is not None else [n for n in DEFAULT_BASELINES if n in available] or list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        seeds = ", ".join(available) or "none"
        raise ConfigError(f"baselines {unknown} are not seeds of {where}; its seeds are: {seeds}")
    return names


def objective_of(proxy: str) -> str:
    """The (validation-named) objective a transfer proxy's evaluator is configured with."""
    return f"{METRIC}@{proxy}"


def test_name(proxy: str) -> str:
    return on_split(objective_of(proxy), TEST)


@dataclass
class CandidateRuns:
    """One layer's final runs: proxy (or task) -> seed -> test accuracy (None: diverged or failed)."""

    label: str  # c42, or the baseline's name
    formula: str
    is_baseline: bool
    candidate_id: int | None = None  # the stored candidate, where there is one
    runs: dict[str, dict[int, float | None]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # proxy -> why the last run without a value ended

    @classmethod
    def of(cls, candidate: CandidateRow) -> CandidateRuns:
        label = candidate.seed_name or f"c{candidate.id}"
        return cls(label, candidate.formula, candidate.origin == "seed", candidate.id)

    def record(self, proxy: str, seed: int, value: float | None, reason: str = "") -> None:
        self.runs.setdefault(proxy, {})[seed] = value
        if value is None:
            self.reasons[proxy] = reason

    def values(self, proxy: str) -> dict[int, float]:
        return {seed: v for seed, v in self.runs.get(proxy, {}).items() if v is not None}

    def without_value(self, proxy: str) -> int:
        return sum(v is None for v in self.runs.get(proxy, {}).values())


def transfer_runs(
    store: Store,
    study: StudyRow,
    *,
    steps: dict[str, int] | None = None,
    seeds: list[int] | None = None,
    candidates: list[CandidateRow] | None = None,
) -> tuple[list[CandidateRuns], dict[str, int]]:
    """Finished transfer runs of ``study``, per candidate (in ``candidates`` order, else by id), and the steps read
    per proxy: ``steps`` where given, else the steps of each proxy's latest run. A later run of the same candidate,
    proxy, seed and steps replaces an earlier one (a failed run that was retried)."""
    rows = [
        (c, e)
        for c, e in store.evaluations(study.id, purpose=PURPOSE)
        if e.status in (Status.DONE, Status.REJECTED, Status.FAILED) and isinstance(e.metrics.get("proxy"), str)
    ]
    if steps is None:
        steps = {e.metrics["proxy"]: e.steps for _, e in rows}  # oldest first: the latest wins
    order = candidates or sorted({c.id: c for c, _ in rows}.values(), key=lambda c: c.id)
    results = {c.id: CandidateRuns.of(c) for c in order}
    for cand, ev in rows:
        proxy = ev.metrics["proxy"]
        if cand.id not in results or steps.get(proxy) != ev.steps or (seeds is not None and ev.seed not in seeds):
            continue
        value = ev.objectives.get(test_name(proxy)) if ev.status == Status.DONE else None
        results[cand.id].record(proxy, ev.seed, value, f"{ev.status}: {ev.reason}")
    return list(results.values()), steps


@dataclass
class Cell:
    """One candidate on one proxy: mean ± std over its finished seeds, and the paired test against the best
    baseline (``delta``: mean paired difference; ``p``: two-sided paired t-test; None where it cannot run)."""

    mean: float
    std: float
    n: int
    without_value: int
    delta: float | None = None
    p: float | None = None
    pairs: int = 0


def best_baseline(results: list[CandidateRuns], proxy: str) -> CandidateRuns | None:
    """The baseline with the highest mean test accuracy on ``proxy`` (first in order on a tie), if any has runs."""
    scored = [r for r in results if r.is_baseline and r.values(proxy)]
    return max(scored, key=lambda r: mean_std(list(r.values(proxy).values()))[0], default=None)


def compare_cell(runs: CandidateRuns, proxy: str, baseline: CandidateRuns | None) -> Cell:
    values = runs.values(proxy)
    mean, std = mean_std(list(values.values()))
    cell = Cell(mean, std, len(values), runs.without_value(proxy))
    if baseline is None or baseline is runs:
        return cell
    paired = paired_difference(values, baseline.values(proxy))
    cell.delta, cell.p, cell.pairs = paired.delta, paired.p_value, paired.pairs
    return cell


def print_comparison(console: Console, title: str, results: list[CandidateRuns], steps: dict[str, int]) -> None:
    """One table: test accuracy per proxy (mean ± std over seeds), each candidate against the best baseline."""
    proxies = list(steps)
    best = {proxy: best_baseline(results, proxy) for proxy in proxies}
    table = Table(title=f"{title}: test-split accuracy, mean ± std over seeds")
    table.add_column("candidate")
    table.add_column("formula")
    for proxy in proxies:
        table.add_column(f"{proxy} ({steps[proxy]} steps)", justify="right")
    for runs in results:
        cells = [_cell_text(compare_cell(runs, proxy, best[proxy]), runs is best[proxy]) for proxy in proxies]
        table.add_row(runs.label + (" (baseline)" if runs.is_baseline else ""), runs.formula, *cells)
    console.print(table)
    for proxy in proxies:
        name = best[proxy].label if best[proxy] else "none (no baseline finished)"
        console.print(f"{test_name(proxy)}: best baseline {name}", highlight=False)
    console.print(
        "vs best: mean paired difference to the best baseline of that proxy over the seeds both finished, "
        "two-sided paired t-test p; 'no value': runs that diverged or failed",
        highlight=False,
        soft_wrap=True,
    )
    fewest = min((len(r.runs.get(proxy, {})) for r in results for proxy in proxies), default=0)
    if fewest < MIN_SEEDS:
        console.print(
            f"[yellow]warning:[/yellow] {fewest} seed(s) for some runs: below {MIN_SEEDS} seeds the p-values "
            "say little; use --seeds 3 or more",
            highlight=False,
        )
    for runs in results:
        for proxy, reason in runs.reasons.items():
            console.print(f"{runs.label} on {proxy}: {reason}", markup=False, highlight=False, soft_wrap=True)


def _cell_text(cell: Cell, is_best: bool) -> str:
    if cell.n == 0:
        text = "no value"
    else:
        text = f"{cell.mean:.4f} ± {cell.std:.4f}"
    if cell.without_value:
        text += f" ({cell.without_value} no value)"
    if is_best:
        return text + " best"
    if cell.delta is not None:
        p = "p n/a" if cell.p is None else f"p={cell.p:.2g}"
        text += f"\n{cell.delta:+.4f} {p}"
    return text
