"""Stored rows as pandas DataFrames with fixed columns (present even when there are no rows) and plain values.

The search's objectives keep their stored names, which say the split they were measured on (``val_acc@mlp``:
validation, what selection saw); re-ranking results carry the test split's names (``test_acc@mlp``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from search.results import mean_std
from search.store import CandidateRow, EvaluationRow
from search.transfer_results import CandidateRuns, best_baseline, compare_cell, test_name

CANDIDATE_COLUMNS = ["candidate_id", "formula", "status", "stage", "reason"]
DETAIL_COLUMNS = ["origin", "seed_name", "duplicate_of", "generation", "seconds", "worker", "finished_at"]
TRANSFER_COLUMNS = [
    "candidate_id",
    "label",
    "formula",
    "is_baseline",
    "proxy",
    "steps",
    "metric",
    "mean",
    "std",
    "n",
    "without_value",
    "best_baseline",
    "delta",
    "p",
]
STUDY_COLUMNS = [
    "name",
    "space",
    "algorithm",
    "status",
    "stopped_by",
    "finished",
    "minutes",
    "budget_evaluations",
    "budget_minutes",
    "tags",
    "note",
    "created_at",
]


def candidate_frame(rows: Iterable[tuple[CandidateRow, EvaluationRow]], objectives: list[str]) -> pd.DataFrame:
    """Search evaluations, one row per candidate: identity and verdict, the objectives (NaN where none), details."""
    records = [
        {
            "candidate_id": cand.id,
            "formula": cand.formula,
            "status": str(ev.status),
            "stage": ev.stage or "",
            "reason": ev.reason or "",
            **{name: _number(ev.objectives.get(name)) for name in objectives},
            "origin": cand.origin,
            "seed_name": cand.seed_name,
            "duplicate_of": cand.duplicate_of,
            "generation": cand.generation,
            "seconds": _number(ev.seconds),
            "worker": ev.worker,
            "finished_at": ev.finished_at,
        }
        for cand, ev in rows
    ]
    frame = pd.DataFrame.from_records(records, columns=[*CANDIDATE_COLUMNS, *objectives, *DETAIL_COLUMNS])
    numbers = {"candidate_id": "int64", "duplicate_of": "Int64", "generation": "int64", "seconds": "float64"}
    return frame.astype({**numbers, **{name: "float64" for name in objectives}, "finished_at": "datetime64[us]"})


FinalRuns = tuple[CandidateRow, int | None, dict[str, list[float]]]  # candidate, training steps, values per seed


def final_frame(results: Iterable[FinalRuns], names: list[str]) -> pd.DataFrame:
    """Test-split results per (candidate, training steps): ``<objective>`` is the mean over seeds, ``<objective>_std``
    their standard deviation and ``<objective>_n`` how many seeds finished; steps of None are the study's own."""
    records = []
    for cand, steps, values in results:
        label = cand.seed_name or f"c{cand.id}"
        record: dict[str, Any] = {"candidate_id": cand.id, "label": label, "formula": cand.formula, "steps": steps}
        for name in names:
            runs = values.get(name, [])
            record[name], record[f"{name}_std"] = mean_std(runs)
            record[f"{name}_n"] = len(runs)
        records.append(record)
    columns = ["candidate_id", "label", "formula", "steps"]
    columns += [f"{name}{suffix}" for name in names for suffix in ("", "_std", "_n")]
    return pd.DataFrame.from_records(records, columns=columns).astype({"steps": "Int64"})


def transfer_frame(results: list[CandidateRuns], steps: dict[str, int]) -> pd.DataFrame:
    """One row per (layer, transfer network): ``candidate_id``, ``label``, ``formula``, ``is_baseline``, ``proxy``,
    ``steps``, ``metric`` (its test-split name), ``mean``, ``std`` and ``n`` over the seeds with a value,
    ``without_value`` (runs that diverged or failed), and against that network's ``best_baseline``: ``delta``
    (mean paired difference) and ``p`` (paired t-test), NaN where they cannot be computed."""
    records = []
    for proxy, proxy_steps in steps.items():
        baseline = best_baseline(results, proxy)
        for runs in results:
            cell = compare_cell(runs, proxy, baseline)
            records.append(
                {
                    "candidate_id": runs.candidate_id,
                    "label": runs.label,
                    "formula": runs.formula,
                    "is_baseline": runs.is_baseline,
                    "proxy": proxy,
                    "steps": proxy_steps,
                    "metric": test_name(proxy),
                    "mean": cell.mean,
                    "std": cell.std,
                    "n": cell.n,
                    "without_value": cell.without_value,
                    "best_baseline": baseline.label if baseline is not None else None,
                    "delta": _number(cell.delta),
                    "p": _number(cell.p),
                }
            )
    return pd.DataFrame.from_records(records, columns=TRANSFER_COLUMNS).astype({"candidate_id": "Int64"})


def study_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The studies of a store, one row each (see ``STUDY_COLUMNS``)."""
    frame = pd.DataFrame.from_records(records, columns=STUDY_COLUMNS)
    return frame.astype(
        {
            "finished": "int64",
            "minutes": "float64",
            "budget_evaluations": "Int64",
            "budget_minutes": "float64",
            "created_at": "datetime64[us]",
        }
    )


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)
