"""Plotly figures. Large sets are thinned before they reach the browser: a figure carries thousands of points,
not the whole study."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard import analysis
from evaluators.config import Objective
from spaces import Curve

MAX_CLOUD_POINTS = 4000
#: One colour per status on every chart: calm for what went through, warm only for what went wrong.
STATUS_COLORS = {
    "done": "#4c78a8",
    "rejected": "#b5bcc4",
    "duplicate": "#ddd3b8",
    "failed": "#e45756",
    "running": "#72b7b2",
    "pending": "#e0e0e0",
}
BASELINE_COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#bcbd22", "#e377c2"]
BASELINE_SYMBOLS = ["diamond", "square", "triangle-up", "cross", "star", "pentagon"]
_LAYOUT: dict[str, Any] = {"margin": {"l": 10, "r": 10, "t": 70, "b": 10}, "height": 400}


def best_so_far(done: pd.DataFrame, objectives: list[Objective], x: str, start: pd.Timestamp | None) -> go.Figure:
    """One step line per objective; ``x`` is "evaluation" or "minutes"."""
    fig = make_subplots(rows=1, cols=len(objectives), subplot_titles=[o.name for o in objectives])
    for col, obj in enumerate(objectives, start=1):
        curve = analysis.best_so_far(done, obj, start)
        fig.add_trace(
            go.Scatter(
                x=curve[x],
                y=curve["best"],
                mode="lines+markers",
                line_shape="hv",
                name=obj.name,
                customdata=curve["candidate"],
                hovertemplate="best %{y:.4g} (candidate %{customdata})<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="evaluations finished" if x == "evaluation" else "minutes", row=1, col=col)
    fig.update_layout(showlegend=False, title="Best so far", **_LAYOUT)
    return fig


def pareto_scatter(
    cloud: pd.DataFrame, front: pd.DataFrame, seeds: pd.DataFrame, labels: pd.DataFrame, x: str, y: str, total: int
) -> go.Figure:
    """Candidates (``cloud``, a sample of ``total`` when there are many), the front on top joined by a line, each
    baseline its own legend entry (names on the points would overlap). The axes open on the region where the
    points are (``analysis.useful_range``): far outliers sit outside it, and a double-click shows everything.
    ``labels`` holds each shown candidate's formula and baseline name, indexed by candidate id."""
    fig = go.Figure()
    hover = f"candidate %{{customdata}}<br>%{{hovertext}}<br>{x} %{{x:.4g}}<br>{y} %{{y:.4g}}<extra></extra>"

    def points(part: pd.DataFrame, name: str, **style: Any) -> None:
        shown = labels.reindex(part["candidate"])
        fig.add_trace(
            go.Scattergl(
                x=part[x],
                y=part[y],
                name=name,
                customdata=part["candidate"].to_numpy(),
                hovertext=shown["formula"].fillna("").to_numpy(dtype=object),
                hovertemplate=hover,
                **style,
            )
        )

    points(cloud, f"candidates ({total:,})", mode="markers", marker={"size": 5, "color": "#9aa5b1", "opacity": 0.6})
    line = front.sort_values([x, y], kind="stable")
    points(
        line,
        f"Pareto front ({len(front)})",
        mode="lines+markers",
        marker={"size": 9, "color": "#d62728"},
        line={"color": "#d62728", "width": 1.5},
    )
    names = labels.reindex(seeds["candidate"])["seed_name"].fillna("baseline").to_numpy()
    for i, name in enumerate(names):
        color, symbol = BASELINE_COLORS[i % len(BASELINE_COLORS)], BASELINE_SYMBOLS[i % len(BASELINE_SYMBOLS)]
        marker = {"size": 11, "color": color, "symbol": symbol, "line": {"width": 1, "color": "white"}}
        points(seeds.iloc[[i]], str(name), mode="markers", marker=marker)
    shown = pd.concat([cloud, front, seeds])
    ranges = {axis: analysis.useful_range(shown[col].to_numpy(dtype=float)) for axis, col in (("x", x), ("y", y))}
    outside = _outside(shown, x, y, ranges)
    fig.update_layout(
        title="Pareto front (click a point to open the candidate)"
        + (f"; {outside} far points outside the view (double-click to see all)" if outside else ""),
        xaxis={"title": x, **({"range": list(ranges["x"])} if ranges["x"] else {})},
        yaxis={"title": y, **({"range": list(ranges["y"])} if ranges["y"] else {})},
        clickmode="event+select",
        **_LAYOUT,
    )
    return fig


def _outside(points: pd.DataFrame, x: str, y: str, ranges: dict[str, tuple[float, float] | None]) -> int:
    """Distinct candidates drawn outside the axis ranges."""
    away = pd.Series(False, index=points.index)
    for axis, col in (("x", x), ("y", y)):
        if ranges[axis] is not None:
            low, high = ranges[axis]
            away |= (points[col] < low) | (points[col] > high)
    return points.loc[away.to_numpy(), "candidate"].nunique()


