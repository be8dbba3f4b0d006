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
                hovertemplate="best %{y:.4f} (candidate %{customdata})<extra></extra>",
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
    """Candidates (``cloud``, a sample of ``total`` when there are many), the front on top, the baselines named;
    ``labels`` holds each shown candidate's formula and baseline name, indexed by candidate id."""
    fig = go.Figure()
    for name, part, marker in (
        (f"candidates ({total:,})", cloud, {"size": 5, "color": "#9aa5b1", "opacity": 0.6}),
        (f"Pareto front ({len(front)})", front, {"size": 9, "color": "#d62728"}),
        ("baselines", seeds, {"size": 10, "color": "#1f77b4", "symbol": "diamond"}),
    ):
        shown = labels.reindex(part["candidate"])
        fig.add_trace(
            go.Scattergl(
                x=part[x],
                y=part[y],
                mode="markers+text" if name == "baselines" else "markers",
                text=shown["seed_name"] if name == "baselines" else None,
                textposition="top center",
                name=name,
                marker=marker,
                customdata=part["candidate"].to_numpy(),
                hovertext=shown["formula"].fillna("").to_numpy(dtype=object),
                hovertemplate="candidate %{customdata}<br>%{hovertext}<br>"
                + f"{x} %{{x:.4f}}<br>{y} %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title="Pareto front (click a point to open the candidate)",
        xaxis_title=x,
        yaxis_title=y,
        clickmode="event+select",
        **_LAYOUT,
    )
    return fig


def funnel(stages: list[dict[str, Any]]) -> go.Figure:
    """Evaluations per cascade stage and status, with the worker seconds each bar cost."""
    frame = pd.DataFrame(stages, columns=["status", "stage", "count", "seconds"])
    fig = go.Figure()
    for status, part in frame.groupby("status", sort=False):
        fig.add_trace(
            go.Bar(
                y=part["stage"].replace("", "(none)"),
                x=part["count"],
                orientation="h",
                name=str(status),
                customdata=part["seconds"],
                hovertemplate="%{y}: %{x} evaluations, %{customdata:.1f} s<extra>" + str(status) + "</extra>",
            )
        )
    fig.update_layout(barmode="stack", title="Evaluations by stage", yaxis={"autorange": "reversed"}, **_LAYOUT)
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
    """f(x) and f'(x) side by side for each (label, curve, dash) entry."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["f(x)", "f'(x)"])
    palette = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, (label, curve, dash) in enumerate(series):
        style = {"color": palette[i % len(palette)], "dash": dash}
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
                hovertemplate="%{y:.4f} ± %{error_y.array:.4f} (n=%{customdata})<extra>" + str(label) + "</extra>",
            )
        )
    fig.update_layout(barmode="group", title="Re-ranking: mean ± std over seeds", **_LAYOUT)
    return fig
