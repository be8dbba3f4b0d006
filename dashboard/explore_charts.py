"""Plotly figures of the Explore page: the history of every evaluation, parallel coordinates, slices and the
parts common among the best candidates. Like ``charts``, they draw samples, never a whole large study."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard import analysis
from dashboard.charts import MAX_CLOUD_POINTS, STATUS_COLORS
from evaluators.config import Objective
from search.objectives import sign

SLICE_COLUMNS = 3
_LAYOUT: dict[str, Any] = {"margin": {"l": 10, "r": 10, "t": 70, "b": 10}}


def _color(status: str) -> str:
    return STATUS_COLORS.get(status, "#bab0ac")


def history(rows: pd.DataFrame, objective: Objective) -> go.Figure:
    """Every evaluation by its number: those with a value of ``objective`` as points coloured by status, with
    the best so far as a step line; those without one (failed, rejected early, in flight) as ticks in a strip
    below, one row per status. At most ``MAX_CLOUD_POINTS`` of each reach the browser; legends count them all."""
    valued = rows[np.isfinite(rows["value"].to_numpy(dtype=float))]
    missing = rows[~rows.index.isin(valued.index)]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.04)
    shown = analysis.sample(valued, MAX_CLOUD_POINTS)
    for status, part in shown.groupby("status", sort=False):
        fig.add_trace(
            go.Scattergl(
                x=part["number"],
                y=part["value"],
                mode="markers",
                name=f"{status} ({(valued['status'] == status).sum():,})",
                legendgroup=str(status),
                marker={"size": 5, "color": _color(str(status)), "opacity": 0.7},
                customdata=part["candidate"].to_numpy(),
                hovertemplate="evaluation %{x}, candidate %{customdata}<br>%{y:.4g}<extra>" + str(status) + "</extra>",
            ),
            row=1,
            col=1,
        )
    steps = rows[rows["best"].ne(rows["best"].shift()) & rows["best"].notna()]
    if not steps.empty:
        ends = pd.concat([steps, rows.tail(1)]).drop_duplicates("number")
        fig.add_trace(
            go.Scatter(
                x=ends["number"],
                y=ends["best"],
                mode="lines",
                line={"shape": "hv", "color": "#222222", "width": 1.5},
                name="best so far",
                hovertemplate="best %{y:.4g}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    for status, part in analysis.sample(missing, MAX_CLOUD_POINTS).groupby("status", sort=False):
        fig.add_trace(
            go.Scattergl(
                x=part["number"],
                y=part["status"],
                mode="markers",
                name=f"{status}, no value ({(missing['status'] == status).sum():,})",
                legendgroup=str(status),
                marker={"symbol": "line-ns-open", "size": 9, "color": _color(str(status))},
                customdata=part["candidate"].to_numpy(),
                hovertemplate="evaluation %{x}, candidate %{customdata}<extra>%{y}</extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_xaxes(title_text="evaluation (in the order they were proposed)", row=2, col=1)
    fig.update_yaxes(title_text=objective.name, row=1, col=1)
    fig.update_layout(
        title=f"History of every evaluation: {objective.name} ({objective.direction})",
        height=520,
        clickmode="event+select",
        **_LAYOUT,
    )
    return fig


def parallel_coordinates(points: pd.DataFrame, dimensions: list[str], color: Objective) -> go.Figure:
    """One line per candidate across ``dimensions`` (objectives, metrics, seconds), coloured by ``color`` with its
    better end in the darker colour; rows missing a value in a dimension are left out."""
    complete = points.dropna(subset=dimensions)
    fig = go.Figure(
        go.Parcoords(
            line={
                "color": complete[color.name],
                "colorscale": "Viridis",
                "reversescale": sign(color) < 0,
                "showscale": True,
                "colorbar": {"title": {"text": color.name}},
            },
            dimensions=[{"label": d, "values": complete[d], "tickformat": ".3~g"} for d in dimensions],
        )
    )
    margin = {"l": 60, "r": 60, "t": 110, "b": 30}  # room for the axis labels above the lines
    fig.update_layout(title=f"Parallel coordinates ({len(complete):,} candidates)", height=460, margin=margin)
    return fig


def slices(points: pd.DataFrame, objective: Objective, against: list[str]) -> go.Figure:
    """``objective`` against each of ``against`` in small multiples, coloured by evaluation number (later is
    lighter): where a metric or another objective goes with a good value, and how that moved over the search."""
    count = len(against)
    rows = -(-count // SLICE_COLUMNS)
    fig = make_subplots(rows=rows, cols=SLICE_COLUMNS, subplot_titles=against, vertical_spacing=0.5 / max(rows, 2))
    for i, name in enumerate(against):
        part = points.dropna(subset=[name, objective.name])
        fig.add_trace(
            go.Scattergl(
                x=part[name],
                y=part[objective.name],
                mode="markers",
                marker={
                    "size": 5,
                    "color": part["number"],
                    "colorscale": "Viridis",
                    "showscale": i == 0,
                    "colorbar": {"title": {"text": "evaluation"}},
                },
                customdata=part["candidate"].to_numpy(),
                hovertemplate=f"{name} %{{x:.4g}}<br>{objective.name} %{{y:.4g}}<br>candidate %{{customdata}}"
                "<extra></extra>",
                showlegend=False,
            ),
            row=i // SLICE_COLUMNS + 1,
            col=i % SLICE_COLUMNS + 1,
        )
    fig.update_yaxes(title_text=objective.name, col=1)
    fig.update_layout(title=f"Slices: {objective.name} against each dimension", height=80 + 280 * rows, **_LAYOUT)
    return fig


def importance(shares: pd.DataFrame, top_label: str) -> go.Figure:
    """Share of the best candidates holding each part beside its share among all evaluated ones."""
    label = (shares["kind"] + ": " + shares["part"]).map(lambda t: t if len(t) <= 48 else t[:45] + "...")
    full = (shares["kind"] + ": " + shares["part"]).to_numpy(dtype=object)
    fig = go.Figure()
    for column, name, color in (("top share", top_label, "#4c78a8"), ("all share", "all evaluated", "#b5bcc4")):
        fig.add_trace(
            go.Bar(
                y=label,
                x=shares[column],
                orientation="h",
                name=name,
                marker_color=color,
                hovertext=full,
                hovertemplate="%{hovertext}<br>%{x:.0%}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        barmode="group",
        title="Parts common among the best candidates",
        xaxis={"tickformat": ".0%", "title": "share of candidates holding the part"},
        yaxis={"autorange": "reversed"},
        height=140 + 26 * len(shares),
        **_LAYOUT,
    )
    return fig