def funnel(stages: list[dict[str, Any]]) -> go.Figure:
    """Evaluations per cascade stage (in cascade order, top to bottom) and status, with the worker seconds each
    bar cost; statuses keep their colours on every chart."""
    frame = pd.DataFrame(stages, columns=["status", "stage", "count", "seconds"])
    frame["stage"] = frame["stage"].replace("", "(none)")
    fig = go.Figure()
    for status in [*STATUS_COLORS, *sorted(set(frame["status"]) - set(STATUS_COLORS))]:
        part = frame[frame["status"] == status]
        if part.empty:
            continue
        fig.add_trace(
            go.Bar(
                y=part["stage"],
                x=part["count"],
                orientation="h",
                name=str(status),
                marker_color=STATUS_COLORS.get(status, "#bab0ac"),
                customdata=part["seconds"],
                hovertemplate="%{y}: %{x} evaluations, %{customdata:.3g} s<extra>" + str(status) + "</extra>",
            )
        )
    order = list(dict.fromkeys(frame["stage"]))  # the rows come in cascade order (``search.results``)
    fig.update_layout(
        barmode="stack",
        title="Evaluations by the stage where they ended",
        yaxis={"categoryorder": "array", "categoryarray": order, "autorange": "reversed"},
        legend={"traceorder": "normal"},
        **_LAYOUT,
    )
    return fig


def worker_timeline(runs: pd.DataFrame, now: pd.Timestamp) -> go.Figure:
    """Which worker ran which candidate, when (bars still running end at ``now``)."""
    frame = runs.assign(finished=runs["finished"].fillna(now))
    fig = go.Figure()
    for status, part in frame.groupby("status"):
        fig.add_trace(
            go.Bar(
                base=part["started"],
                x=(part["finished"] - part["started"]).dt.total_seconds() * 1000,
                y=part["worker"],
                orientation="h",
                name=str(status),
                customdata=np.column_stack([part["candidate"], part["purpose"]]),
                hovertemplate="candidate %{customdata[0]} (%{customdata[1]})<extra>" + str(status) + "</extra>",
            )
        )
    fig.update_layout(barmode="overlay", title="Worker timeline (latest evaluations)", xaxis_type="date", **_LAYOUT)
    return fig


def distributions(done: pd.DataFrame, objectives: list[Objective]) -> go.Figure:
    fig = make_subplots(rows=1, cols=len(objectives), subplot_titles=[o.name for o in objectives])
    for col, obj in enumerate(objectives, start=1):
        hist = analysis.histogram(done[obj.name] if not done.empty else pd.Series(dtype=float))
        fig.add_trace(go.Bar(x=hist["centre"], y=hist["count"], width=hist["width"], name=obj.name), row=1, col=col)
    fig.update_layout(showlegend=False, title="Objective distributions (finished candidates)", **_LAYOUT)
    return fig


def curves(series: list[tuple[str, Curve, str]]) -> go.Figure:
    """f(x) and f'(x) side by side for each (label, curve, dash) entry. Each line is thinner than the one before,
    so a curve drawn over an identical one leaves it visible around its edges."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["f(x)", "f'(x)"])
    palette = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, (label, curve, dash) in enumerate(series):
        style = {"color": palette[i % len(palette)], "dash": dash, "width": max(1.5, 4.5 - i)}
        fig.add_trace(go.Scatter(x=curve.x, y=curve.y, name=label, line=style, legendgroup=label), row=1, col=1)
        fig.add_trace(
            go.Scatter(x=curve.x, y=curve.dy, name=label, line=style, legendgroup=label, showlegend=False), row=1, col=2
        )
    fig.update_layout(**_LAYOUT)
    return fig


def rerank_bars(rows: pd.DataFrame) -> go.Figure:
    """Mean ± std per objective for each re-ranked candidate (columns: label, objective, mean, std, n)."""
    fig = go.Figure()
    for label, part in rows.groupby("label", sort=False):
        fig.add_trace(
            go.Bar(
                x=part["objective"],
                y=part["mean"],
                error_y={"type": "data", "array": part["std"]},
                name=str(label),
                customdata=part["n"],
                hovertemplate="%{y:.4g} ± %{error_y.array:.3g} (n=%{customdata})<extra>" + str(label) + "</extra>",
            )
        )
    fig.update_layout(barmode="group", title="Re-ranking: mean ± std over seeds", **_LAYOUT)
    return fig


def training_curves(curves: dict[str, tuple[list[float], float]]) -> go.Figure:
    """Each proxy's training loss over its steps: ``curves`` maps a proxy to (the mean loss of each equal share of
    the run, in order; the run's steps), each point drawn at the middle of its share."""
    fig = go.Figure()
    for proxy, (losses, steps) in curves.items():
        x = [(i + 0.5) * steps / len(losses) for i in range(len(losses))]
        fig.add_trace(go.Scatter(x=x, y=losses, mode="lines+markers", name=proxy))
    fig.update_layout(title="Training loss (mean over each tenth of the run)", xaxis_title="step", **_LAYOUT)
    fig.update_yaxes(title="loss", type="log")
    return fig
