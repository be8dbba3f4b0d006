"""Vectorized views of the evaluation log: finished candidates, best-so-far curves, the Pareto front.

Orientation and dominance come from ``search.objectives``, the same as the summary and export rank with;
here they run over whole columns, so a live page over 100,000 rows stays fast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluators.config import Objective
from evaluators.vocabulary import Status
from search.objectives import pareto_mask, sign


def scored(log: pd.DataFrame, objectives: list[Objective]) -> pd.DataFrame:
    """Finished search evaluations with every objective present, in finishing order (the order of replay)."""
    names = [o.name for o in objectives]
    if log.empty:
        return log
    done = log[(log["status"] == Status.DONE)].dropna(subset=names)
    return done.sort_values(["finished", "id"], kind="stable").reset_index(drop=True)


def best_so_far(done: pd.DataFrame, objective: Objective, start: pd.Timestamp | None) -> pd.DataFrame:
    """Step points of the running best: the evaluation index, minutes since ``start``, and the value."""
    if done.empty:
        return pd.DataFrame(columns=["evaluation", "minutes", "best", "candidate"])
    direction = sign(objective)
    oriented = done[objective.name].to_numpy(dtype=float) * direction
    running = np.maximum.accumulate(oriented)
    improved = np.r_[True, running[1:] > running[:-1]]
    improved[-1] = True  # carry the line to the latest evaluation
    origin = start if start is not None else done["finished"].iloc[0]
    minutes = (done["finished"] - origin).dt.total_seconds().to_numpy() / 60.0
    best_idx = _argmax_accumulate(oriented)
    return pd.DataFrame(
        {
            "evaluation": np.arange(1, len(done) + 1)[improved],
            "minutes": minutes[improved],
            "best": running[improved] * direction,
            "candidate": done["candidate"].to_numpy()[best_idx][improved],
        }
    )


def _argmax_accumulate(values: np.ndarray) -> np.ndarray:
    """Index of the running maximum at every position (first occurrence wins ties)."""
    running = np.maximum.accumulate(values)
    is_new = np.r_[True, values[1:] > running[:-1]]
    return np.maximum.accumulate(np.where(is_new, np.arange(len(values)), 0))


def pareto_front(done: pd.DataFrame, objectives: list[Objective]) -> pd.DataFrame:
    """The non-dominated rows of ``done`` over all objectives, best first by the first objective."""
    if done.empty:
        return done
    oriented = np.column_stack([done[o.name].to_numpy(dtype=float) * sign(o) for o in objectives])
    front = done[pareto_mask(oriented)]
    first = objectives[0]
    return front.sort_values(first.name, ascending=sign(first) < 0).reset_index(drop=True)


def sample(frame: pd.DataFrame, limit: int, seed: int = 0) -> pd.DataFrame:
    """At most ``limit`` rows, drawn at random (stable for a given frame)."""
    return frame if len(frame) <= limit else frame.sample(limit, random_state=seed)


def histogram(values: pd.Series, bins: int = 40) -> pd.DataFrame:
    """Bin centres, widths and counts: a few dozen numbers however many candidates there are."""
    finite = values.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return pd.DataFrame(columns=["centre", "width", "count"])
    counts, edges = np.histogram(finite, bins=bins)
    return pd.DataFrame({"centre": (edges[:-1] + edges[1:]) / 2, "width": np.diff(edges), "count": counts})


def history(log: pd.DataFrame, objective: Objective) -> pd.DataFrame:
    """Every search evaluation in the order it was created: its number, candidate, status, the objective's value
    (NaN where none was recorded) and the best value of the finished ones so far."""
    if log.empty:
        return pd.DataFrame(columns=["number", "candidate", "status", "value", "best"])
    values = log[objective.name].to_numpy(dtype=float)
    counted = (log["status"] == Status.DONE).to_numpy() & np.isfinite(values)
    running = np.maximum.accumulate(np.where(counted, values * sign(objective), -np.inf))
    return pd.DataFrame(
        {
            "number": np.arange(1, len(log) + 1),
            "candidate": log["candidate"].to_numpy(),
            "status": log["status"].astype(str).to_numpy(),
            "value": values,
            "best": np.where(np.isfinite(running), running * sign(objective), np.nan),
        }
    )


def useful_range(values: np.ndarray, keep: float = 0.96, slack: float = 0.25) -> tuple[float, float] | None:
    """An axis range that leaves out far outliers: the central ``keep`` share of the finite values, widened by
    ``slack`` of its span on each side (never past the data), plus a small margin. None when there is nothing
    to show or every value is equal (the plot's own autorange handles those)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    tail = (1 - keep) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    span = high - low
    low, high = max(finite.min(), low - slack * span), min(finite.max(), high + slack * span)
    if high <= low:
        return None
    margin = 0.04 * (high - low)
    return float(low - margin), float(high + margin)


def top_rows(
    done: pd.DataFrame, objectives: list[Objective], by: str, share: float, limit: int, least: int = 10
) -> pd.DataFrame:
    """The best candidates: the Pareto front when ``by`` is "Pareto front", else the best ``share`` of ``done`` by
    objective ``by``, but at least ``least`` (a handful says little) and at most half of ``done`` and ``limit``."""
    if done.empty:
        return done
    if by == "Pareto front":
        return pareto_front(done, objectives).head(limit)
    objective = next(o for o in objectives if o.name == by)
    count = min(limit, len(done) // 2 or 1, max(least, round(share * len(done))))
    return done.sort_values(by, ascending=sign(objective) < 0, kind="stable").head(count)
